//! Rows on NVIDIA evidence and NRAS: the GPU nonce, the SPDM request, measurement record,
//! response nonce, opaque data and signature, a certificate chain of another GPU, one GPU's
//! evidence shown twice, and NRAS tokens' header, claims and signature and the JWKS that
//! publishes their key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::json;

use super::edit::*;
use super::{Base, DSTACK, ECDSA, ED25519, Row, fail, same, unknown};
use crate::common::nras_mint;

const PPCIE: Base = Base::Real("gpu-ppcie-8xh100");
const HOPPER: Base = Base::Real("gpu-nvtrust-hopper");
const SIGNATURE: &str = "gpu_evidence_signature";
const OVERALL: &str = "/nras/0/response/0/1";
const GPU0: &str = "/nras/0/response/1/GPU-0";

pub fn rows() -> Vec<Row> {
    vec![
        fail(
            "nvidia_payload: the nonce beside the evidence changed",
            ECDSA,
            |v| payload_edit(v, M0, |p| p["nonce"] = json!("00".repeat(32))),
            "gpu_nonce",
            "model:0/gpu:0",
            "nvidia_payload.nonce: expected",
        ),
        fail(
            "spdm: a bit of the request's nonce",
            ECDSA,
            |v| spdm_flip(v, M0, 0, |s| s.request_nonce),
            "gpu_nonce",
            "model:0/gpu:0",
            "spdm request nonce: expected",
        ),
        fail(
            "spdm: a bit of the request's nonce",
            DSTACK,
            |v| spdm_flip(v, TOP, 0, |s| s.request_nonce + 31),
            "gpu_nonce",
            "gpu:0",
            "spdm request nonce: expected",
        ),
        fail(
            "spdm: a bit of a measurement block",
            ECDSA,
            |v| spdm_flip(v, M0, 0, |s| s.record + 20),
            SIGNATURE,
            "model:0/gpu:0",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "spdm: a bit of the response's nonce",
            ECDSA,
            |v| spdm_flip(v, M0, 0, |s| s.response_nonce),
            SIGNATURE,
            "model:0/gpu:0",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "spdm: a bit of the opaque data",
            ECDSA,
            |v| spdm_flip(v, M0, 0, |s| s.opaque + s.opaque_len / 2),
            SIGNATURE,
            "model:0/gpu:0",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "spdm: a bit of the opaque data",
            HOPPER,
            |v| spdm_flip(v, TOP, 0, |s| s.opaque + s.opaque_len - 1),
            SIGNATURE,
            "gpu:0",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "spdm: a bit of the signature",
            ECDSA,
            |v| spdm_flip(v, M0, 0, |s| s.signature + 40),
            SIGNATURE,
            "model:0/gpu:0",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "spdm: a bit of a measurement block",
            PPCIE,
            |v| spdm_flip(v, TOP, 3, |s| s.record + 100),
            SIGNATURE,
            "gpu:3",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "gpu certificate chain: another genuine gpu's chain (gpu 1's given to gpu 0)",
            PPCIE,
            |v| {
                payload_edit(v, TOP, |p| {
                    p["evidence_list"][0]["certificate"] =
                        p["evidence_list"][1]["certificate"].clone();
                })
            },
            SIGNATURE,
            "gpu:0",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "gpu certificate chain: model 1's gpu chain given to model 0's gpu",
            ED25519,
            |v| {
                let other =
                    json_of(v, &format!("{M1}/nvidia_payload"))["evidence_list"][0]["certificate"]
                        .clone();
                payload_edit(v, M0, |p| p["evidence_list"][0]["certificate"] = other);
            },
            SIGNATURE,
            "model:0/gpu:0",
            "evidence signature does not verify with the leaf key",
        ),
        fail(
            "one gpu's evidence copied into another part (model 0's payload and nras answer for model 1)",
            ED25519,
            |v| {
                let payload = get(v, &format!("{M0}/nvidia_payload"));
                set(v, &format!("{M1}/nvidia_payload"), payload);
                let nras = get(v, "/nras/0/response");
                set(v, "/nras/1/response", nras);
            },
            "gpu_unique",
            "",
            "is the same device as",
        ),
        fail(
            "one gpu's evidence listed twice in one part (gpu 0's as gpu 1)",
            PPCIE,
            |v| {
                payload_edit(v, TOP, |p| {
                    p["evidence_list"][1] = p["evidence_list"][0].clone();
                })
            },
            "gpu_unique",
            "",
            "is the same device as",
        ),
        // ---- NRAS ---------------------------------------------------------------------------
        fail(
            "nras overall token header: alg ES384 made none",
            ECDSA,
            |v| jwt_json(v, OVERALL, 0, |h| h["alg"] = json!("none")),
            "nras_token",
            "model:0",
            "expected alg \"ES384\", found \"none\"",
        ),
        fail(
            "nras overall token header: kid changed",
            ECDSA,
            |v| jwt_json(v, OVERALL, 0, |h| h["kid"] = json!("another-kid")),
            "nras_token",
            "model:0",
            "found no key with it",
        ),
        fail(
            "nras overall token claims: eat_nonce changed, signature kept",
            ECDSA,
            |v| jwt_json(v, OVERALL, 1, |c| c["eat_nonce"] = json!("00".repeat(32))),
            "nras_token",
            "model:0",
            "found one that does not verify",
        ),
        fail(
            "nras overall token: a bit of the signature",
            ECDSA,
            |v| jwt_edit(v, OVERALL, 2, |s| s[10] ^= 0x01),
            "nras_token",
            "model:0",
            "found one that does not verify",
        ),
        fail(
            "nras gpu token claims: driver version changed, signature kept",
            ED25519,
            |v| {
                jwt_json(v, GPU0, 1, |c| {
                    c["x-nvidia-gpu-driver-version"] = json!("999.0");
                })
            },
            "nras_token",
            "model:0",
            "token GPU-0: expected an es384 signature",
        ),
        fail(
            "nras gpu token: a bit of the signature",
            ECDSA,
            |v| jwt_edit(v, GPU0, 2, |s| s[5] ^= 0x01),
            "nras_token",
            "model:0",
            "token GPU-0: expected an es384 signature",
        ),
        fail(
            "jwks substituted: a genuine-looking key set of another pki under the same kid",
            ECDSA,
            |v| {
                let kid = get(v, "/nras/0/jwks/keys/0/kid");
                let jwks = nras_mint::test_jwks(kid.as_str().unwrap(), "leaf1");
                set(v, "/nras/0/jwks", jwks);
            },
            "nras_token",
            "model:0",
            "which is not pinned",
        ),
        fail(
            "jwks: the key's x and y replaced, its x5c chain kept",
            DSTACK,
            |v| {
                let point = nras_mint::cert_point(&nras_mint::pki("leaf1.der"));
                set(
                    v,
                    "/nras/jwks/keys/0/x",
                    json!(nras_mint::b64u(&point[1..49])),
                );
                set(
                    v,
                    "/nras/jwks/keys/0/y",
                    json!(nras_mint::b64u(&point[49..97])),
                );
            },
            "nras_token",
            "",
            "expected x and y to equal the x5c leaf's public key",
        ),
        fail(
            "nras answer of another part's gpu (model 1's for model 0)",
            ED25519,
            |v| {
                let other = get(v, "/nras/1/response");
                set(v, "/nras/0/response", other);
            },
            "nras_token",
            "model:0",
            "expected its ueid to be a gpu of the evidence",
        ),
        unknown(
            "nvidia_payload: the evidence list emptied",
            ECDSA,
            |v| payload_edit(v, M0, |p| p["evidence_list"] = json!([])),
            "gpu_unique",
            "",
            "model:0 has no readable gpu evidence (nvidia_payload.evidence_list is empty)",
            "gpu_evidence_signature [model:0] fails the empty list; whether the part's gpus are distinct cannot be judged",
        ),
        fail(
            "gpu certificate chain: the intermediates dropped, the leaf kept",
            ECDSA,
            |v| {
                payload_edit(v, M0, |p| {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let at = &mut p["evidence_list"][0]["certificate"];
                    let pem = String::from_utf8(b64.decode(at.as_str().unwrap()).unwrap()).unwrap();
                    let end = "-----END CERTIFICATE-----";
                    let leaf = &pem[..pem.find(end).unwrap() + end.len()];
                    *at = json!(b64.encode(format!("{leaf}\n")));
                })
            },
            SIGNATURE,
            "model:0/gpu:0",
            "expected at least 2: the device leaf and the certificates up to the nvidia device identity root",
        ),
        same(
            "nvidia_payload: arch HOPPER made BLACKWELL",
            ECDSA,
            |v| {
                payload_edit(v, M0, |p| {
                    p["arch"] = json!("BLACKWELL");
                    p["evidence_list"][0]["arch"] = json!("BLACKWELL");
                })
            },
            SIGNATURE,
            "model:0/gpu:0",
            "reaches the pinned nvidia device identity root",
            "a claim: the device is known by its certificate chain and signed evidence, whatever the payload calls it",
        ),
        fail(
            "nras answer: the gpu's token dropped",
            ECDSA,
            |v| set(v, "/nras/0/response/1", json!({})),
            "nras_token",
            "model:0",
            "submod GPU-0: expected a token for it in the response, found none",
        ),
    ]
}
