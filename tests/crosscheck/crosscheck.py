#!/usr/bin/env python3
"""Independent cross-check of a teewatch-bundle/1 (written from the formats in REFERENCE.md §1,
§2 and §4, not from teewatch's verifier).

Usage: crosscheck.py DIR
  DIR/bundle.json  a teewatch-bundle/1 (attestation, tdx_collateral, nras {response, jwks}, nonce)
  DIR/roots.json   {"intel_root_pem", "nvidia_root_pem", "nras_intermediate_pem", "nras_issuer"}

Prints one JSON object on stdout and exits 0 whenever it could print it. Any check that cannot
be completed is false, with the reason in "errors". Dependencies: cryptography, dcap-qvl.

What is checked:
- TDX quote (§2): header and TD report body parsed by hand (v4 and v5); REPORTDATA binding to the
  signing address and the bundle nonce (§1); quote, QE report and PCK chain signatures twice:
  once by dcap-qvl's `verify_with_root_ca` under the test Intel root (with the bundle's
  collateral: CRLs, TCB info, QE identity), once by hand with `cryptography` (quote ECDSA-P256
  signature by the attestation key, QE report signature by the PCK leaf, QE report data =
  sha256(attestation key ‖ QE auth data) ‖ 32 zero bytes, PCK chain up to the pinned root).
- Event log (§3): RTMR3 replayed from recomputed runtime event digests; RTMR0–2 replayed from the
  supplied digests.
- GPU evidence (§4): SPDM request/response parsed to find the signature offset; P-384/SHA-384
  signature by the leaf key; chain each-signed-by-the-next up to the pinned NVIDIA root; nonce in
  the payload and in the signed request; leaf FWID (2.23.133.5.4.1) = opaque field 20.
- NRAS (§4): every JWT ES384-verified with the JWKS key of its kid; the JWK's x/y equal to its
  x5c leaf's key; that leaf RSA-PKCS1-SHA256-signed by the pinned intermediate and valid at the
  time judged; eat_nonce, iss, submod digests, overall result.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import sys
import traceback
from typing import Any

ERRORS: list[str] = []


def err(where: str, message: Any) -> None:
    ERRORS.append(f"{where}: {message}")


try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    HAVE_CRYPTO = True
except Exception as e:  # noqa: BLE001 - report, never crash
    HAVE_CRYPTO = False
    err("import cryptography", repr(e))

try:
    import dcap_qvl  # type: ignore

    HAVE_DCAP = True
except Exception as e:  # noqa: BLE001
    HAVE_DCAP = False
    err("import dcap_qvl", repr(e))


# ---------------------------------------------------------------------------------------------
# small helpers


def unhex(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    t = text[2:] if text[:2] in ("0x", "0X") else text
    return bytes.fromhex(t)


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def u16(b: bytes, o: int) -> int:
    if o + 2 > len(b):
        raise ValueError(f"u16 at {o} past end {len(b)}")
    return int.from_bytes(b[o : o + 2], "little")


def u32(b: bytes, o: int) -> int:
    if o + 4 > len(b):
        raise ValueError(f"u32 at {o} past end {len(b)}")
    return int.from_bytes(b[o : o + 4], "little")


def take(b: bytes, o: int, n: int, what: str) -> bytes:
    if o < 0 or n < 0 or o + n > len(b):
        raise ValueError(f"{what}: {n} bytes at {o} past end {len(b)}")
    return b[o : o + n]


def raw_sig_to_der(sig: bytes) -> bytes:
    half = len(sig) // 2
    return encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))


def ec_verify(key: Any, raw_sig: bytes, data: bytes, digest: Any) -> bool:
    try:
        key.verify(raw_sig_to_der(raw_sig), data, ec.ECDSA(digest))
        return True
    except InvalidSignature:
        return False


def cert_signed_by(cert: Any, issuer: Any) -> bool:
    """True when `issuer`'s key verifies `cert`'s signature and the names chain."""
    if cert.issuer != issuer.subject:
        return False
    key = issuer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            return False
        return True
    except InvalidSignature:
        return False


def valid_at(cert: Any, when: _dt.datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def chain_to_root(certs: list, root: Any, when: _dt.datetime, where: str) -> bool:
    """certs leaf first; each signed by the next; the last is the pinned root itself or signed by
    it. Every certificate valid at `when`."""
    if not certs:
        err(where, "empty certificate chain")
        return False
    ok = True
    for i in range(len(certs) - 1):
        if not cert_signed_by(certs[i], certs[i + 1]):
            err(where, f"certificate {i} is not signed by certificate {i + 1}")
            ok = False
    last = certs[-1]
    if der(last) == der(root):
        if not cert_signed_by(root, root):
            err(where, "pinned root is not self-signed")
            ok = False
    elif not cert_signed_by(last, root):
        err(where, "the last certificate is neither the pinned root nor signed by it")
        ok = False
    for i, c in enumerate(certs):
        if not valid_at(c, when):
            err(where, f"certificate {i} not valid at {when.isoformat()}")
            ok = False
    return ok


# ---------------------------------------------------------------------------------------------
# Intel TDX (§2)

TD_BODY_OFFSETS = {
    "tee_tcb_svn": (0, 16),
    "mrseam": (16, 48),
    "mrsignerseam": (64, 48),
    "seam_attributes": (112, 8),
    "td_attributes": (120, 8),
    "xfam": (128, 8),
    "mrtd": (136, 48),
    "mrconfigid": (184, 48),
    "mrowner": (232, 48),
    "mrownerconfig": (280, 48),
    "rtmr0": (328, 48),
    "rtmr1": (376, 48),
    "rtmr2": (424, 48),
    "rtmr3": (472, 48),
    "report_data": (520, 64),
}
V5_BODY_SIZES = {2: 584, 3: 648, 4: 885}


def parse_quote(q: bytes) -> dict:
    if len(q) < 48:
        raise ValueError(f"quote is {len(q)} bytes, shorter than its 48-byte header")
    version = u16(q, 0)
    att_key_type = u16(q, 2)
    tee_type = u32(q, 4)
    if version == 4:
        body_start, body_size = 48, 584
    elif version == 5:
        body_type = u16(q, 48)
        body_size = u32(q, 50)
        if V5_BODY_SIZES.get(body_type) != body_size:
            raise ValueError(f"v5 body type {body_type} with size {body_size}")
        body_start = 54
    else:
        raise ValueError(f"quote version {version}")
    body = take(q, body_start, body_size, "td report body")
    fields = {name: body[o : o + n] for name, (o, n) in TD_BODY_OFFSETS.items()}
    signed_end = body_start + body_size
    return {
        "version": version,
        "att_key_type": att_key_type,
        "tee_type": tee_type,
        "signed_end": signed_end,
        "fields": fields,
    }


def own_quote_signature(q: bytes, parsed: dict, root: Any, when: _dt.datetime) -> bool:
    """Quote signature, QE report signature, QE report data binding and PCK chain, by hand."""
    where = "quote signature (own)"
    ok = True
    o = parsed["signed_end"]
    sig_len = u32(q, o)
    sig_data = take(q, o + 4, sig_len, "quote signature data")
    quote_sig = take(sig_data, 0, 64, "quote signature")
    att_key = take(sig_data, 64, 64, "attestation key")
    cert_type = u16(sig_data, 128)
    cert_size = u32(sig_data, 130)
    cert_data = take(sig_data, 134, cert_size, "certification data")
    if parsed["att_key_type"] != 2:
        err(where, f"attestation key type {parsed['att_key_type']}, not ECDSA-P256")
        ok = False
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + att_key)
    if not ec_verify(key, quote_sig, q[: parsed["signed_end"]], hashes.SHA256()):
        err(where, "quote signature does not verify with the attestation key")
        ok = False
    if cert_type != 6:
        err(where, f"certification data type {cert_type}, expected 6 (QE report)")
        return False
    qe_report = take(cert_data, 0, 384, "qe report")
    qe_sig = take(cert_data, 384, 64, "qe report signature")
    auth_len = u16(cert_data, 448)
    auth = take(cert_data, 450, auth_len, "qe auth data")
    o2 = 450 + auth_len
    inner_type = u16(cert_data, o2)
    inner_size = u32(cert_data, o2 + 2)
    inner = take(cert_data, o2 + 6, inner_size, "pck certification data")
    if inner_type != 5:
        err(where, f"inner certification data type {inner_type}, expected 5 (PCK chain)")
        return False
    qe_report_data = qe_report[320:384]
    if qe_report_data != hashlib.sha256(att_key + auth).digest() + bytes(32):
        err(where, "qe report data is not sha256(attestation key ‖ qe auth data) ‖ zeros")
        ok = False
    certs = x509.load_pem_x509_certificates(inner.rstrip(b"\x00"))
    if not certs:
        err(where, "no pck certificate")
        return False
    leaf_key = certs[0].public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or not ec_verify(
        leaf_key, qe_sig, qe_report, hashes.SHA256()
    ):
        err(where, "qe report signature does not verify with the pck leaf")
        ok = False
    if not chain_to_root(certs, root, when, "pck chain"):
        ok = False
    return ok


def dcap_verify(q: bytes, collateral: Any, root: Any, now: int) -> tuple[bool, Any, Any]:
    col = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(collateral))
    report = dcap_qvl.verify_with_root_ca(q, col, der(root), now)
    return True, report.status, list(report.advisory_ids)


# ---------------------------------------------------------------------------------------------
# event log (§3)

RUNTIME_EVENT = 0x08000001


def canonical_json(value: Any) -> bytes:
    # RFC 8785 for this shape (ASCII keys, strings and one integer): sorted keys, no spaces.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_digest(e: dict) -> bytes:
    etype = e.get("event_type")
    if isinstance(etype, str):
        etype = int(etype, 0)
    if etype == RUNTIME_EVENT:
        name = e.get("event", "")
        payload = unhex(e.get("event_payload", ""), "event_payload")
        if e.get("version") == 2:
            return hashlib.sha384(
                canonical_json({"name": name, "payload": payload.hex(), "type": RUNTIME_EVENT})
            ).digest()
        return hashlib.sha384(
            RUNTIME_EVENT.to_bytes(4, "little") + b":" + name.encode() + b":" + payload
        ).digest()
    return unhex(e.get("digest", ""), "digest")


def replay(events: list, imr: int, recompute: bool) -> bytes:
    acc = bytes(48)
    for e in events:
        if not isinstance(e, dict) or e.get("imr") != imr:
            continue
        d = event_digest(e) if recompute else unhex(e.get("digest", ""), "digest")
        if len(d) != 48:
            raise ValueError(f"imr {imr} event {e.get('event')!r}: digest of {len(d)} bytes")
        acc = hashlib.sha384(acc + d).digest()
    return acc


# ---------------------------------------------------------------------------------------------
# NVIDIA SPDM evidence (§4)


def parse_spdm(ev: bytes) -> dict:
    req = take(ev, 0, 37, "spdm request")
    if req[0] != 0x11 or req[1] != 0xE0:
        raise ValueError(f"request header {req[:2].hex()}, expected 11e0")
    if len(ev) < 45:
        raise ValueError("response shorter than its header")
    if ev[37] != 0x11 or ev[38] != 0x60:
        raise ValueError(f"response header {ev[37:39].hex()}, expected 1160")
    count = ev[41]
    record_len = int.from_bytes(ev[42:45], "little")
    record = take(ev, 45, record_len, "measurement record")
    blocks = {}
    o = 0
    for _ in range(count):
        index = record[o]
        spec = take(record, o + 1, 1, "block spec")[0]
        size = u16(record, o + 2)
        body = take(record, o + 4, size, "block")
        if spec == 1:
            vsize = u16(body, 1)
            blocks[index] = take(body, 3, vsize, "dmtf value")
        o += 4 + size
    if o != record_len:
        raise ValueError(f"{count} blocks fill {o} bytes of a {record_len}-byte record")
    o = 45 + record_len
    responder_nonce = take(ev, o, 32, "responder nonce")
    opaque_len = u16(ev, o + 32)
    opaque = take(ev, o + 34, opaque_len, "opaque data")
    sig_offset = o + 34 + opaque_len
    signature = take(ev, sig_offset, 96, "signature")
    tlvs = {}
    p = 0
    while p + 4 <= len(opaque):
        t = u16(opaque, p)
        s = u16(opaque, p + 2)
        tlvs[t] = take(opaque, p + 4, s, f"opaque field {t}")
        p += 4 + s
    return {
        "request_nonce": req[4:36],
        "blocks": blocks,
        "responder_nonce": responder_nonce,
        "opaque": tlvs,
        "sig_offset": sig_offset,
        "signature": signature,
        "trailing": len(ev) - sig_offset - 96,
    }


FWID_OID = "2.23.133.5.4.1"


def check_gpu(i: int, item: dict, payload_nonce: bytes | None, nonce: bytes, root: Any, when: _dt.datetime) -> dict:
    where = f"gpu {i}"
    out = {
        "index": i,
        "gpu_signature_valid": False,
        "gpu_chain_valid": False,
        "gpu_nonce_matches": False,
        "gpu_fwid_matches": None,
        "sig_offset": None,
        "trailing_bytes": None,
        "blocks": None,
    }
    try:
        ev = base64.b64decode(item["evidence"])
        certs = x509.load_pem_x509_certificates(base64.b64decode(item["certificate"]))
        spdm = parse_spdm(ev)
        out["sig_offset"] = spdm["sig_offset"]
        out["trailing_bytes"] = spdm["trailing"]
        out["blocks"] = len(spdm["blocks"])
        out["gpu_nonce_matches"] = spdm["request_nonce"] == nonce and payload_nonce == nonce
        if not out["gpu_nonce_matches"]:
            err(where, "nonce in the signed request or in the payload is not the bundle nonce")
        leaf_key = certs[0].public_key()
        if isinstance(leaf_key, ec.EllipticCurvePublicKey) and isinstance(leaf_key.curve, ec.SECP384R1):
            out["gpu_signature_valid"] = ec_verify(
                leaf_key, spdm["signature"], ev[: spdm["sig_offset"]], hashes.SHA384()
            )
        if not out["gpu_signature_valid"]:
            err(where, "spdm signature does not verify with the leaf key")
        out["gpu_chain_valid"] = chain_to_root(certs, root, when, f"{where} chain")
        fwid_field = spdm["opaque"].get(20)
        if fwid_field is not None:
            ext = None
            for e in certs[0].extensions:
                if e.oid.dotted_string == FWID_OID:
                    ext = e.value.value
            out["gpu_fwid_matches"] = ext is not None and len(ext) >= 48 and ext[-48:] == fwid_field
            if not out["gpu_fwid_matches"]:
                err(where, "leaf fwid extension differs from opaque field 20")
    except Exception as e:  # noqa: BLE001
        err(where, repr(e))
    return out


# ---------------------------------------------------------------------------------------------
# NRAS (§4)


def jwt_parts(token: str) -> tuple[dict, dict, bytes, bytes]:
    h, p, s = token.split(".")
    return json.loads(b64url(h)), json.loads(b64url(p)), b64url(s), f"{h}.{p}".encode()


def jwk_key(jwk: dict, intermediate: Any, when: _dt.datetime, where: str) -> Any:
    """The JWK's P-384 key, if its x5c leaf is signed by the pinned intermediate, valid, and
    carries the same key; else None."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-384":
        err(where, f"jwk is {jwk.get('kty')}/{jwk.get('crv')}, not EC/P-384")
        return None
    x = int.from_bytes(b64url(jwk["x"]), "big")
    y = int.from_bytes(b64url(jwk["y"]), "big")
    key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
    x5c = jwk.get("x5c") or []
    if not x5c:
        err(where, "jwk has no x5c")
        return None
    leaf = x509.load_der_x509_certificate(base64.b64decode(x5c[0]))
    ok = True
    ikey = intermediate.public_key()
    if not isinstance(ikey, rsa.RSAPublicKey) or leaf.issuer != intermediate.subject:
        err(where, "x5c leaf is not issued by the pinned intermediate")
        ok = False
    else:
        try:
            ikey.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            err(where, "x5c leaf's RSA PKCS1 SHA-256 signature does not verify with the pinned intermediate")
            ok = False
    lkey = leaf.public_key()
    if not isinstance(lkey, ec.EllipticCurvePublicKey) or lkey.public_numbers() != key.public_numbers():
        err(where, "jwk x/y differ from the x5c leaf's key")
        ok = False
    if not valid_at(leaf, when):
        err(where, f"x5c leaf not valid at {when.isoformat()}")
        ok = False
    return key if ok else None


