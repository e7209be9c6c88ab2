#!/usr/bin/env python3
"""Cuts the fuzz targets' seed corpora out of the real vectors and simulator bundles in tests/.

Writes fuzz/corpus/<target>/<sha256 prefix> for every target of fuzz/src/lib.rs: each seed is one
piece of evidence as teewatch reads it (a whole bundle, an attestation report, a quote, one GPU's
SPDM evidence, an event log, an NRAS answer with its JWKS, a chat body, a compose manager's
attestation, a configuration file). Seeds are kept small: lists of parts are cut to their first
entry and anything above 64 KiB is left out, so that libFuzzer's default input length stays short.
The corpora are derived data (fuzz/.gitignore): rerunning this script rebuilds them, and the
inputs libFuzzer adds beside them are kept across runs.
Standard library only.
"""

import base64
import hashlib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
LIMIT = 64 * 1024

seeds = {}


def add(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > LIMIT:
        return
    seeds.setdefault(target, {})[hashlib.sha256(data).hexdigest()[:16]] = data


def dumps(value):
    return json.dumps(value, separators=(",", ":"))


def trimmed(value):
    """The value with every list of parts cut to its first entry."""
    if isinstance(value, dict):
        return {k: trimmed(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [trimmed(value[0])]
    return value


def walk(value):
    """Every JSON object inside value, itself included."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def from_part(part):
    quote = part.get("intel_quote") or part.get("quote")
    if isinstance(quote, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]+", quote):
        add("tdx_quote", bytes.fromhex(quote.removeprefix("0x")))
    if "event_log" in part:
        add("event_log", dumps(part["event_log"]))
    payload = part.get("nvidia_payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = None
    if isinstance(payload, dict):
        for entry in payload.get("evidence_list") or []:
            try:
                add("spdm", base64.b64decode(entry.get("evidence", "")))
            except ValueError:
                pass
    manager = part.get("compose_manager_attestation")
    if isinstance(manager, dict):
        add("compose_manager", dumps(manager))


def from_bundle(path):
    with open(path, "rb") as f:
        raw = f.read()
    add("bundle", raw)
    bundle = json.loads(raw)
    attestation = bundle.get("attestation")
    if attestation is not None:
        add("attestation", dumps(trimmed(attestation)))
        for part in walk(attestation):
            from_part(part)
    nras = bundle.get("nras")
    for entry in nras if isinstance(nras, list) else [nras] if nras else []:
        add(
            "nras",
            dumps(
                {
                    "response": entry.get("response"),
                    "jwks": entry.get("jwks"),
                    "nonce": bundle.get("nonce"),
                    "now": observed_unix(bundle.get("observed_at", "")),
                }
            ),
        )
    for exchange in bundle.get("canary") or []:
        body = exchange.get("response_body")
        if body is None and exchange.get("response_body_base64"):
            body = base64.b64decode(exchange["response_body_base64"])
        if body:
            add("sse", body)


def observed_unix(text):
    import datetime

    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(when.timestamp())


def main():
    bundles = os.path.join(ROOT, "tests", "bundles")
    for dirpath, _, files in sorted(os.walk(bundles)):
        for name in sorted(files):
            if name.endswith(".json"):
                from_bundle(os.path.join(dirpath, name))
            if name.endswith(".toml"):
                with open(os.path.join(dirpath, name), "rb") as f:
                    add("config", f.read())

    vectors = os.path.join(ROOT, "tests", "vectors")
    tdx = os.path.join(vectors, "tdx")
    for rel in ["dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_td15ex", "dcap-qvl/tdx_quote_outdated",
                "go-tdx-guest/quote_v5_sample.dat", "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
                "automata-dcap-rs/quote_tdx_00806f050000.dat"]:
        with open(os.path.join(tdx, rel), "rb") as f:
            add("tdx_quote", f.read())
    for rel in ["dcap-qvl/tdx-quote.hex", "dcap-qvl/quote-from-tappd.hex"]:
        with open(os.path.join(tdx, rel)) as f:
            add("tdx_quote", bytes.fromhex(f.read().strip().removeprefix("0x")))
    nvidia = os.path.join(vectors, "nvidia")
    for rel in ["attestation-sdk/hopperAttestationReport.txt",
                "attestation-sdk/sample_blackwellAttestationReport.txt",
                "attestation-sdk/sample_hopperAttestationReport_535.txt",
                "nvtrust-initial/attestationReport.txt"]:
        with open(os.path.join(nvidia, rel)) as f:
            text = f.read().strip()
        try:
            add("spdm", bytes.fromhex(text))
        except ValueError:
            add("spdm", base64.b64decode(text))
    provider = os.path.join(vectors, "provider", "private-ml-sdk")
    for name in ["phala_pmlsdk_nras_sample_response_1gpu.json",
                 "phala_pmlsdk_nras_sample_response_ppcie_8gpu.json"]:
        with open(os.path.join(provider, name)) as f:
            add("nras", dumps({"response": json.load(f), "jwks": {"keys": []}}))

    # Configuration: the shipped example and every TOML example in the documentation.
    with open(os.path.join(ROOT, "config.toml"), "rb") as f:
        add("config", f.read())
    docs = [os.path.join(ROOT, "README.md")] + [
        os.path.join(ROOT, "docs", n) for n in sorted(os.listdir(os.path.join(ROOT, "docs")))
        if n.endswith(".md")
    ]
    for path in docs:
        with open(path) as f:
            for block in re.findall(r"```toml\n(.*?)```", f.read(), re.S):
                add("config", block)

    # A chat body of each shape the SSE reader meets, beside the recorded ones.
    add("sse", 'data: {"id":"chatcmpl-1","choices":[]}\n\ndata: [DONE]\n\n')
    add("sse", '{"id":"chatcmpl-2","object":"chat.completion","choices":[]}')

    for target, files in sorted(seeds.items()):
        folder = os.path.join(OUT, target)
        os.makedirs(folder, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        total = sum(len(d) for d in files.values())
        print(f"{target}: {len(files)} seeds, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
