//! What the tokens say, once their signatures hold. Steps 5 to 7 of `verify_token` check issuer,
//! validity window and nonce, that the overall token's `submods` digests vouch for exactly the
//! GPU tokens sent, and which GPU of the evidence each token speaks for; `judge_result` and
//! `judge_gpu_claims` then read NRAS's verdict from the claims, naming every claim that is not
//! as required. Only claims versions this release knows can pass: each requires its
//! certificate-chain and OCSP claims, and a token of another version, or of none, is `unknown`
//! however good its core claims look.

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::verdict::Outcome;

use super::jws::Jws;
use super::{
    FUTURE_SKEW_SECONDS, GpuRef, MatchRule, MatchedGpu, NrasError, OVERALL, VerifiedNras, describe,
    time_text,
};

/// The per-GPU claims that must be present and true for a GPU to pass.
const REQUIRED_TRUE: [&str; 5] = [
    "secboot",
    "x-nvidia-gpu-arch-check",
    "x-nvidia-gpu-attestation-report-parsed",
    "x-nvidia-gpu-attestation-report-nonce-match",
    "x-nvidia-gpu-attestation-report-signature-verified",
];

/// The per-GPU claims that must be present with exactly this string value.
const REQUIRED_STRING: [(&str, &str); 2] = [("measres", "success"), ("dbgstat", "disabled")];

/// Per-GPU boolean claims that are judged wherever they appear: each must be true when present.
/// Which of them a token must carry depends on its claims version (`KNOWN_VERSIONS`).
const OPTIONAL_TRUE: [&str; 15] = [
    "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
    "x-nvidia-gpu-attestation-report-cert-chain-validated",
    "x-nvidia-gpu-driver-rim-fetched",
    "x-nvidia-gpu-driver-rim-schema-validated",
    "x-nvidia-gpu-driver-rim-signature-verified",
    "x-nvidia-gpu-driver-rim-version-match",
    "x-nvidia-gpu-driver-rim-measurements-available",
    "x-nvidia-gpu-driver-rim-cert-validated",
    "x-nvidia-gpu-vbios-rim-fetched",
    "x-nvidia-gpu-vbios-rim-schema-validated",
    "x-nvidia-gpu-vbios-rim-signature-verified",
    "x-nvidia-gpu-vbios-rim-version-match",
    "x-nvidia-gpu-vbios-rim-measurements-available",
    "x-nvidia-gpu-vbios-rim-cert-validated",
    "x-nvidia-gpu-vbios-index-no-conflict",
];

/// Certificate-chain objects; each present one must say `valid` and OCSP `good`.
const CERT_CHAIN_CLAIMS: [&str; 3] = [
    "x-nvidia-gpu-attestation-report-cert-chain",
    "x-nvidia-gpu-driver-rim-cert-chain",
    "x-nvidia-gpu-vbios-rim-cert-chain",
];

/// A claims version this release understands, and the per-GPU claims a token of it always
/// carries: the certificate-chain and OCSP verdicts, the RIM signatures and, from 3.0, the FWID
/// match. A token that lacks one of them has dropped a check, which must not pass for "not
/// present".
struct ClaimsVersion {
    name: &'static str,
    required: &'static [&'static str],
}

/// Every claims version this release judges, as seen in NRAS's real answers (`tests/vectors/`:
/// the private-ml-sdk responses are 2.0, the attestation-sdk and nvtrust granular sets 3.0).
/// Version 2.0 reports each certificate chain, its OCSP status included, as one
/// `…-cert-validated` boolean; version 3.0 as an object whose status and OCSP status are judged
/// in `judge_gpu_claims`. A version not listed here is not understood: its claims may mean
/// something else, or carry the revocation verdicts under names this release does not read.
const KNOWN_VERSIONS: [ClaimsVersion; 2] = [
    ClaimsVersion {
        name: "2.0",
        required: &[
            "x-nvidia-gpu-attestation-report-cert-chain-validated",
            "x-nvidia-gpu-driver-rim-cert-validated",
            "x-nvidia-gpu-vbios-rim-cert-validated",
            "x-nvidia-gpu-driver-rim-signature-verified",
            "x-nvidia-gpu-vbios-rim-signature-verified",
        ],
    },
    ClaimsVersion {
        name: "3.0",
        required: &[
            "x-nvidia-gpu-attestation-report-cert-chain",
            "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
            "x-nvidia-gpu-driver-rim-cert-chain",
            "x-nvidia-gpu-vbios-rim-cert-chain",
            "x-nvidia-gpu-driver-rim-signature-verified",
            "x-nvidia-gpu-vbios-rim-signature-verified",
        ],
    },
];