def check_nras(nras: Any, nonce: bytes, roots: dict, when: _dt.datetime, out: dict) -> None:
    where = "nras"
    response = nras["response"]
    jwks = nras["jwks"]
    intermediate = x509.load_pem_x509_certificate(roots["nras_intermediate_pem"].encode())
    overall = response[0][1] if response[0][0] == "JWT" else None
    if not isinstance(overall, str):
        raise ValueError("response[0] is not [\"JWT\", token]")
    per_gpu = response[1] if len(response) > 1 else {}
    if not isinstance(per_gpu, dict):
        raise ValueError("response[1] is not an object of GPU tokens")
    keys = {k.get("kid"): k for k in jwks.get("keys", []) if isinstance(k, dict)}
    all_ok = True
    claims = {}
    for name, token in [("overall", overall)] + sorted(per_gpu.items()):
        w = f"{where} {name}"
        try:
            header, payload, sig, signed = jwt_parts(token)
            claims[name] = payload
            if header.get("alg") != "ES384":
                err(w, f"alg {header.get('alg')}")
                all_ok = False
                continue
            jwk = keys.get(header.get("kid"))
            if jwk is None:
                err(w, f"no jwk for kid {header.get('kid')}")
                all_ok = False
                continue
            key = jwk_key(jwk, intermediate, when, w)
            if key is None or len(sig) != 96 or not ec_verify(key, sig, signed, hashes.SHA384()):
                err(w, "jwt signature does not verify")
                all_ok = False
        except Exception as e:  # noqa: BLE001
            err(w, repr(e))
            all_ok = False
    out["nras_signature_valid"] = all_ok and "overall" in claims
    top = claims.get("overall", {})
    eat_nonce = top.get("eat_nonce")
    out["nras_eat_nonce_matches"] = isinstance(eat_nonce, str) and eat_nonce.lower() == nonce.hex()
    if not out["nras_eat_nonce_matches"]:
        err(where, f"eat_nonce {eat_nonce} is not the bundle nonce")
    out["nras_issuer_matches"] = top.get("iss") == roots.get("nras_issuer")
    if not out["nras_issuer_matches"]:
        err(where, f"iss {top.get('iss')} is not {roots.get('nras_issuer')}")
    submods = top.get("submods")
    digests_ok = isinstance(submods, dict) and set(submods) == set(per_gpu) and len(per_gpu) > 0
    if isinstance(submods, dict):
        for name, entry in submods.items():
            token = per_gpu.get(name)
            want = hashlib.sha256(token.encode()).hexdigest() if isinstance(token, str) else None
            try:
                kind, (alg, value) = entry
                good = kind == "DIGEST" and alg == "SHA-256" and isinstance(value, str) and value.lower() == want
            except Exception:  # noqa: BLE001
                good = False
            if not good:
                err(where, f"submod {name} digest does not match its token")
                digests_ok = False
    if not digests_ok:
        err(where, "submods do not list exactly the GPU tokens with matching digests")
    out["nras_submod_digests_match"] = digests_ok
    out["nras_overall_result"] = top.get("x-nvidia-overall-att-result")
    out["nras_gpu_count"] = len(per_gpu)


