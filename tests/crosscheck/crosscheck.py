#!/usr/bin/env python3
"""Independent cross-check of a teewatch-bundle/1.

Written from the wire formats (REFERENCE.md §1-§4, docs/bundle.md, docs/gpu.md) and Intel's
documented DCAP structures and quote-verification rules, not from teewatch's verifier, and with
other libraries: `cryptography` (OpenSSL) for X.509, CRLs, P-256/P-384 ECDSA and ed25519,
`coincurve` (libsecp256k1) for secp256k1 public-key recovery, and the hashlib of the standard
library; Keccak-256 is written out below. No dcap-qvl: the PyPI package of that name binds the
same Rust crate teewatch uses, so it could not be a second opinion.

Usage: crosscheck.py DIR
  DIR/bundle.json  a teewatch-bundle/1
  DIR/roots.json   {"intel_root_pem", "nvidia_root_pem", "nras_intermediates_pem" (one or more
                   PEM certificates), "nras_issuer"}: the trust anchors teewatch verified with

Prints one JSON object and exits 0 whenever it could print it:
  {"format": "dstack" | "near-gateway" | "near-direct" | other | null,
   "checks": [{"name", "scope", "pass": bool, "why"}],   teewatch's check names and scopes
   "observed": [{"scope", "field", "value"}],
   "errors": [...],                                        what could not be read, and where
   "notes": [...]}                                         oddities that decide no check
A check that cannot be completed is `"pass": false` with the reason in `why`.

Checks judged here, per attested part (dstack node, NEAR gateway, model, node, compose manager):
- tdx_quote_parse: v4/v5 header, ECDSA-P256 key type, TDX tee type, TD report body.
- tdx_quote_signature: the quote's own DCAP chain, step by step: quote signature over
  header ‖ body by the attestation key; certification data type 6 (QE report) with the QE report
  signed by the PCK leaf and its REPORTDATA[0..32] = SHA-256(attestation key ‖ QE auth data);
  the PCK chain (type 5, PEM) up to the pinned Intel root; the root CA CRL (signed by the root)
  and the PCK CRL (signed by the PCK leaf's issuing CA from the quote's chain), their windows and
  revoked serials; the collateral whose TCB info FMSPC is the PCK
  certificate's (SGX extension 1.2.840.113741.1.13.1, FMSPC sub-OID .4, PCE-ID .3); TCB info
  (id TDX, version 3) and QE identity (id TD_QE, version 2) signed by the TCB signing certificate
  of their issuer chains, which chain to the root, inside their issueDate/nextUpdate windows; the
  QE report against the QE identity (MISCSELECT and ATTRIBUTES under their masks, MRSIGNER,
  ISVPRODID).
- tdx_tcb_status: the TDX module (MRSIGNERSEAM, SEAMATTRIBUTES) against the module identity
  of its version, then Intel's TDX TCB level matching: the first TCB level whose sgxtcbcomponents
  and pcesvn the PCK certificate's TCB meets (SGX level) and whose tdxtcbcomponents the quote's
  TEE_TCB_SVN meets (from index 2 when TEE_TCB_SVN[1] names a module version), the TDX module
  identity TDX_<TEE_TCB_SVN[1]> and its level for TEE_TCB_SVN[0], the QE identity's level for
  the QE's ISVSVN, converged as Intel's quote-verification library does; passes when the status
  is one the bundle's policy allows. Judged only after tdx_quote_signature passed.
- tdx_debug_disabled, tdx_td_attributes: TDATTRIBUTES bits (DEBUG; SEPT_VE_DISABLE set,
  MIGRATABLE and PERFMON/profiling clear, no reserved bit).
- report_data_binding: dstack REPORTDATA = address or ed25519 key, zero-padded to 32 ‖ nonce;
  with a TLS fingerprint SHA-256(key bytes ‖ fingerprint) ‖ nonce; a compose manager's
  SHA-256(actions as compact JSON in one of three member orders) ‖ nonce.
- signing_key_address: keccak256(ECDSA public key)[12..] is the address; an ed25519 key is it.
- event_log_replay: RTMR0-3 folded from the log, imr-3 runtime digests recomputed, every imr-3
  event a runtime event, identity events once each and before system-ready.
- compose_binding: SHA-256(app_compose) is the replayed compose-hash event; MRCONFIGID is
  0x01 ‖ that hash ‖ zeros, or all zero.
- same_td: a compose manager's quote has its model's MRTD, MRCONFIGID and RTMR0-3.
- gpu_nonce, gpu_evidence_signature (per GPU): SPDM parse, P-384 signature by the leaf, chain to
  the pinned NVIDIA root, leaf FWID = opaque field 20, nonce in the payload and signed request.
- nras_token (per part): every JWT ES384-verified with its JWKS key, the key's x5c leaf signed by
  the pinned NRAS intermediate, valid, and equal to the JWK; iss, eat_nonce, exp/nbf/iat,
  submods digests, one token per GPU, tokens matched to GPUs by ueid = leaf serial.
- nras_result (per GPU): overall result true and the GPU token's claims as NVIDIA documents
  them for claims versions 2.0 and 3.0.
- gpu_unique: no GPU (leaf certificate or serial) twice in one answer.
- ohttp_key_binding: ed25519 signature over key_config by the part's attested key.
- tls_key_binding: SHA-256 of the TLS peer's SPKI is the fingerprint a terminating part's quote
  binds (and the gateway's served certificate has that key).
- attestation_format, canary_fresh, canary_hashes (raw bytes or json.dumps form),
  canary_signature (EIP-191 secp256k1 recovery, or ed25519, by an attested model-serving key).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import sys
import traceback
from typing import Any, Callable

ERRORS: list[str] = []


def err(where: str, message: Any) -> None:
    ERRORS.append(f"{where}: {message}")


NOTES: list[str] = []


def note(message: str) -> None:
    """Something worth knowing that decides no check (each said once)."""
    if message not in NOTES:
        NOTES.append(message)


# Library warnings (cryptography warns of a name attribute longer than X.520 allows, as in the
# simulator's 66-character test CNs) are notes, not noise on stderr.
import warnings  # noqa: E402

warnings.showwarning = lambda message, *_args, **_kw: note(f"warning: {message}")


try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    HAVE_CRYPTO = True
except Exception as e:  # noqa: BLE001 - report, never crash
    HAVE_CRYPTO = False
    err("import cryptography", repr(e))

try:
    import coincurve  # type: ignore

    HAVE_COINCURVE = True
except Exception as e:  # noqa: BLE001
    HAVE_COINCURVE = False
    err("import coincurve", repr(e))


class Fail(Exception):
    """A check's reason for not passing."""


# ---------------------------------------------------------------------------------------------
# small helpers


def unhex(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise Fail(f"{what} is not a string")
    t = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        return bytes.fromhex(t.replace(":", ""))
    except ValueError as e:
        raise Fail(f"{what} is not hex: {e}") from None


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def u16(b: bytes, o: int) -> int:
    return int.from_bytes(take(b, o, 2, "u16"), "little")


def u32(b: bytes, o: int) -> int:
    return int.from_bytes(take(b, o, 4, "u32"), "little")


def take(b: bytes, o: int, n: int, what: str) -> bytes:
    if o < 0 or n < 0 or o + n > len(b):
        raise Fail(f"{what}: {n} bytes at {o} past the end ({len(b)} bytes)")
    return b[o : o + n]


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def json_value(v: Any) -> Any:
    """A member that may be an object or a string holding JSON (dstack's `info`, `tcb_info`)."""
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return None
    return v


def parse_time(text: Any) -> _dt.datetime:
    if not isinstance(text, str):
        raise Fail(f"time {text!r} is not a string")
    t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


# Keccak-256 (the pre-standard padding Ethereum uses), written out: hashlib's sha3_256 pads
# differently. Checked against the empty-string vector at start-up.
_KECCAK_RC = [
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
]
_KECCAK_ROT = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61], [28, 55, 25, 21, 56], [27, 20, 39, 8, 14]]
_M64 = (1 << 64) - 1


def _rol(v: int, n: int) -> int:
    return ((v << n) | (v >> (64 - n))) & _M64 if n else v