/// The overall token's claims version, or why it is not one this release understands.
fn claims_version(overall: &Map<String, Value>) -> Result<&'static ClaimsVersion, String> {
    let known = || {
        KNOWN_VERSIONS
            .iter()
            .map(|v| v.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match overall.get(CLAIMS_VERSION) {
        None => Err(format!(
            "the overall token carries no {CLAIMS_VERSION}: claims version not understood \
             (expected one of [{}])",
            known()
        )),
        Some(Value::String(name)) => {
            KNOWN_VERSIONS
                .iter()
                .find(|v| v.name == name)
                .ok_or_else(|| {
                    format!(
                        "claims version {} not understood ({CLAIMS_VERSION}: expected one of [{}])",
                        describe(Some(&Value::String(name.clone()))).trim_matches('"'),
                        known()
                    )
                })
        }
        Some(other) => Err(format!(
            "{CLAIMS_VERSION}: expected a version string, found {}: claims version not understood",
            describe(Some(other))
        )),
    }
}

/// The overall claim that names the claims version.
const CLAIMS_VERSION: &str = "x-nvidia-ver";

/// The claim NRAS puts its error explanation in.
const ERROR_DETAILS: &str = "x-nvidia-error-details";

/// The claim NRAS puts non-fatal remarks in, such as a RIM signer certificate on hold.
const WARNING: &str = "x-nvidia-attestation-warning";

/// NRAS's verdict for each GPU, by evidence index: `Pass` when the overall result and all of
/// that GPU's claims say it is genuine and in a trusted state, `Fail` naming every claim that
/// does not (with NRAS's own error details quoted), and `Unknown` when the claims version is
/// not one this release understands and no claim it can read says no.
pub fn judge_result(verified: &VerifiedNras) -> Vec<(usize, Outcome)> {
    let mut overall_problems = Vec::new();
    let overall_result = verified.overall.get("x-nvidia-overall-att-result");
    if overall_result != Some(&Value::Bool(true)) {
        overall_problems.push(format!(
            "x-nvidia-overall-att-result: expected true, found {}",
            describe(overall_result)
        ));
    }
    // NRAS's own explanation is quoted whole with a failure; it never decides one by itself.
    let details = |claims: &Map<String, Value>, prefix: &str| {
        claims
            .get(ERROR_DETAILS)
            .filter(|d| !d.is_null())
            .map(|d| format!("{prefix}{ERROR_DETAILS}: {d}"))
    };
    let overall_details = details(&verified.overall, "overall ");
    let version = claims_version(&verified.overall);

    let mut results: Vec<(usize, Outcome)> = verified
        .gpus
        .iter()
        .map(|gpu| {
            let (judged, mut problems) = judge_gpu_claims(&gpu.claims);
            if let Ok(version) = &version {
                for claim in version.required {
                    if !gpu.claims.contains_key(*claim) {
                        problems.push(format!(
                            "{claim}: required by claims version {}, found none",
                            version.name
                        ));
                    }
                }
            }
            let mut all = overall_problems.clone();
            all.append(&mut problems);
            let outcome = match (all.is_empty(), &version) {
                (true, Ok(version)) => Outcome::Pass(pass_reason(gpu, judged, version.name)),
                // The core claims alone never pass: in a version this release does not know,
                // the certificate and revocation verdicts may be missing or named otherwise.
                (true, Err(why)) => Outcome::Unknown(format!(
                    "nras's claims for {} cannot be judged: {why}",
                    gpu.submod
                )),
                (false, version) => {
                    // A claim that says no is a rejection in any version; an unknown version is
                    // named so that the reader knows the list may be incomplete.
                    if let Err(why) = version {
                        all.push(why.clone());
                    }
                    all.extend(overall_details.clone());
                    all.extend(details(&gpu.claims, ""));
                    Outcome::Fail(format!("nras rejects {}: {}", gpu.submod, all.join("; ")))
                }
            };
            (gpu.evidence_index, outcome)
        })
        .collect();
    results.sort_by_key(|(index, _)| *index);
    results
}

/// Judges one GPU's claims: how many claims were judged, and one line per failing claim.
pub fn judge_gpu_claims(claims: &Map<String, Value>) -> (usize, Vec<String>) {
    let mut judged = 0;
    let mut problems = Vec::new();
    for (claim, expected) in REQUIRED_STRING {
        judged += 1;
        let found = claims.get(claim);
        if found.and_then(Value::as_str) != Some(expected) {
            problems.push(format!(
                "{claim}: expected \"{expected}\", found {}",
                describe(found)
            ));
        }
    }
    for claim in REQUIRED_TRUE {
        judged += 1;
        let found = claims.get(claim);
        if found != Some(&Value::Bool(true)) {
            problems.push(format!("{claim}: expected true, found {}", describe(found)));
        }
    }
    for claim in OPTIONAL_TRUE {
        if let Some(found) = claims.get(claim) {
            judged += 1;
            if found != &Value::Bool(true) {
                problems.push(format!(
                    "{claim}: expected true, found {}",
                    describe(Some(found))
                ));
            }
        }
    }
    for claim in CERT_CHAIN_CLAIMS {
        let Some(found) = claims.get(claim) else {
            continue;
        };
        judged += 1;
        let Some(chain) = found.as_object() else {
            problems.push(format!(
                "{claim}: expected an object, found {}",
                describe(Some(found))
            ));
            continue;
        };
        for (field, expected) in [
            ("x-nvidia-cert-status", "valid"),
            ("x-nvidia-cert-ocsp-status", "good"),
        ] {
            let value = chain.get(field);
            if value.and_then(Value::as_str) != Some(expected) {
                problems.push(format!(
                    "{claim}.{field}: expected \"{expected}\", found {}",
                    describe(value)
                ));
            }
        }
    }
    (judged, problems)
}

/// The pass reason: what was judged, the software versions NRAS saw and any warning it gave.
fn pass_reason(gpu: &MatchedGpu, judged: usize, version: &str) -> String {
    let text = |claim: &str| {
        gpu.claims
            .get(claim)
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string()
    };
    let mut reason = format!(
        "nras attests {}: overall result true and all {judged} judged claims as expected \
         (claims version {version}, driver {}, vbios {})",
        gpu.submod,
        text("x-nvidia-gpu-driver-version"),
        text("x-nvidia-gpu-vbios-version"),
    );
    if let Some(warning) = gpu.claims.get(WARNING) {
        if !warning.is_null() {
            reason.push_str(&format!("; warning: {warning}"));
        }
    }
    reason
}

/// Step 5: issuer, validity window and nonce. `required` makes absent claims failures (the
/// overall token); otherwise only the claims present are checked (GPU tokens).
pub(super) fn check_time_and_identity(
    token: &Jws,
    expected_iss: &str,
    nonce_hex: &str,
    now: i64,
    required: bool,
) -> Result<(), NrasError> {
    let label = || token.label.clone();
    let get = |claim: &'static str| -> Result<Option<&Value>, NrasError> {
        match token.claims.get(claim) {
            None if required => Err(NrasError::MissingClaim {
                token: label(),
                claim,
            }),
            found => Ok(found),
        }
    };
    let string = |claim: &'static str| -> Result<Option<&str>, NrasError> {
        match get(claim)? {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(other) => Err(NrasError::ClaimType {
                token: label(),
                claim,
                expected: "a string",
                found: describe(Some(other)),
            }),
        }
    };
    let seconds = |claim: &'static str| -> Result<Option<i64>, NrasError> {
        match get(claim)? {
            None => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| NrasError::ClaimType {
                    token: label(),
                    claim,
                    expected: "an integer number of unix seconds",
                    found: describe(Some(value)),
                }),
        }
    };

    if let Some(iss) = string("iss")? {
        if iss != expected_iss {
            return Err(NrasError::IssuerMismatch {
                token: label(),
                expected: expected_iss.to_string(),
                found: iss.to_string(),
            });
        }
    }
    if let Some(exp) = seconds("exp")? {
        if exp < now {
            return Err(NrasError::Expired {
                token: label(),
                exp: time_text(exp),
                now: time_text(now),
            });
        }
    }
    let latest = now.saturating_add(FUTURE_SKEW_SECONDS);
    for claim in ["nbf", "iat"] {
        if let Some(value) = seconds(claim)? {
            if value > latest {
                return Err(NrasError::NotYetValid {
                    token: label(),
                    claim,
                    latest: time_text(latest),
                    found: time_text(value),
                });
            }
        }
    }
    if let Some(found) = string("eat_nonce")? {
        if !found.eq_ignore_ascii_case(nonce_hex) {
            return Err(NrasError::NonceMismatch {
                token: label(),
                expected: nonce_hex.to_string(),
                found: found.to_string(),
            });
        }
    }
    Ok(())
}

