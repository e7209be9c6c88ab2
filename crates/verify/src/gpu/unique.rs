//! `gpu_unique`: no GPU is shown twice in one answer.
//!
//! Every part of a report is asked with the same nonce, and nothing in a GPU's evidence names the
//! TD it is attached to, so one set of GPUs could be shown for several parts: evidence (and the
//! NRAS answer for it) copied from `model:0` into `model:1` passes every per-part GPU check. This
//! check compares the GPUs of all parts that run the model, and of each part with itself, by the
//! device certificate each presents: the same leaf certificate (by SHA-256 of its DER) or the
//! same leaf serial number (NRAS's `ueid`) twice is the same device twice. It is judged once per
//! verdict, after every part was verified, from the parts' `nvidia_payload` and the
//! `gpu_evidence_signature` checks already recorded; it is pure and does no I/O.
//!
//! What it cannot prove is that each GPU is attached to the TD of its part (see
//! `docs/security.md`): distinct devices is all the evidence can show.

use super::certs::{self, LeafIdentity};
use super::part::{gpu_scope, read_part_payload};
use crate::checks::GPU_EVIDENCE_SIGNATURE;
use crate::report::Part;
use crate::verdict::{Check, Outcome, State};

/// One GPU whose leaf certificate could be read.
struct SeenGpu<'a> {
    part: &'a str,
    index: usize,
    leaf: LeafIdentity,
}

/// Judges `gpu_unique` over the parts of one answer, with the checks recorded so far.
pub fn judge(parts: &[Part<'_>], checks: &[Check]) -> Outcome {
    let model_parts: Vec<&Part<'_>> = parts.iter().filter(|p| p.role.serves_inference()).collect();
    if model_parts.is_empty() {
        return Outcome::Unknown(
            "no attested part runs the model, so there is no gpu evidence to compare".into(),
        );
    }

    let mut seen: Vec<SeenGpu<'_>> = Vec::new();
    // Why some GPU cannot be told apart from the others; any of these keeps a pass away.
    let mut undecided: Vec<String> = Vec::new();
    for part in &model_parts {
        let gpus = match read_part_payload(part.fields.get("nvidia_payload")) {
            Ok((_, gpus)) => gpus,
            Err(reason) => {
                undecided.push(format!(
                    "{} has no readable gpu evidence ({reason})",
                    part_name(&part.scope)
                ));
                continue;
            }
        };
        for (index, gpu) in gpus.iter().enumerate() {
            let name = gpu_name(&part.scope, index);
            let leaf = match &gpu.chain_pem {
                Ok(pem) => certs::leaf_identity(pem).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            match leaf {
                Ok(leaf) => {
                    // A certificate is the device's only once the device key signed with it;
                    // until then it can still show a duplicate, but not a distinct device.
                    if !signature_passed(checks, &gpu_scope(&part.scope, index)) {
                        undecided.push(format!(
                            "{name}: {GPU_EVIDENCE_SIGNATURE} did not pass, so its certificate is not proven to be its device's"
                        ));
                    }
                    seen.push(SeenGpu {
                        part: &part.scope,
                        index,
                        leaf,
                    });
                }
                Err(reason) => {
                    undecided.push(format!("{name}: no readable device certificate ({reason})"));
                }
            }
        }
    }

    let duplicates = duplicates(&seen);
    if !duplicates.is_empty() {
        return Outcome::Fail(duplicates.join("; "));
    }
    if !undecided.is_empty() {
        return Outcome::Unknown(undecided.join("; "));
    }
    Outcome::Pass(format!(
        "{} across {}, each a distinct device (leaf certificate and serial)",
        counted(seen.len(), "gpu"),
        counted(model_parts.len(), "part"),
    ))
}

/// One line per GPU that presents the device of an earlier one, naming the first occurrence and
/// what they share.
fn duplicates(seen: &[SeenGpu<'_>]) -> Vec<String> {
    let mut found = Vec::new();
    for (later_at, later) in seen.iter().enumerate() {
        let earlier = seen.iter().take(later_at).find_map(|earlier| {
            if earlier.leaf.sha256 == later.leaf.sha256 {
                Some((
                    earlier,
                    format!("certificate sha256 {}", hex::encode(later.leaf.sha256)),
                ))
            } else if earlier.leaf.ueid == later.leaf.ueid {
                Some((earlier, format!("ueid {}", later.leaf.ueid)))
            } else {
                None
            }
        });
        if let Some((earlier, shared)) = earlier {
            found.push(format!(
                "{} is the same device as {} ({shared})",
                gpu_name(later.part, later.index),
                gpu_name(earlier.part, earlier.index),
            ));
        }
    }
    found
}

/// Whether `gpu_evidence_signature` passed for this GPU scope.
fn signature_passed(checks: &[Check], scope: &str) -> bool {
    checks
        .iter()
        .any(|c| c.name == GPU_EVIDENCE_SIGNATURE && c.scope == scope && c.state == State::Pass)
}

/// `gpu 1 of model:0`, or `gpu 1` for the single part of a dstack report.
fn gpu_name(part: &str, index: usize) -> String {
    if part.is_empty() {
        format!("gpu {index}")
    } else {
        format!("gpu {index} of {part}")
    }
}

/// A part's scope for a message; the single part of a dstack report has the empty scope.
fn part_name(part: &str) -> String {
    if part.is_empty() {
        "the report".to_string()
    } else {
        part.to_string()
    }
}

/// `1 gpu`, `8 gpus`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(part: &'static str, index: usize, cert: u8, ueid: &str) -> SeenGpu<'static> {
        SeenGpu {
            part,
            index,
            leaf: LeafIdentity {
                sha256: [cert; 32],
                ueid: ueid.to_string(),
            },
        }
    }

    #[test]
    fn distinct_certificates_and_serials_are_distinct_devices() {
        let seen = [gpu("model:0", 0, 1, "11"), gpu("model:1", 0, 2, "22")];
        assert!(duplicates(&seen).is_empty());
    }

    #[test]
    fn another_certificate_with_the_same_serial_is_the_same_device() {
        // A leaf certificate issued again keeps the device's serial (NRAS's ueid).
        let seen = [gpu("model:0", 0, 1, "11"), gpu("model:1", 0, 2, "11")];
        assert_eq!(
            duplicates(&seen),
            ["gpu 0 of model:1 is the same device as gpu 0 of model:0 (ueid 11)"]
        );
    }

    #[test]
    fn each_repeat_names_the_first_occurrence_once() {
        let seen = [
            gpu("", 0, 7, "70"),
            gpu("", 1, 8, "80"),
            gpu("", 2, 7, "70"),
            gpu("", 3, 7, "70"),
        ];
        let sha = hex::encode([7u8; 32]);
        assert_eq!(
            duplicates(&seen),
            [
                format!("gpu 2 is the same device as gpu 0 (certificate sha256 {sha})"),
                format!("gpu 3 is the same device as gpu 0 (certificate sha256 {sha})"),
            ]
        );
    }

    #[test]
    fn counts_read_in_the_singular_and_plural() {
        assert_eq!(counted(1, "gpu"), "1 gpu");
        assert_eq!(counted(8, "gpu"), "8 gpus");
    }
}