def _keccak_f(a: list) -> list:
    for rc in _KECCAK_RC:
        c = [a[x][0] ^ a[x][1] ^ a[x][2] ^ a[x][3] ^ a[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rol(c[(x + 1) % 5], 1) for x in range(5)]
        a = [[a[x][y] ^ d[x] for y in range(5)] for x in range(5)]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                b[y][(2 * x + 3 * y) % 5] = _rol(a[x][y], _KECCAK_ROT[x][y])
        a = [[b[x][y] ^ ((~b[(x + 1) % 5][y]) & b[(x + 2) % 5][y]) for y in range(5)] for x in range(5)]
        a[0][0] ^= rc
    return a


def keccak256(data: bytes) -> bytes:
    rate = 136
    padded = bytearray(data) + b"\x01" + bytes((-len(data) - 1) % rate)
    padded[-1] |= 0x80
    a = [[0] * 5 for _ in range(5)]
    for off in range(0, len(padded), rate):
        block = padded[off : off + rate]
        for i in range(rate // 8):
            a[i % 5][i // 5] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        a = _keccak_f(a)
    out = b"".join(a[i % 5][i // 5].to_bytes(8, "little") for i in range(4))
    return out


assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


# ---------------------------------------------------------------------------------------------
# X.509 and signatures


def raw_sig_to_der(sig: bytes) -> bytes:
    half = len(sig) // 2
    return encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))


def ec_verify(key: Any, raw_sig: bytes, data: bytes, digest: Any) -> bool:
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(raw_sig) % 2:
        return False
    try:
        key.verify(raw_sig_to_der(raw_sig), data, ec.ECDSA(digest))
        return True
    except InvalidSignature:
        return False


def p256_key(raw64: bytes) -> Any:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw64)
    except ValueError:
        raise Fail("the attestation key is not a P-256 point") from None


def signed_by(cert: Any, issuer: Any) -> bool:
    """`issuer`'s key verifies `cert`'s signature and the names chain."""
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
    except (InvalidSignature, ValueError, TypeError):
        return False


def raw_extensions(cert: Any) -> dict:
    """The certificate's extensions as {oid: value bytes}, read from the TBS certificate with
    the DER reader below rather than through `cryptography`, whose strict parser refuses a whole
    extension list for one BER-ism (the simulator's PCK leaf encodes BasicConstraints cA FALSE,
    a DEFAULT value, explicitly; Intel's real PCK certificates do not)."""
    (tag, tbs), *_ = der_items(cert.tbs_certificate_bytes)
    out: dict = {}
    for t, content in der_items(tbs):
        if t != 0xA3:
            continue
        (_, seq), *_ = der_items(content)
        for _, ext in der_items(seq):
            items = der_items(ext)
            out[der_oid(items[0][1])] = items[-1][1]
    bc = out.get("2.5.29.19")
    if bc is not None:
        (_, fields), *_ = der_items(bc)
        if any(t == 0x01 and v == b"\x00" for t, v in der_items(fields)):
            note(f"{cert.subject.rfc4514_string()}: BasicConstraints encodes cA FALSE explicitly (BER, not DER)")
    return out


def is_ca(cert: Any) -> bool:
    bc = raw_extensions(cert).get("2.5.29.19")
    if bc is None:
        return False
    (_, seq), *_ = der_items(bc)
    items = der_items(seq)
    return bool(items) and items[0][0] == 0x01 and items[0][1] not in (b"", b"\x00")


def valid_at(cert: Any, when: _dt.datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def chain_to_root(certs: list, root: Any, when: _dt.datetime, what: str) -> None:
    """certs leaf first; each signed by the next, every issuer a CA; the last is the pinned root
    itself or signed by it; every certificate and the root valid at `when`. Raises Fail."""
    if not certs:
        raise Fail(f"{what}: no certificate")
    for i in range(len(certs) - 1):
        if not signed_by(certs[i], certs[i + 1]):
            raise Fail(f"{what}: certificate {i} is not signed by certificate {i + 1}")
        if not is_ca(certs[i + 1]):
            raise Fail(f"{what}: certificate {i + 1} signs but is not a CA")
    last = certs[-1]
    if der(last) == der(root):
        if not signed_by(root, root):
            raise Fail(f"{what}: the pinned root is not self-signed")
    elif not (signed_by(last, root) and is_ca(root)):
        raise Fail(f"{what}: ends at {last.subject.rfc4514_string()!r}, neither the pinned root nor signed by it")
    for i, c in enumerate(certs + [root]):
        if not valid_at(c, when):
            raise Fail(f"{what}: certificate {i} ({c.subject.rfc4514_string()}) is not valid at {when.isoformat()}")


def pem_chain(text: Any, what: str) -> list:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        raise Fail(f"{what} is not a string")
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError as e:
        raise Fail(f"{what}: {e}") from None
    return certs


# ---------------------------------------------------------------------------------------------
# minimal DER reading (the PCK certificate's SGX extension)


def der_items(b: bytes) -> list:
    """The (tag, content) pairs of a run of DER elements."""
    out = []
    o = 0
    while o < len(b):
        tag = b[o]
        o += 1
        if o >= len(b):
            raise Fail("der: truncated length")
        n = b[o]
        o += 1
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4:
                raise Fail("der: unsupported length")
            n = int.from_bytes(take(b, o, k, "der length"), "big")
            o += k
        out.append((tag, take(b, o, n, "der content")))
        o += n
    return out


def der_oid(content: bytes) -> str:
    if not content:
        raise Fail("der: empty oid")
    parts = [content[0] // 40, content[0] % 40] if content[0] < 80 else [2, content[0] - 80]
    v = 0
    for byte in content[1:]:
        v = (v << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(v)
            v = 0
    return ".".join(str(p) for p in parts)


SGX_EXT = "1.2.840.113741.1.13.1"


def sgx_extension(cert: Any) -> dict:
    """FMSPC, PCE-ID and the TCB (16 component SVNs, PCESVN, CPUSVN) of a PCK certificate."""
    raw = raw_extensions(cert).get(SGX_EXT)
    if raw is None:
        raise Fail("the pck certificate has no sgx extension (1.2.840.113741.1.13.1)")
    (tag, seq), *_ = der_items(raw)
    if tag != 0x30:
        raise Fail("sgx extension is not a sequence")
    out: dict = {}
    for tag, entry in der_items(seq):
        (otag, oid), (vtag, value) = der_items(entry)[:2]
        name = der_oid(oid)
        if name == SGX_EXT + ".4":
            out["fmspc"] = value
        elif name == SGX_EXT + ".3":
            out["pceid"] = value
        elif name == SGX_EXT + ".2":
            comps = {}
            for _, c in der_items(value):
                (_, coid), (ctag, cval) = der_items(c)[:2]
                sub = der_oid(coid)
                comps[sub] = cval
            svns = []
            for i in range(1, 17):
                v = comps.get(f"{SGX_EXT}.2.{i}")
                if v is None:
                    raise Fail(f"sgx extension: tcb component {i} missing")
                svns.append(int.from_bytes(v, "big"))
            pcesvn = comps.get(f"{SGX_EXT}.2.17")
            if pcesvn is None:
                raise Fail("sgx extension: pcesvn missing")
            out["sgx_svns"] = svns
            out["pcesvn"] = int.from_bytes(pcesvn, "big")
            out["cpusvn"] = comps.get(f"{SGX_EXT}.2.18")
    for need in ("fmspc", "pceid", "sgx_svns"):
        if need not in out:
            raise Fail(f"sgx extension: {need} missing")
    return out


# ---------------------------------------------------------------------------------------------
# Intel TDX quote (REFERENCE.md §2; Intel's DCAP quote format)

TD_BODY_FIELDS = {
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
        raise Fail(f"quote is {len(q)} bytes, shorter than its 48-byte header")
    version, key_type, tee_type = u16(q, 0), u16(q, 2), u32(q, 4)
    if version == 4:
        body_type, start, size = 2, 48, 584
    elif version == 5:
        body_type, size, start = u16(q, 48), u32(q, 50), 54
        if V5_BODY_SIZES.get(body_type) != size:
            raise Fail(f"v5 body type {body_type} with size {size}")
    else:
        raise Fail(f"quote version {version}, not 4 or 5")
    if key_type != 2:
        raise Fail(f"attestation key type {key_type}, not 2 (ECDSA-P256)")
    if tee_type != 0x81:
        raise Fail(f"tee type {tee_type:#x}, not 0x81 (TDX)")
    body = take(q, start, size, "td report body")
    fields = {name: body[o : o + n] for name, (o, n) in TD_BODY_FIELDS.items()}
    return {"version": version, "body_type": body_type, "signed": q[: start + size], "end": start + size, "fields": fields}


def parse_signature_data(q: bytes, parsed: dict) -> dict:
    """Quote signature, attestation key, QE report, its signature, QE auth data and the PCK chain."""
    o = parsed["end"]
    length = u32(q, o)
    sig = take(q, o + 4, length, "quote signature data")
    out = {"quote_sig": take(sig, 0, 64, "quote signature"), "att_key": take(sig, 64, 64, "attestation key")}
    cert_type, cert_size = u16(sig, 128), u32(sig, 130)
    cert = take(sig, 134, cert_size, "certification data")
    if cert_type != 6:
        raise Fail(f"certification data type {cert_type}, not 6 (QE report certification data)")
    out["qe_report"] = take(cert, 0, 384, "qe report")
    out["qe_sig"] = take(cert, 384, 64, "qe report signature")
    auth_len = u16(cert, 448)
    out["qe_auth"] = take(cert, 450, auth_len, "qe auth data")
    o2 = 450 + auth_len
    inner_type, inner_size = u16(cert, o2), u32(cert, o2 + 2)
    if inner_type != 5:
        raise Fail(f"inner certification data type {inner_type}, not 5 (PCK certificate chain)")
    out["pck_pem"] = take(cert, o2 + 6, inner_size, "pck certificate chain")
    return out


# The SGX REPORT body of the QE (384 bytes).
def qe_report_fields(r: bytes) -> dict:
    return {
        "cpusvn": r[0:16],
        "miscselect": int.from_bytes(r[16:20], "little"),
        "attributes": r[48:64],
        "mrenclave": r[64:96],
        "mrsigner": r[128:160],
        "isvprodid": int.from_bytes(r[256:258], "little"),
        "isvsvn": int.from_bytes(r[258:260], "little"),
        "report_data": r[320:384],
    }


def collateral_for(collateral: Any, fmspc: bytes) -> dict:
    entries = collateral if isinstance(collateral, list) else [collateral]
    seen = []
    for c in entries:
        if not isinstance(c, dict):
            continue
        try:
            f = json.loads(c["tcb_info"]).get("fmspc", "")
        except Exception:  # noqa: BLE001
            continue
        seen.append(f)
        if isinstance(f, str) and f.lower() == fmspc.hex():
            return c
    raise Fail(f"no collateral for fmspc {fmspc.hex()} (collateral for {seen or 'none'})")


def check_window(doc: dict, when: _dt.datetime, what: str) -> None:
    issued, nxt = parse_time(doc.get("issueDate")), parse_time(doc.get("nextUpdate"))
    if not issued <= when <= nxt:
        raise Fail(f"{what} is valid {issued.isoformat()}..{nxt.isoformat()}, not at {when.isoformat()}")


def signed_json(c: dict, name: str, root: Any, when: _dt.datetime) -> dict:
    """TCB info or QE identity: the text, signed (raw P-256 r‖s over its exact bytes) by the
    first certificate of its issuer chain, which chains to the pinned root."""
    text = c.get(name)
    if not isinstance(text, str):
        raise Fail(f"collateral {name} is not a string")
    chain = pem_chain(c.get(f"{name}_issuer_chain"), f"{name}_issuer_chain")
    chain_to_root(chain, root, when, f"{name} issuer chain")
    sig = unhex(c.get(f"{name}_signature"), f"{name}_signature")
    if len(sig) != 64 or not ec_verify(chain[0].public_key(), sig, text.encode(), hashes.SHA256()):
        raise Fail(f"{name} signature does not verify with its signing certificate")
    return {"doc": json.loads(text), "signer": chain[0]}


def crl_checks(c: dict, pck_chain: list, root: Any, when: _dt.datetime) -> None:
    def load(name: str) -> Any:
        raw = c.get(name)
        if isinstance(raw, list):
            raw = bytes(raw)
        elif isinstance(raw, str):
            raw = unhex(raw, name) if not raw.startswith("-----") else raw.encode()
        else:
            raise Fail(f"collateral {name} missing")
        try:
            return x509.load_der_x509_crl(raw) if not raw.startswith(b"-----") else x509.load_pem_x509_crl(raw)
        except ValueError as e:
            raise Fail(f"{name}: {e}") from None

    def window(crl: Any, what: str) -> None:
        nxt = crl.next_update_utc
        if not (crl.last_update_utc <= when and (nxt is None or when <= nxt)):
            raise Fail(f"{what} is valid {crl.last_update_utc}..{nxt}, not at {when.isoformat()}")

    root_crl = load("root_ca_crl")
    if root_crl.issuer != root.subject or not root_crl.is_signature_valid(root.public_key()):
        raise Fail("the root ca crl is not signed by the pinned root")
    window(root_crl, "root ca crl")
    # The PCK CRL is checked with the PCK leaf's issuing CA from the quote's own chain, which
    # chain_to_root has verified; the collateral's pck_crl_issuer_chain is only another copy of
    # that CA (one real collateral, automata-dcap-rs's, carries the TCB signing chain there).
    pck_crl = load("pck_crl")
    leaf = pck_chain[0]
    if len(pck_chain) < 2 or pck_crl.issuer != leaf.issuer or pck_chain[1].subject != leaf.issuer:
        raise Fail("the pck crl is not issued by the pck certificate's issuing ca")
    if not pck_crl.is_signature_valid(pck_chain[1].public_key()):
        raise Fail("the pck crl is not signed by the pck certificate's issuing ca")
    try:
        listed = pem_chain(c.get("pck_crl_issuer_chain"), "pck_crl_issuer_chain")
    except Fail:
        listed = []
    if not any(der(x) == der(pck_chain[1]) for x in listed):
        note("the collateral's pck_crl_issuer_chain does not hold the pck crl's issuer")
    window(pck_crl, "pck crl")
    if pck_crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None:
        raise Fail(f"the pck certificate (serial {leaf.serial_number:x}) is revoked")
    for cert in pck_chain[1:]:
        if cert.issuer == root.subject and der(cert) != der(root):
            if root_crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise Fail(f"{cert.subject.rfc4514_string()} is revoked by the root ca crl")


def masked_equal(value: bytes, mask: bytes, want: bytes) -> bool:
    return len(value) == len(mask) == len(want) and bytes(a & m for a, m in zip(value, mask)) == want


def verify_quote_dcap(q: bytes, parsed: dict, collateral: Any, root: Any, when: _dt.datetime) -> dict:
    """Everything the quote's signature rests on. Returns what TCB evaluation needs; raises Fail."""
    s = parse_signature_data(q, parsed)
    if not ec_verify(p256_key(s["att_key"]), s["quote_sig"], parsed["signed"], hashes.SHA256()):
        raise Fail("quote signature does not verify with the attestation key")
    pck_chain = pem_chain(s["pck_pem"].rstrip(b"\x00"), "pck certificate chain")
    chain_to_root(pck_chain, root, when, "pck chain")
    leaf = pck_chain[0]
    if not ec_verify(leaf.public_key(), s["qe_sig"], s["qe_report"], hashes.SHA256()):
        raise Fail("qe report signature does not verify with the pck leaf key")
    qe = qe_report_fields(s["qe_report"])
    if qe["report_data"][:32] != sha256(s["att_key"] + s["qe_auth"]):
        raise Fail("qe report data[0..32] is not sha256(attestation key ‖ qe auth data)")
    sgx = sgx_extension(leaf)
    c = collateral_for(collateral, sgx["fmspc"])
    crl_checks(c, pck_chain, root, when)
    tcb = signed_json(c, "tcb_info", root, when)
    info = tcb["doc"]
    if info.get("id") != "TDX" or info.get("version") != 3:
        raise Fail(f"tcb info is {info.get('id')} v{info.get('version')}, not TDX v3")
    check_window(info, when, "tcb info")
    if str(info.get("pceId", "")).lower() != sgx["pceid"].hex():
        raise Fail(f"tcb info pceId {info.get('pceId')} is not the pck certificate's {sgx['pceid'].hex()}")
    qei = signed_json(c, "qe_identity", root, when)
    ident = qei["doc"]
    if ident.get("id") != "TD_QE" or ident.get("version") != 2:
        raise Fail(f"qe identity is {ident.get('id')} v{ident.get('version')}, not TD_QE v2")
    check_window(ident, when, "qe identity")
    misc_mask = int.from_bytes(bytes.fromhex(ident["miscselectMask"]), "big")
    if qe["miscselect"] & misc_mask != int.from_bytes(bytes.fromhex(ident["miscselect"]), "big"):
        raise Fail("qe report miscselect does not match the qe identity")
    if not masked_equal(qe["attributes"], bytes.fromhex(ident["attributesMask"]), bytes.fromhex(ident["attributes"])):
        raise Fail("qe report attributes do not match the qe identity")
    if qe["mrsigner"] != bytes.fromhex(ident["mrsigner"]):
        raise Fail("qe report mrsigner is not the qe identity's")
    if qe["isvprodid"] != ident.get("isvprodid"):
        raise Fail("qe report isvprodid is not the qe identity's")
    return {"sgx": sgx, "tcb_info": info, "qe_identity": ident, "qe": qe}


def module_matches(info: dict, fields: dict) -> str | None:
    """The TDX module against the TCB info: MRSIGNERSEAM and SEAMATTRIBUTES (zero) equal to the
    identity of the quote's module version TDX_<TEE_TCB_SVN[1]>, or to tdxModule for version 0.
    Why not, or None. A mismatch leaves the platform's TCB unappraisable; the signatures stand."""
    module = info.get("tdxModule") or {}
    version = fields["tee_tcb_svn"][1]
    if version > 0:
        module = module_identity(info, version)
        if module is None:
            return f"tcb info has no tdx module identity TDX_{version:02X}"
    if fields["mrsignerseam"] != bytes.fromhex(module.get("mrsigner", "")):
        return "mrsignerseam is not the tdx module identity's mrsigner"
    if fields["seam_attributes"] != bytes(8) or fields["seam_attributes"] != bytes.fromhex(module.get("attributes", "")):
        return "seam attributes are not zero and the tdx module identity's"
    return None


def module_identity(info: dict, version: int) -> dict | None:
    want = f"TDX_{version:02X}"
    for m in info.get("tdxModuleIdentities") or []:
        if str(m.get("id", "")).upper() == want:
            return m
    return None


def tcb_status(dcap: dict, parsed: dict) -> tuple[str, list]:
    """Intel's TDX TCB level matching and status convergence."""
    info, sgx = dcap["tcb_info"], dcap["sgx"]
    tee = parsed["fields"]["tee_tcb_svn"]
    if module_matches(info, parsed["fields"]) is not None:
        return "TdxModuleMismatch", []
    sgx_level = tdx_level = None
    for level in info.get("tcbLevels", []):
        t = level["tcb"]
        comps = [c["svn"] for c in t["sgxtcbcomponents"]]
        if all(have >= want for have, want in zip(sgx["sgx_svns"], comps)) and sgx["pcesvn"] >= t["pcesvn"]:
            if sgx_level is None:
                sgx_level = level
            start = 2 if tee[1] > 0 else 0
            tdx = [c["svn"] for c in t["tdxtcbcomponents"]]
            if all(tee[i] >= tdx[i] for i in range(start, 16)):
                tdx_level = level
                break
    if sgx_level is None or tdx_level is None:
        return "TcbNotSupported", []
    status = tdx_level["tcbStatus"]
    advisories = list(tdx_level.get("advisoryIDs") or [])
    # The TDX module's own level.
    if tee[1] > 0:
        module = module_identity(info, tee[1])
        if module is None:
            return "TdxModuleMismatch", advisories
        mlevel = next((lv for lv in module.get("tcbLevels", []) if tee[0] >= lv["tcb"]["isvsvn"]), None)
        if mlevel is None:
            return "TcbNotSupported", advisories
        advisories += [a for a in mlevel.get("advisoryIDs") or [] if a not in advisories]
        mstatus = mlevel["tcbStatus"]
        if mstatus == "OutOfDate":
            if status in ("UpToDate", "SWHardeningNeeded"):
                status = "OutOfDate"
            elif status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
                status = "OutOfDateConfigurationNeeded"
        if mstatus == "Revoked":
            status = "Revoked"
    if status == "Revoked":
        return status, advisories
    # The QE's level.
    isvsvn = dcap["qe"]["isvsvn"]
    qlevel = next((lv for lv in dcap["qe_identity"].get("tcbLevels", []) if isvsvn >= lv["tcb"]["isvsvn"]), None)
    if qlevel is None:
        return "TcbNotSupported", advisories
    qstatus = qlevel["tcbStatus"]
    advisories += [a for a in qlevel.get("advisoryIDs") or [] if a not in advisories]
    if qstatus == "Revoked":
        return "Revoked", advisories
    if qstatus == "OutOfDate":
        if status in ("UpToDate", "SWHardeningNeeded"):
            status = "OutOfDate"
        elif status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            status = "OutOfDateConfigurationNeeded"
    return status, advisories


# TDATTRIBUTES (TDX module ABI): 0 DEBUG; 1-3 reserved (TUD); 6 PMT_PROF (profiling);
# 4-5, 7-15 reserved; 16 ICSSD; 17-26 reserved; 27 LASS; 28 SEPT_VE_DISABLE; 29 MIGRATABLE;
# 30 PKS; 31 KL; 32-61 reserved; 62 TPA; 63 PERFMON (profiling).
TD_ATTR_ALLOWED = (1 << 16) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31) | (1 << 62)


def td_attributes_ok(attrs: bytes) -> str | None:
    v = int.from_bytes(attrs, "little")
    if not v >> 28 & 1:
        return "sept_ve_disable is not set"
    if v >> 29 & 1:
        return "the td is migratable"
    if v >> 6 & 1 or v >> 63 & 1:
        return "profiling (pmt_prof or perfmon) is on"
    extra = v & ~TD_ATTR_ALLOWED & ~1
    if extra:
        return f"reserved bits {extra:#x} set"
    return None


# ---------------------------------------------------------------------------------------------
# dstack event log (REFERENCE.md §3)

RUNTIME_EVENT = 0x08000001
IDENTITY_EVENTS = ("app-id", "compose-hash", "instance-id", "key-provider", "os-image-hash")


def runtime_digest(e: dict) -> bytes:
    name = e.get("event", "")
    if not isinstance(name, str):
        raise Fail("runtime event name is not a string")
    payload = unhex(e.get("event_payload", ""), "event_payload")
    if e.get("version") == 2:
        canonical = json.dumps(
            {"name": name, "payload": payload.hex(), "type": RUNTIME_EVENT},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha384(canonical.encode()).digest()
    return hashlib.sha384(RUNTIME_EVENT.to_bytes(4, "little") + b":" + name.encode() + b":" + payload).digest()


def event_type(e: dict) -> int:
    t = e.get("event_type")
    if isinstance(t, str):
        t = int(t, 0)
    if not isinstance(t, int):
        raise Fail(f"event_type {t!r}")
    return t


def replay_log(events: list, fields: dict) -> dict:
    """RTMR0-3 from the log; raises Fail. Returns the identity events read before system-ready."""
    acc = {i: bytes(48) for i in range(4)}
    identity: dict = {}
    ready = False
    for n, e in enumerate(events):
        if not isinstance(e, dict):
            raise Fail(f"event {n} is not an object")
        imr = e.get("imr")
        if imr not in (0, 1, 2, 3):
            raise Fail(f"event {n} has imr {imr!r}")
        if imr == 3:
            if event_type(e) != RUNTIME_EVENT:
                raise Fail(f"event {n} on imr 3 is of type {event_type(e):#x}, not a runtime event")
            d = runtime_digest(e)
            name = e.get("event")
            if name == "system-ready":
                ready = True
            elif name in IDENTITY_EVENTS:
                if ready:
                    raise Fail(f"identity event {name} after system-ready")
                if name in identity:
                    raise Fail(f"identity event {name} twice")
                identity[name] = unhex(e.get("event_payload", ""), "event_payload")
        else:
            d = unhex(e.get("digest", ""), f"event {n} digest")
        if len(d) != 48:
            raise Fail(f"event {n}: digest of {len(d)} bytes")
        acc[imr] = hashlib.sha384(acc[imr] + d).digest()
    for i in range(4):
        if acc[i] != fields[f"rtmr{i}"]:
            raise Fail(f"replayed rtmr{i} {acc[i].hex()[:16]}… differs from the quote's")
    return identity


# ---------------------------------------------------------------------------------------------
# NVIDIA SPDM evidence (REFERENCE.md §4)


def parse_spdm(ev: bytes) -> dict:
    req = take(ev, 0, 37, "spdm request")
    if req[0] != 0x11 or req[1] != 0xE0:
        raise Fail(f"request header {req[:2].hex()}, expected 11e0")
    head = take(ev, 37, 8, "spdm response header")
    if head[0] != 0x11 or head[1] != 0x60:
        raise Fail(f"response header {head[:2].hex()}, expected 1160")
    count = head[4]
    record_len = int.from_bytes(head[5:8], "little")
    record = take(ev, 45, record_len, "measurement record")
    blocks = {}
    o = 0
    for _ in range(count):
        index = take(record, o, 1, "block index")[0]
        spec = take(record, o + 1, 1, "block spec")[0]
        size = u16(record, o + 2)
        body = take(record, o + 4, size, "block")
        if spec == 1:
            blocks[index] = take(body, 3, u16(body, 1), "dmtf value")
        o += 4 + size
    if o != record_len:
        raise Fail(f"{count} blocks fill {o} bytes of a {record_len}-byte record")
    o = 45 + record_len
    opaque_len = u16(ev, o + 32)
    opaque = take(ev, o + 34, opaque_len, "opaque data")
    sig_offset = o + 34 + opaque_len
    signature = take(ev, sig_offset, 96, "signature")
    tlvs = {}
    p = 0
    while p + 4 <= len(opaque):
        t, s = u16(opaque, p), u16(opaque, p + 2)
        tlvs[t] = take(opaque, p + 4, s, f"opaque field {t}")
        p += 4 + s
    return {"request_nonce": req[4:36], "blocks": blocks, "opaque": tlvs, "sig_offset": sig_offset, "signature": signature}


FWID_OID = "2.23.133.5.4.1"
DICE_TCB_INFO_OID = "2.23.133.5.4.1.1"


def leaf_fwid(leaf: Any) -> bytes | None:
    """Hopper: the last 48 bytes of extension 2.23.133.5.4.1. Blackwell: the digest of the first
    FWID of the TCG DiceTcbInfo extension 2.23.133.5.4.1.1 (fwids is its [6] member, a SEQUENCE
    OF SEQUENCE {hashAlg OID, digest OCTET STRING})."""
    ext = raw_extensions(leaf)
    if FWID_OID in ext:
        return ext[FWID_OID][-48:] if len(ext[FWID_OID]) >= 48 else None
    if DICE_TCB_INFO_OID in ext:
        (_, info), *_ = der_items(ext[DICE_TCB_INFO_OID])
        for tag, content in der_items(info):
            if tag == 0xA6:
                (_, first), *_ = der_items(content)
                return der_items(first)[1][1]
    return None


def gpu_evidence(item: Any, root: Any, when: _dt.datetime) -> dict:
    """Parses one evidence_list entry and verifies it; returns leaf, nonce, error (or None)."""
    out: dict = {"leaf": None, "request_nonce": None, "error": None}
    try:
        if not isinstance(item, dict):
            raise Fail("evidence entry is not an object")
        ev = base64.b64decode(item.get("evidence", ""), validate=True)
        certs = x509.load_pem_x509_certificates(base64.b64decode(item.get("certificate", "")))
        out["leaf"] = certs[0]
        spdm = parse_spdm(ev)
        out["request_nonce"] = spdm["request_nonce"]
        key = certs[0].public_key()
        if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)):
            raise Fail("the leaf key is not P-384")
        if not ec_verify(key, spdm["signature"], ev[: spdm["sig_offset"]], hashes.SHA384()):
            raise Fail("spdm signature does not verify with the leaf key")
        # The chain as sent may end with its own copy of the root: compared, never trusted.
        sent = certs
        if der(sent[-1]) == der(root):
            sent = sent[:-1]
        chain_to_root(sent, root, when, "gpu chain")
        fwid = spdm["opaque"].get(20)
        if fwid is not None and leaf_fwid(certs[0]) != fwid:
            raise Fail("the leaf's fwid is not opaque field 20")
    except Fail as e:
        out["error"] = str(e)
    except Exception as e:  # noqa: BLE001
        out["error"] = repr(e)
    return out


# ---------------------------------------------------------------------------------------------
# NRAS (REFERENCE.md §4, docs/gpu.md)


def jwt_parts(token: Any) -> tuple:
    if not isinstance(token, str) or token.count(".") != 2:
        raise Fail("not a compact jws")
    h, p, s = token.split(".")
    return json.loads(b64url(h)), json.loads(b64url(p)), b64url(s), f"{h}.{p}".encode()


def jwk_key(jwk: dict, intermediates: list, when: _dt.datetime) -> Any:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-384" or jwk.get("alg", "ES384") != "ES384":
        raise Fail(f"jwk is {jwk.get('kty')}/{jwk.get('crv')}, not an ES384 P-384 key")
    key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url(jwk["x"]), "big"), int.from_bytes(b64url(jwk["y"]), "big"), ec.SECP384R1()
    ).public_key()
    x5c = jwk.get("x5c") or []
    if not x5c:
        raise Fail("jwk has no x5c")
    leaf = x509.load_der_x509_certificate(base64.b64decode(x5c[0]))
    intermediate = next((i for i in intermediates if signed_by(leaf, i)), None)
    if intermediate is None:
        raise Fail("the jwk's x5c leaf is not signed by a pinned nras intermediate")
    if not (valid_at(leaf, when) and valid_at(intermediate, when)):
        raise Fail(f"the jwk's x5c leaf or the intermediate is not valid at {when.isoformat()}")
    lkey = leaf.public_key()
    if not isinstance(lkey, ec.EllipticCurvePublicKey) or lkey.public_numbers() != key.public_numbers():
        raise Fail("the jwk's x/y are not its x5c leaf's key")
    return key


def judge_nras(nras: Any, nonce: bytes, issuer: Any, intermediates: list, gpus: list, when: _dt.datetime) -> tuple:
    """nras_token for one part (raises Fail), and the GPU-n claims matched to each GPU index."""
    if not isinstance(nras, dict):
        raise Fail("no nras answer for this part")
    response = json_value(nras.get("response"))
    jwks = nras.get("jwks") or {}
    if not (isinstance(response, list) and len(response) >= 2 and isinstance(response[0], list)):
        raise Fail("the response is not a detached eat [[\"JWT\", token], {gpu tokens}]")
    if response[0][:1] != ["JWT"] or len(response[0]) != 2:
        raise Fail("response[0] is not [\"JWT\", token]")
    overall, per_gpu = response[0][1], response[1]
    if not isinstance(per_gpu, dict):
        raise Fail("response[1] is not an object of gpu tokens")
    keys: dict = {}
    for k in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if isinstance(k, dict):
            keys.setdefault(k.get("kid"), []).append(k)
    claims = {}
    for name, token in [("overall", overall)] + sorted(per_gpu.items()):
        header, payload, sig, signed = jwt_parts(token)
        if header.get("alg") != "ES384" or "crit" in header or not header.get("kid"):
            raise Fail(f"{name}: header {header} is not ES384 with a kid and no crit")
        found = keys.get(header["kid"], [])
        if len(found) != 1:
            raise Fail(f"{name}: {len(found)} jwks keys for kid {header['kid']}")
        key = jwk_key(found[0], intermediates, when)
        if len(sig) != 96 or not ec_verify(key, sig, signed, hashes.SHA384()):
            raise Fail(f"{name}: es384 signature does not verify")
        claims[name] = payload
    top = claims["overall"]
    ts = int(when.timestamp())
    for name, c in claims.items():
        need = name == "overall"
        if "iss" in c or need:
            if c.get("iss") != issuer:
                raise Fail(f"{name}: iss {c.get('iss')!r} is not {issuer!r}")
        if "eat_nonce" in c or need:
            if not (isinstance(c.get("eat_nonce"), str) and c["eat_nonce"].lower() == nonce.hex()):
                raise Fail(f"{name}: eat_nonce {c.get('eat_nonce')} is not the bundle's nonce")
        if "exp" in c or need:
            if not (isinstance(c.get("exp"), (int, float)) and c["exp"] >= ts):
                raise Fail(f"{name}: exp {c.get('exp')} is before the observed time {ts}")
        for t in ("nbf", "iat"):
            if t in c or need:
                if not (isinstance(c.get(t), (int, float)) and c[t] <= ts + 300):
                    raise Fail(f"{name}: {t} {c.get(t)} is more than 300 s after the observed time {ts}")
    submods = top.get("submods")
    if not isinstance(submods, dict) or set(submods) != set(per_gpu):
        raise Fail("submods do not list exactly the gpu tokens")
    for name, entry in submods.items():
        want = hashlib.sha256(per_gpu[name].encode()).hexdigest()
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == "DIGEST"
                and entry[1] == ["SHA-256", entry[1][1]] and str(entry[1][1]).lower() == want):
            raise Fail(f"submod {name}'s digest is not its token's sha256")
    if len(per_gpu) != len(gpus):
        raise Fail(f"{len(per_gpu)} gpu tokens for {len(gpus)} gpus")
    # Match tokens to GPUs: by ueid (the leaf serial in decimal) when all are known, else by
    # order GPU-0..GPU-(n-1), where known ueids must still agree.
    serials = [str(g["leaf"].serial_number) if g.get("leaf") is not None and g["error"] is None else None for g in gpus]
    ueids = {name: claims[name].get("ueid") for name in per_gpu}
    matched: dict = {}
    if all(isinstance(u, str) for u in ueids.values()) and all(s is not None for s in serials):
        if len(set(ueids.values())) != len(ueids) or len(set(serials)) != len(serials):
            raise Fail("a ueid occurs twice")
        for name, u in ueids.items():
            if u not in serials:
                raise Fail(f"{name}'s ueid {u} is no gpu's serial")
            matched[serials.index(u)] = claims[name]
    else:
        if set(per_gpu) != {f"GPU-{i}" for i in range(len(gpus))}:
            raise Fail("gpu tokens are not named GPU-0..GPU-(n-1)")
        for i in range(len(gpus)):
            u = ueids[f"GPU-{i}"]
            if isinstance(u, str) and serials[i] is not None and u != serials[i]:
                raise Fail(f"GPU-{i}'s ueid is not gpu {i}'s serial")
            matched[i] = claims[f"GPU-{i}"]
    return top, matched


def cert_claim_ok(v: Any) -> bool:
    return isinstance(v, dict) and v.get("x-nvidia-cert-status") == "valid" and v.get("x-nvidia-cert-ocsp-status") == "good"


def nras_gpu_claims(top: dict, c: dict) -> str | None:
    """Why NRAS does not attest this GPU, or None."""
    bad = []
    if top.get("x-nvidia-overall-att-result") is not True:
        bad.append("overall result not true")
    if c.get("measres") != "success":
        bad.append(f"measres {c.get('measres')!r}")
    if c.get("dbgstat") != "disabled":
        bad.append(f"dbgstat {c.get('dbgstat')!r}")
    for k in ("secboot", "x-nvidia-gpu-arch-check", "x-nvidia-gpu-attestation-report-parsed",
              "x-nvidia-gpu-attestation-report-nonce-match", "x-nvidia-gpu-attestation-report-signature-verified"):
        if c.get(k) is not True:
            bad.append(f"{k} {c.get(k)!r}")
    version = top.get("x-nvidia-ver", c.get("x-nvidia-ver"))
    rims = ("driver", "vbios")
    if version == "3.0":
        required = {"x-nvidia-gpu-attestation-report-cert-chain": cert_claim_ok,
                    "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": lambda v: v is True}
        for r in rims:
            required[f"x-nvidia-gpu-{r}-rim-cert-chain"] = cert_claim_ok
            required[f"x-nvidia-gpu-{r}-rim-signature-verified"] = lambda v: v is True
        optional = [f"x-nvidia-gpu-{r}-rim-version-match" for r in rims]
    elif version == "2.0":
        required = {"x-nvidia-gpu-attestation-report-cert-chain-validated": lambda v: v is True}
        for r in rims:
            required[f"x-nvidia-gpu-{r}-rim-cert-validated"] = lambda v: v is True
            required[f"x-nvidia-gpu-{r}-rim-signature-verified"] = lambda v: v is True
        optional = []
    else:
        return f"claims version {version!r} not understood" + (f"; {', '.join(bad)}" if bad else "")
    for k, ok in required.items():
        if not ok(c.get(k)):
            bad.append(f"{k} {c.get(k)!r}")
    for r in rims:
        optional += [f"x-nvidia-gpu-{r}-rim-{x}" for x in ("fetched", "schema-validated", "measurements-available")]
    optional.append("x-nvidia-gpu-vbios-index-no-conflict")
    for k in optional:
        if k in c and c[k] is not True:
            bad.append(f"{k} {c.get(k)!r}")
    return ", ".join(bad) if bad else None


# ---------------------------------------------------------------------------------------------
# the parts of a response


def detect_format(att: Any) -> str | None:
    if not isinstance(att, dict):
        return None
    has = lambda k: att.get(k) is not None  # noqa: E731
    if has("gateway_attestation") or has("model_attestations"):
        return "near-gateway"
    if att.get("attestation_type") == "chutes":
        return "chutes"
    if isinstance(att.get("format"), str) and att["format"].startswith("https://tinfoil.sh/predicate/"):
        return "tinfoil"
    if has("model_name") and (has("tls_cert_fingerprint") or has("compose_manager_attestation")):
        return "near-direct"
    if any(has(k) for k in ("intel_quote", "quote", "all_attestations", "signing_address", "event_log")):
        return "dstack"
    return None


def part(scope: str, fields: Any, role: str, terminating: bool, owner: str | None = None) -> dict:
    return {"scope": scope, "fields": fields if isinstance(fields, dict) else {}, "role": role,
            "terminating": terminating, "owner": owner}


def node_parts(att: dict) -> list:
    listed = [x for x in att.get("all_attestations") or [] if isinstance(x, dict)]
    top_quote = "intel_quote" in att or "quote" in att
    if len(listed) < 2:
        only = listed[0] if listed and not top_quote else att
        return [part("", only, "node", True)]
    addr = lambda f: f.get("signing_address").lower() if isinstance(f.get("signing_address"), str) else None  # noqa: E731
    reports = list(listed)
    if top_quote and not any(addr(r) == addr(att) for r in reports):
        reports.insert(0, att)
    seen: list = []
    answered = False
    out = []
    for i, f in enumerate(reports):
        a = addr(f)
        terminating = not answered and a is not None and a == addr(att)
        answered = answered or terminating
        try:
            hexok = a is not None and (bytes.fromhex(a[2:] if a.startswith("0x") else a) is not None)
        except ValueError:
            hexok = False
        if hexok and a not in seen:
            seen.append(a)
            scope = f"node:{a}"
        else:
            scope = f"node:#{i}"
        out.append(part(scope, f, "node", terminating))
    return out


def parts_of(att: dict, fmt: str) -> list:
    if fmt == "dstack":
        return node_parts(att)
    if fmt == "near-direct":
        parts = node_parts(att)
        owner = next((p["scope"] for p in parts if p["terminating"]), "")
        cm = att.get("compose_manager_attestation")
        if cm is not None:
            parts.append(part("compose_manager", cm, "compose_manager", False, owner))
        return parts
    if fmt == "near-gateway":
        parts = []
        if att.get("gateway_attestation") is not None:
            gw = dict(att["gateway_attestation"]) if isinstance(att["gateway_attestation"], dict) else {}
            # The gateway's OHTTP attestation sits at the top level.
            for k in ("ohttp_attestation", "ohttp_key_config"):
                if k in att and k not in gw:
                    gw[k] = att[k]
            parts.append(part("gateway", gw, "gateway", True))
        for i, m in enumerate(att.get("model_attestations") or []):
            parts.append(part(f"model:{i}", m, "model", False))
            if isinstance(m, dict) and m.get("compose_manager_attestation") is not None:
                parts.append(part(f"model:{i}/compose_manager", m["compose_manager_attestation"],
                                  "compose_manager", False, f"model:{i}"))
        return parts
    return []


def sub(scope: str, child: str) -> str:
    return f"{scope}/{child}" if scope else child


# ---------------------------------------------------------------------------------------------
# the verdict


class Verdict:
    def __init__(self) -> None:
        self.checks: list = []
        self.observed: list = []

    def add(self, name: str, scope: str, ok: bool, why: str) -> bool:
        self.checks.append({"name": name, "scope": scope, "pass": bool(ok), "why": why})
        return bool(ok)

    def run(self, name: str, scope: str, judge: Callable[[], str]) -> bool:
        """Runs `judge`, which returns a pass reason or raises Fail (or anything else)."""
        try:
            return self.add(name, scope, True, judge())
        except Fail as e:
            return self.add(name, scope, False, str(e))
        except Exception as e:  # noqa: BLE001
            err(f"{name} [{scope}]", traceback.format_exc(limit=3))
            return self.add(name, scope, False, f"error: {e!r}")

    def get(self, name: str, scope: str) -> bool:
        return any(c["pass"] for c in self.checks if c["name"] == name and c["scope"] == scope)

    def observe(self, scope: str, field: str, value: Any) -> None:
        self.observed.append({"scope": scope, "field": field, "value": value})


def judge_part(v: Verdict, p: dict, ctx: dict) -> None:
    scope, f, role = p["scope"], p["fields"], p["role"]
    nonce, when = ctx["nonce"], ctx["when"]
    state: dict = {}
    p["state"] = state

    # 1. tdx_quote_parse
    def parse() -> str:
        text = f.get("intel_quote") if f.get("intel_quote") is not None else f.get("quote")
        if isinstance(f.get("intel_quote"), str) and isinstance(f.get("quote"), str):
            if unhex(f["intel_quote"], "intel_quote") != unhex(f["quote"], "quote"):
                raise Fail("intel_quote and quote differ")
        q = unhex(text, "intel_quote")
        state["quote"] = q
        state["parsed"] = parse_quote(q)
        return f"tdx quote v{state['parsed']['version']}"

    parsed_ok = v.run("tdx_quote_parse", scope, parse)
    parsed = state.get("parsed")
    if parsed:
        for k in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "report_data"):
            v.observe(scope, k, parsed["fields"][k].hex())

    # 2.-3. signature chain and TCB status
    def signature() -> str:
        if not parsed_ok:
            raise Fail("the quote did not parse")
        state["dcap"] = verify_quote_dcap(state["quote"], parsed, ctx["collateral"], ctx["intel_root"], when)
        v.observe(scope, "fmspc", state["dcap"]["sgx"]["fmspc"].hex())
        return "quote, qe report, pck chain, crls, tcb info and qe identity verify to the pinned root"

    sig_ok = v.run("tdx_quote_signature", scope, signature)

    def tcb() -> str:
        if not sig_ok:
            raise Fail("not judged: tdx_quote_signature did not pass")
        status, advisories = tcb_status(state["dcap"], parsed)
        v.observe(scope, "tcb_status", status)
        if advisories:
            v.observe(scope, "tcb_advisory_ids", ",".join(advisories))
        if status == "Revoked" or status not in ctx["allowed_tcb"]:
            raise Fail(f"tcb status {status} is not allowed ({ctx['allowed_tcb']})")
        return status

    v.run("tdx_tcb_status", scope, tcb)

    # 4.-5. TD attributes
    def debug() -> str:
        if not parsed_ok:
            raise Fail("the quote did not parse")
        if parsed["fields"]["td_attributes"][0] & 1:
            raise Fail("debug bit set")
        return "debug bit clear"

    def attributes() -> str:
        if not parsed_ok:
            raise Fail("the quote did not parse")
        why = td_attributes_ok(parsed["fields"]["td_attributes"])
        if why:
            raise Fail(why)
        return "sept_ve_disable, not migratable, no profiling or reserved bits"

    v.run("tdx_debug_disabled", scope, debug)
    v.run("tdx_td_attributes", scope, attributes)

    # 6.-7. REPORTDATA binding and the signing key
    def binding() -> str:
        if not parsed_ok:
            raise Fail("the quote did not parse")
        rd = parsed["fields"]["report_data"]
        if rd[32:] != nonce:
            raise Fail("report_data[32..64] is not the bundle's nonce")
        if role == "compose_manager":
            actions = f.get("actions")
            if not isinstance(actions, list):
                raise Fail("the compose manager has no actions list")
            for order, text in action_encodings(actions):
                if sha256(text.encode()) == rd[:32]:
                    return f"sha256 of the actions ({order}) ‖ nonce"
            raise Fail("report_data[0..32] is the sha256 of none of the three encodings of the actions")
        algo = f.get("signing_algo") or "ecdsa"
        key = unhex(f.get("signing_address"), "signing_address")
        if algo == "ecdsa" and len(key) != 20 or algo == "ed25519" and len(key) != 32:
            raise Fail(f"a {algo} signing address of {len(key)} bytes")
        fp = f.get("tls_cert_fingerprint")
        if fp is not None:
            fpb = unhex(fp, "tls_cert_fingerprint")
            if rd[:32] != sha256(key + fpb):
                raise Fail("report_data[0..32] is not sha256(key ‖ tls fingerprint)")
            return "sha256(key ‖ tls fingerprint) ‖ nonce"
        if rd[:32] != key + bytes(32 - len(key)):
            raise Fail("report_data[0..32] is not the zero-padded key")
        return "key ‖ zeros ‖ nonce"

    state["bound"] = v.run("report_data_binding", scope, binding)

    if role != "compose_manager" and f.get("signing_public_key") is not None:
        def key_address() -> str:
            algo = f.get("signing_algo") or "ecdsa"
            public = unhex(f.get("signing_public_key"), "signing_public_key")
            address = unhex(f.get("signing_address"), "signing_address")
            if algo == "ed25519":
                if public != address:
                    raise Fail("the ed25519 public key is not the signing address")
                return "ed25519 key is the address"
            if len(public) == 65 and public[0] == 4:
                public = public[1:]
            if len(public) != 64 or keccak256(public)[12:] != address:
                raise Fail("keccak256(signing_public_key)[12..] is not the signing address")
            return "keccak256(public key) gives the address"

        v.run("signing_key_address", scope, key_address)

    # 8.-9. event log replay and compose binding
    def replay() -> str:
        if not parsed_ok:
            raise Fail("the quote did not parse")
        events = json_value(f.get("event_log"))
        if events is None:
            info = json_value(f.get("info")) or {}
            events = json_value((json_value(info.get("tcb_info")) or {}).get("event_log"))
        if not isinstance(events, list):
            raise Fail("no event log")
        state["identity"] = replay_log(events, parsed["fields"])
        return f"rtmr0-3 replayed from {len(events)} events"

    replay_ok = v.run("event_log_replay", scope, replay)

    if role != "compose_manager":
        def compose() -> str:
            if not replay_ok:
                raise Fail("not judged: event_log_replay did not pass")
            info = json_value(f.get("info")) or {}
            app_compose = (json_value(info.get("tcb_info")) or {}).get("app_compose")
            if not isinstance(app_compose, str):
                raise Fail("no app_compose")
            h = sha256(app_compose.encode())
            event = state["identity"].get("compose-hash")
            if event is None:
                raise Fail("no compose-hash event before system-ready")
            if event != h:
                raise Fail("sha256(app_compose) is not the replayed compose-hash event")
            mrconfigid = parsed["fields"]["mrconfigid"]
            if mrconfigid not in (bytes(48), b"\x01" + h + bytes(15)):
                raise Fail("mrconfigid is neither zero nor 0x01 ‖ sha256(app_compose)")
            return "sha256(app_compose) is the replayed compose-hash event"

        v.run("compose_binding", scope, compose)