/// Step 6: every submod has a token with the listed digest, every token a submod, and there is
/// one token per GPU of the evidence.
pub(super) fn check_submods(
    overall: &Jws,
    tokens: &[Jws],
    gpu_count: usize,
) -> Result<(), NrasError> {
    let submods = match overall.claims.get("submods") {
        None => {
            return Err(NrasError::MissingClaim {
                token: OVERALL.to_string(),
                claim: "submods",
            });
        }
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(NrasError::ClaimType {
                token: OVERALL.to_string(),
                claim: "submods",
                expected: "an object",
                found: describe(Some(other)),
            });
        }
    };
    for (submod, entry) in submods {
        let malformed = || NrasError::SubmodMalformed {
            submod: submod.clone(),
            found: describe(Some(entry)),
        };
        let (algorithm, listed) = match entry.as_array().map(Vec::as_slice) {
            Some([Value::String(tag), Value::Array(digest)]) if tag == "DIGEST" => {
                match digest.as_slice() {
                    [Value::String(algorithm), Value::String(listed)] => (algorithm, listed),
                    _ => return Err(malformed()),
                }
            }
            _ => return Err(malformed()),
        };
        if algorithm != "SHA-256" {
            return Err(NrasError::SubmodDigestAlgorithm {
                submod: submod.clone(),
                found: describe(Some(&Value::String(algorithm.clone()))),
            });
        }
        let Some(token) = tokens.iter().find(|t| &t.label == submod) else {
            return Err(NrasError::SubmodWithoutToken {
                submod: submod.clone(),
            });
        };
        let computed = hex::encode(Sha256::digest(token.compact.as_bytes()));
        if !listed.eq_ignore_ascii_case(&computed) {
            return Err(NrasError::SubmodDigestMismatch {
                submod: submod.clone(),
                expected: listed.to_ascii_lowercase(),
                found: computed,
            });
        }
    }
    if let Some(token) = tokens.iter().find(|t| !submods.contains_key(&t.label)) {
        return Err(NrasError::TokenWithoutSubmod {
            submod: token.label.clone(),
        });
    }
    if tokens.len() != gpu_count {
        return Err(NrasError::GpuCountMismatch {
            expected: gpu_count,
            found: tokens.len(),
        });
    }
    Ok(())
}