# ---------------------------------------------------------------------------------------------


def judged_time(bundle: dict) -> _dt.datetime:
    text = bundle.get("observed_at")
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t
    except Exception:  # noqa: BLE001
        err("observed_at", f"unreadable {text!r}; judging at the current time")
        return _dt.datetime.now(_dt.timezone.utc)


def run(directory: str) -> dict:
    out: dict[str, Any] = {
        "quote_parses": False,
        "quote_version": None,
        "tee_type_tdx": False,
        "report_data_address_matches": False,
        "report_data_nonce_matches": False,
        "quote_signature_valid": False,
        "quote_signature_method": "dcap_qvl.verify_with_root_ca",
        "quote_signature_valid_own": False,
        "tcb_status": None,
        "advisory_ids": None,
        "mrtd": None,
        "rtmr3": None,
        "rtmr3_replayed": None,
        "rtmr3_replayed_matches": False,
        "rtmr012_replayed_matches": False,
        "gpu_count": 0,
        "gpus": [],
        "nras_signature_valid": False,
        "nras_eat_nonce_matches": False,
        "nras_issuer_matches": False,
        "nras_submod_digests_match": False,
        "nras_overall_result": None,
        "nras_gpu_count": 0,
    }
    try:
        with open(os.path.join(directory, "bundle.json"), encoding="utf-8") as f:
            bundle = json.load(f)
        with open(os.path.join(directory, "roots.json"), encoding="utf-8") as f:
            roots = json.load(f)
    except Exception as e:  # noqa: BLE001
        err("input", repr(e))
        return out
    if not HAVE_CRYPTO:
        return out
    when = judged_time(bundle)
    att = bundle.get("attestation") if isinstance(bundle, dict) else None
    if not isinstance(att, dict):
        err("attestation", "missing or not an object")
        att = {}
    try:
        nonce = unhex(bundle.get("nonce"), "bundle nonce")
        if len(nonce) != 32:
            raise ValueError(f"bundle nonce is {len(nonce)} bytes")
    except Exception as e:  # noqa: BLE001
        err("nonce", repr(e))
        nonce = b""

    # TDX quote.
    quote = None
    parsed = None
    try:
        quote = unhex(att.get("intel_quote") or att.get("quote"), "intel_quote")
        parsed = parse_quote(quote)
        out["quote_parses"] = True
        out["quote_version"] = parsed["version"]
        out["tee_type_tdx"] = parsed["tee_type"] == 0x81
        f = parsed["fields"]
        out["mrtd"] = f["mrtd"].hex()
        out["rtmr3"] = f["rtmr3"].hex()
        rd = f["report_data"]
        try:
            address = unhex(att.get("signing_address"), "signing_address")
            out["report_data_address_matches"] = len(address) == 20 and rd[:20] == address and rd[20:32] == bytes(12)
        except Exception as e:  # noqa: BLE001
            err("signing_address", repr(e))
        out["report_data_nonce_matches"] = len(nonce) == 32 and rd[32:64] == nonce
    except Exception as e:  # noqa: BLE001
        err("quote parse", repr(e))

    try:
        intel_root = x509.load_pem_x509_certificate(roots["intel_root_pem"].encode())
    except Exception as e:  # noqa: BLE001
        err("intel root", repr(e))
        intel_root = None
    if quote is not None and parsed is not None and intel_root is not None:
        try:
            out["quote_signature_valid_own"] = own_quote_signature(quote, parsed, intel_root, when)
        except Exception as e:  # noqa: BLE001
            err("quote signature (own)", repr(e))
        if HAVE_DCAP:
            try:
                ok, status, advisories = dcap_verify(
                    quote, bundle.get("tdx_collateral"), intel_root, int(when.timestamp())
                )
                out["quote_signature_valid"] = ok
                out["tcb_status"] = status
                out["advisory_ids"] = advisories
            except Exception as e:  # noqa: BLE001
                err("quote signature (dcap-qvl)", str(e).replace("\n", " "))

    # Event log.
    try:
        events = att.get("event_log")
        if isinstance(events, str):
            events = json.loads(events)
        if not isinstance(events, list):
            raise ValueError("event_log is not a list")
        if parsed is not None:
            f = parsed["fields"]
            r3 = replay(events, 3, True)
            out["rtmr3_replayed"] = r3.hex()
            out["rtmr3_replayed_matches"] = r3 == f["rtmr3"]
            out["rtmr012_replayed_matches"] = all(replay(events, i, False) == f[f"rtmr{i}"] for i in range(3))
            if not out["rtmr3_replayed_matches"]:
                err("event log", "replayed rtmr3 differs from the quote's")
    except Exception as e:  # noqa: BLE001
        err("event log", repr(e))

    # GPU evidence.
    try:
        payload = att.get("nvidia_payload")
        if isinstance(payload, str):
            payload = json.loads(payload)
        if not isinstance(payload, dict):
            raise ValueError("nvidia_payload is not an object")
        root = x509.load_pem_x509_certificate(roots["nvidia_root_pem"].encode())
        try:
            payload_nonce = unhex(payload.get("nonce"), "payload nonce")
        except Exception as e:  # noqa: BLE001
            err("nvidia_payload nonce", repr(e))
            payload_nonce = None
        items = payload.get("evidence_list") or []
        out["gpu_count"] = len(items)
        out["gpus"] = [check_gpu(i, item, payload_nonce, nonce, root, when) for i, item in enumerate(items)]
    except Exception as e:  # noqa: BLE001
        err("nvidia_payload", repr(e))

    # NRAS.
    try:
        nras = bundle.get("nras")
        if not isinstance(nras, dict):
            # null: NRAS did not answer; a list: one answer per node (multi-node bundles are not
            # cross-checked here).
            raise ValueError(f"bundle nras is {type(nras).__name__}, not one {{response, jwks}} answer")
        check_nras(nras, nonce, roots, when, out)
    except Exception as e:  # noqa: BLE001
        err("nras", repr(e))
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(json.dumps({"errors": ["usage: crosscheck.py DIR"]}))
        return 2
    try:
        out = run(sys.argv[1])
    except Exception:  # noqa: BLE001 - last resort: still print JSON
        err("internal", traceback.format_exc())
        out = {}
    out["errors"] = ERRORS
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