def action_encodings(actions: list) -> list:
    manager_order = ["timestamp", "action", "tag", "commit", "file", "file_sha256", "container", "services"]

    def reorder(a: Any) -> Any:
        if not isinstance(a, dict):
            return a
        keys = [k for k in manager_order if k in a] + [k for k in a if k not in manager_order]
        return {k: a[k] for k in keys}

    compact = lambda x, **kw: json.dumps(x, separators=(",", ":"), ensure_ascii=False, **kw)  # noqa: E731
    return [
        ("the compose manager's member order", compact([reorder(a) for a in actions])),
        ("members as received", compact(actions)),
        ("members sorted", compact(actions, sort_keys=True)),
    ]


def judge_same_td(v: Verdict, p: dict, by_scope: dict) -> None:
    def same() -> str:
        owner = by_scope.get(p["owner"])
        mine = p["state"].get("parsed")
        theirs = owner["state"].get("parsed") if owner else None
        if not mine or not theirs:
            raise Fail("a quote did not parse")
        for k in ("mrtd", "mrconfigid", "rtmr0", "rtmr1", "rtmr2", "rtmr3"):
            if mine["fields"][k] != theirs["fields"][k]:
                raise Fail(f"{k} differs from {p['owner']}'s")
        return f"mrtd, mrconfigid and rtmr0-3 equal those of {p['owner']}"

    v.run("same_td", p["scope"], same)