/// Step 7: the evidence index of each token, in token order, and the rule that found it.
pub(super) fn match_gpus(
    tokens: &[Jws],
    gpus: &[GpuRef],
) -> Result<(Vec<usize>, MatchRule), NrasError> {
    let mut token_ueids = Vec::with_capacity(tokens.len());
    for token in tokens {
        match token.claims.get("ueid") {
            None => token_ueids.push(None),
            Some(Value::String(ueid)) => token_ueids.push(Some(ueid.as_str())),
            Some(other) => {
                return Err(NrasError::ClaimType {
                    token: token.label.clone(),
                    claim: "ueid",
                    expected: "a decimal string",
                    found: describe(Some(other)),
                });
            }
        }
    }
    check_unique(token_ueids.iter().flatten().copied(), "gpu tokens")?;
    check_unique(gpus.iter().filter_map(|g| g.ueid.as_deref()), "evidence")?;

    // The serial number names a GPU whatever order NRAS lists it in, so it is preferred; it
    // needs every token and every GPU to carry one.
    let every_token_ueid: Option<Vec<&str>> = token_ueids.iter().copied().collect();
    let every_gpu_ueid = !gpus.is_empty() && gpus.iter().all(|g| g.ueid.is_some());
    if let (Some(ueids), true) = (every_token_ueid, every_gpu_ueid) {
        let mut assignment = Vec::with_capacity(tokens.len());
        for (token, ueid) in tokens.iter().zip(ueids) {
            let Some(gpu) = gpus.iter().find(|g| g.ueid.as_deref() == Some(ueid)) else {
                return Err(NrasError::UnknownUeid {
                    submod: token.label.clone(),
                    ueid: ueid.to_string(),
                });
            };
            assignment.push(gpu.index);
        }
        return Ok((assignment, MatchRule::Ueid));
    }

    // By order, the names must be exactly GPU-0 … GPU-(n-1), so position k in the evidence is
    // the token named GPU-k; a gap or a foreign name would make the pairing a guess.
    let numbers: Option<Vec<usize>> = tokens.iter().map(|t| submod_number(&t.label)).collect();
    let sequential = numbers.as_ref().is_some_and(|numbers| {
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        sorted.into_iter().eq(0..tokens.len())
    });
    let (Some(numbers), true) = (numbers, sequential) else {
        let mut names: Vec<&str> = tokens.iter().map(|t| t.label.as_str()).collect();
        names.sort_unstable();
        return Err(NrasError::SubmodNumbering {
            last: tokens.len().saturating_sub(1).to_string(),
            found: names.join(", "),
        });
    };
    let mut assignment = Vec::with_capacity(tokens.len());
    for ((token, position), ueid) in tokens.iter().zip(numbers).zip(&token_ueids) {
        let Some(gpu) = gpus.get(position) else {
            // Step 6 made the counts equal, so every position names a GPU.
            return Err(NrasError::GpuCountMismatch {
                expected: gpus.len(),
                found: tokens.len(),
            });
        };
        // Where both sides know the serial, order must not pair two different GPUs.
        if let (Some(ueid), Some(evidence_ueid)) = (ueid, gpu.ueid.as_deref()) {
            if *ueid != evidence_ueid {
                return Err(NrasError::UeidOrderConflict {
                    submod: token.label.clone(),
                    ueid: (*ueid).to_string(),
                    evidence_index: gpu.index,
                    evidence_ueid: evidence_ueid.to_string(),
                });
            }
        }
        assignment.push(gpu.index);
    }
    Ok((assignment, MatchRule::Order))
}

/// `n` for a submod named `GPU-n` in plain decimal without leading zeros.
fn submod_number(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("GPU-")?;
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if plain { digits.parse().ok() } else { None }
}

/// Fails on the first ueid that occurs twice.
fn check_unique<'a>(
    ueids: impl Iterator<Item = &'a str>,
    side: &'static str,
) -> Result<(), NrasError> {
    let mut seen: Vec<&str> = Vec::new();
    for ueid in ueids {
        if seen.contains(&ueid) {
            return Err(NrasError::DuplicateUeid {
                ueid: ueid.to_string(),
                side,
            });
        }
        seen.push(ueid);
    }
    Ok(())
}
