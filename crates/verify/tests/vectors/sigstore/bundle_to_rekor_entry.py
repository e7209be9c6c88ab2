#!/usr/bin/env python3
"""Rebuilds Rekor's answer to GET /api/v1/log/entries/{uuid} from the transparency-log entry of a
Sigstore bundle (protobuf-specs v0.3 JSON), and writes the DSSE payload it commits to.

The bundle carries the same signed bytes Rekor serves (the canonicalized body, the signed entry
timestamp, the inclusion proof and its checkpoint); only their encoding differs (base64 hashes and
log id instead of hex, numbers as strings). The UUID is Rekor's entry UUID: the 16-hex-digit tree
id of the shard the checkpoint names, then the entry's leaf hash.

usage: bundle_to_rekor_entry.py BUNDLE OUT_ENTRY_JSON OUT_PAYLOAD
"""
import base64
import hashlib
import json
import sys


def main() -> None:
    bundle_path, entry_path, payload_path = sys.argv[1:4]
    with open(bundle_path, encoding="utf-8") as f:
        bundle = json.load(f)
    [tlog] = bundle["verificationMaterial"]["tlogEntries"]
    body = base64.b64decode(tlog["canonicalizedBody"])
    proof = tlog["inclusionProof"]
    checkpoint = proof["checkpoint"]["envelope"]
    # The origin line is "<host> - <tree id>": the shard whose tree id prefixes the UUID.
    tree_id = int(checkpoint.split("\n", 1)[0].rsplit(" ", 1)[1])
    leaf = hashlib.sha256(b"\x00" + body).hexdigest()
    uuid = f"{tree_id:016x}{leaf}"
    entry = {
        uuid: {
            "body": tlog["canonicalizedBody"],
            "integratedTime": int(tlog["integratedTime"]),
            "logID": base64.b64decode(tlog["logId"]["keyId"]).hex(),
            "logIndex": int(tlog["logIndex"]),
            "verification": {
                "inclusionProof": {
                    "checkpoint": checkpoint,
                    "hashes": [base64.b64decode(h).hex() for h in proof["hashes"]],
                    "logIndex": int(proof["logIndex"]),
                    "rootHash": base64.b64decode(proof["rootHash"]).hex(),
                    "treeSize": int(proof["treeSize"]),
                },
                "signedEntryTimestamp": tlog["inclusionPromise"]["signedEntryTimestamp"],
            },
        }
    }
    with open(entry_path, "w", encoding="utf-8") as f:
        json.dump(entry, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(payload_path, "wb") as f:
        f.write(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


if __name__ == "__main__":
    main()