def judge_gpus(v: Verdict, p: dict, ctx: dict, nras: Any) -> list:
    """gpu_nonce and gpu_evidence_signature per GPU, nras_token and nras_result; the GPUs."""
    scope, f, nonce = p["scope"], p["fields"], ctx["nonce"]
    gpus: list = []
    payload = None
    try:
        payload = json_value(f.get("nvidia_payload"))
        if not isinstance(payload, dict):
            raise Fail("nvidia_payload is not an object")
        items = payload.get("evidence_list")
        if not isinstance(items, list) or not items:
            raise Fail("no evidence_list")
    except Fail as e:
        for name in ("gpu_nonce", "gpu_evidence_signature", "nras_token", "nras_result"):
            v.add(name, scope, False, str(e))
        return gpus
    try:
        payload_nonce = unhex(payload.get("nonce"), "payload nonce")
    except Fail:
        payload_nonce = None
    for i, item in enumerate(items):
        g = gpu_evidence(item, ctx["nvidia_root"], ctx["when"])
        g["scope"] = sub(scope, f"gpu:{i}")
        gpus.append(g)
        v.add("gpu_nonce", g["scope"], g["request_nonce"] == nonce and payload_nonce == nonce,
              "nonce in the payload and the signed request" if g["request_nonce"] == nonce and payload_nonce == nonce
              else "the payload or the signed request does not carry the bundle's nonce")
        v.add("gpu_evidence_signature", g["scope"], g["error"] is None, g["error"] or "signature, chain and fwid")

    matched: dict = {}
    top: dict = {}

    def token() -> str:
        nonlocal matched, top
        if not ctx["nras_intermediates"]:
            raise Fail("no pinned nras intermediate")
        top, matched = judge_nras(nras, nonce, ctx["nras_issuer"], ctx["nras_intermediates"], gpus, ctx["when"])
        return f"{len(matched)} gpu tokens and the overall token verify"

    token_ok = v.run("nras_token", scope, token)
    for i, g in enumerate(gpus):
        def result(i: int = i) -> str:
            if not token_ok:
                raise Fail("not judged: nras_token did not pass")
            why = nras_gpu_claims(top, matched.get(i) or {})
            if why:
                raise Fail(why)
            return "nras attests this gpu"

        v.run("nras_result", g["scope"], result)
    return gpus


def judge_canary(v: Verdict, index: int, c: Any, ctx: dict, keys: list) -> None:
    scope = f"canary:{index}"
    nonce = ctx["nonce"]
    if not isinstance(c, dict):
        for name in ("canary_fresh", "canary_hashes", "canary_signature"):
            v.add(name, scope, False, "canary entry is not an object")
        return
    request = c.get("request_body") if isinstance(c.get("request_body"), str) else ""
    v.add("canary_fresh", scope, nonce.hex() in request,
          "the request carries the nonce" if nonce.hex() in request else "the request does not carry the nonce")
    sig = c.get("signature")

    def hashes_() -> str:
        if not isinstance(sig, dict) or not isinstance(sig.get("text"), str):
            raise Fail("no signature text")
        text = sig["text"]
        pieces = text.rsplit(":", 2)
        if len(pieces) == 3:
            model, req_h, resp_h = pieces
            try:
                want_model = json.loads(request).get("model")
            except Exception:  # noqa: BLE001
                want_model = None
            if model != want_model:
                raise Fail(f"signed model {model!r} is not the request's {want_model!r}")
        elif len(pieces) == 2:
            req_h, resp_h = pieces
        else:
            raise Fail("signed text is not <req>:<resp> or <model>:<req>:<resp>")
        if req_h != sha256(request.encode()).hex():
            raise Fail("the request hash is not sha256 of the request body")
        if isinstance(c.get("response_body"), str):
            body = c["response_body"].encode()
        else:
            body = base64.b64decode(c.get("response_body_base64", ""))
        if resp_h == sha256(body).hex():
            return "request and response as raw bytes"
        if not c.get("stream"):
            dumps = dumps_form(body)
            if dumps is not None and resp_h == sha256(dumps.encode()).hex():
                return "response as its json.dumps form"
        raise Fail("the response hash matches neither the raw bytes nor an accepted json.dumps form")

    v.run("canary_hashes", scope, hashes_)

    def signature() -> str:
        if not isinstance(sig, dict) or not isinstance(sig.get("text"), str) or not isinstance(sig.get("signature"), str):
            raise Fail("no signature")
        text = sig["text"]
        raw = unhex(sig["signature"], "signature")
        algo = sig.get("signing_algo") or ("ed25519" if len(raw) == 64 else "ecdsa")
        attested = [k for k in keys if k["bound"] and k["serves"] and k["algo"] == algo]
        if algo == "ed25519":
            claimed = unhex(sig.get("signing_address"), "signing_address")
            signer = next((k for k in attested if k["key"] == claimed), None)
            if signer is None:
                raise Fail("the claimed ed25519 key is no attested model-serving part's")
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(claimed).verify(raw, text.encode())
            except (InvalidSignature, ValueError):
                raise Fail("ed25519 signature does not verify") from None
            return f"ed25519 signature by {signer['scope'] or 'the node'}"
        if not HAVE_COINCURVE:
            raise Fail("coincurve is not installed")
        if len(raw) != 65:
            raise Fail(f"ecdsa signature of {len(raw)} bytes")
        v_ = raw[64] - 27 if raw[64] >= 27 else raw[64]
        if v_ not in (0, 1):
            raise Fail(f"recovery id {raw[64]}")
        digest = keccak256(b"\x19Ethereum Signed Message:\n" + str(len(text.encode())).encode() + text.encode())
        try:
            public = coincurve.PublicKey.from_signature_and_message(raw[:64] + bytes([v_]), digest, hasher=None)
        except Exception as e:  # noqa: BLE001
            raise Fail(f"no key recovers: {e}") from None
        address = keccak256(public.format(compressed=False)[1:])[12:]
        signer = next((k for k in attested if k["key"] == address), None)
        if signer is None:
            raise Fail(f"recovered 0x{address.hex()}, no attested model-serving part's address")
        return f"recovers to 0x{address.hex()} of {signer['scope'] or 'the node'}"

    v.run("canary_signature", scope, signature)


def dumps_form(body: bytes) -> str | None:
    """Python's json.dumps of the body's parse, when the body is the one compact way of writing
    that parse (no duplicate keys, no whitespace, numbers that read back as written)."""
    try:
        text = body.decode("utf-8")
        dup = []

        def pairs(items: list) -> dict:
            keys = [k for k, _ in items]
            if len(set(keys)) != len(keys):
                dup.append(True)
            return dict(items)

        parsed = json.loads(text, object_pairs_hook=pairs)
    except (UnicodeDecodeError, ValueError):
        return None
    if dup or json.dumps(parsed, separators=(",", ":"), ensure_ascii=False) != text:
        return None
    return json.dumps(parsed)


def judge_tls(v: Verdict, bundle: dict, parts: list, fmt: str, att: dict) -> None:
    def tls() -> str:
        spki_b64 = bundle.get("tls_peer_spki")
        if not isinstance(spki_b64, str):
            raise Fail("no tls peer key recorded")
        peer = sha256(base64.b64decode(spki_b64))
        for p in parts:
            fp = p["fields"].get("tls_cert_fingerprint")
            if not p["terminating"] and fmt != "near-direct" or p["role"] not in ("node", "gateway") or fp is None:
                continue
            if unhex(fp, "tls_cert_fingerprint") != peer:
                continue
            if not (p["state"].get("bound") and p["state"].get("dcap")):
                raise Fail(f"{p['scope']} names the peer's key but its quote does not verify and bind it")
            if p["role"] == "gateway" and isinstance(att.get("tls_certificate"), str):
                served = x509.load_pem_x509_certificate(att["tls_certificate"].encode())
                spki = served.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
                if sha256(spki) != peer:
                    raise Fail("the gateway's served tls_certificate has another key")
            return f"the peer's spki sha256 is {p['scope'] or 'the node'}'s attested fingerprint"
        raise Fail(f"the peer's spki sha256 {peer.hex()} is no terminating part's fingerprint")

    v.run("tls_key_binding", "", tls)


def judge_ohttp(v: Verdict, p: dict) -> None:
    f = p["fields"]
    o = f.get("ohttp_attestation")

    def ohttp() -> str:
        if not isinstance(o, dict):
            raise Fail("ohttp_attestation is not an object")
        if o.get("signing_algo") != "ed25519":
            raise Fail(f"signing_algo {o.get('signing_algo')!r}")
        key = unhex(o.get("signing_key"), "signing_key")
        if key != unhex(f.get("signing_address"), "signing_address") or not p["state"].get("bound"):
            raise Fail("signing_key is not the part's attested key")
        config = unhex(o.get("key_config"), "key_config")
        if f.get("ohttp_key_config") is not None and unhex(f["ohttp_key_config"], "ohttp_key_config") != config:
            raise Fail("key_config is not the part's ohttp_key_config")
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(key).verify(unhex(o.get("signature"), "signature"), config)
        except (InvalidSignature, ValueError):
            raise Fail("ed25519 signature over key_config does not verify") from None
        return "key_config signed by the attested key"

    v.run("ohttp_key_binding", p["scope"], ohttp)


def judged_time(bundle: dict) -> _dt.datetime:
    try:
        return parse_time(bundle.get("observed_at"))
    except Exception:  # noqa: BLE001
        err("observed_at", f"unreadable {bundle.get('observed_at')!r}; judging at the current time")
        return _dt.datetime.now(_dt.timezone.utc)


def load_cert(roots: dict, key: str) -> Any:
    try:
        return x509.load_pem_x509_certificate(roots[key].encode())
    except Exception as e:  # noqa: BLE001
        err(f"roots {key}", repr(e))
        return None


def load_certs(roots: dict, key: str) -> list:
    try:
        return x509.load_pem_x509_certificates(roots[key].encode())
    except Exception as e:  # noqa: BLE001
        err(f"roots {key}", repr(e))
        return []


def run(directory: str) -> dict:
    v = Verdict()
    out: dict = {"format": None, "checks": v.checks, "observed": v.observed}
    try:
        with open(os.path.join(directory, "bundle.json"), encoding="utf-8") as fh:
            bundle = json.load(fh)
        with open(os.path.join(directory, "roots.json"), encoding="utf-8") as fh:
            roots = json.load(fh)
    except Exception as e:  # noqa: BLE001
        err("input", repr(e))
        return out
    if not HAVE_CRYPTO or not isinstance(bundle, dict) or not isinstance(roots, dict):
        err("input", "no cryptography, or bundle/roots not objects")
        return out
    try:
        nonce = unhex(bundle.get("nonce"), "bundle nonce")
        if len(nonce) != 32:
            raise Fail(f"bundle nonce is {len(nonce)} bytes")
    except Fail as e:
        err("nonce", e)
        nonce = b"\xff" * 33  # matches nothing
    policy = bundle.get("policy") if isinstance(bundle.get("policy"), dict) else {}
    ctx = {
        "nonce": nonce,
        "when": judged_time(bundle),
        "collateral": bundle.get("tdx_collateral"),
        "intel_root": load_cert(roots, "intel_root_pem"),
        "nvidia_root": load_cert(roots, "nvidia_root_pem"),
        "nras_intermediates": load_certs(roots, "nras_intermediates_pem"),
        "nras_issuer": roots.get("nras_issuer"),
        "allowed_tcb": policy.get("allowed_tcb_statuses") or ["UpToDate", "SWHardeningNeeded"],
    }
    formats = policy.get("formats") or ["dstack", "near-gateway", "near-direct"]
    att = bundle.get("attestation")
    fmt = detect_format(att)
    out["format"] = fmt
    parts = parts_of(att, fmt) if fmt in ("dstack", "near-gateway", "near-direct") else []
    if not v.add("attestation_format", "", fmt in formats and bool(parts), f"{fmt}: {len(parts)} parts"):
        return out
    by_scope = {p["scope"]: p for p in parts}
    for p in parts:
        judge_part(v, p, ctx)
    for p in parts:
        if p["role"] == "compose_manager":
            judge_same_td(v, p, by_scope)

    # GPUs and NRAS, per part that runs the model.
    nras_all = bundle.get("nras")
    all_gpus: list = []
    serving = [p for p in parts if p["role"] in ("node", "model")]
    for p in serving:
        if isinstance(nras_all, list):
            nras = next((n for n in nras_all if isinstance(n, dict) and n.get("scope") == p["scope"]), None)
        else:
            nras = nras_all if len(serving) == 1 else None
        all_gpus += judge_gpus(v, p, ctx, nras)

    def unique() -> str:
        if not all_gpus:
            raise Fail("no gpu")
        seen: dict = {}
        for g in all_gpus:
            if g["error"] is not None or g["leaf"] is None:
                raise Fail(f"{g['scope']}: gpu_evidence_signature did not pass")
            for ident in (("cert", sha256(der(g["leaf"]))), ("serial", g["leaf"].serial_number)):
                if ident in seen:
                    raise Fail(f"{g['scope']} is the same device as {seen[ident]} ({ident[0]})")
                seen[ident] = g["scope"]
        return f"{len(all_gpus)} distinct gpus"

    v.run("gpu_unique", "", unique)

    for p in parts:
        if p["fields"].get("ohttp_attestation") is not None:
            judge_ohttp(v, p)
    if any(p["fields"].get("tls_cert_fingerprint") is not None for p in parts) and bundle.get("transport") != "proxied":
        judge_tls(v, bundle, parts, fmt, att)

    keys = []
    for p in parts:
        f = p["fields"]
        if p["role"] == "compose_manager" or not isinstance(f.get("signing_address"), str):
            continue
        try:
            keys.append({"scope": p["scope"], "key": unhex(f["signing_address"], "signing_address"),
                         "algo": f.get("signing_algo") or "ecdsa",
                         "bound": bool(p["state"].get("bound")), "serves": p["role"] in ("node", "model")})
        except Fail as e:
            err(p["scope"], e)
    canaries = bundle.get("canary") or []
    if not isinstance(canaries, list) or not canaries:
        # No chat: nothing shows that answers are signed with the attested key.
        for name in ("canary_fresh", "canary_hashes", "canary_signature"):
            v.add(name, "", False, "no canary chat in the bundle")
    else:
        for i, c in enumerate(canaries):
            judge_canary(v, i, c, ctx, keys)
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(json.dumps({"errors": ["usage: crosscheck.py DIR"]}))
        return 2
    try:
        out = run(sys.argv[1])
    except Exception:  # noqa: BLE001 - last resort: still print JSON
        err("internal", traceback.format_exc())
        out = {"format": None, "checks": [], "observed": []}
    out["errors"] = ERRORS
    out["notes"] = NOTES
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
