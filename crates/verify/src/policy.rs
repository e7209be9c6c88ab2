//! What a target is held to: the accepted TCB statuses and the pinned measurements, plus the trust
//! anchors the verifier starts from.
//!
//! A policy can travel inside a bundle as a snapshot so that a stored bundle re-verifies the same
//! way without the configuration. Trust anchors never travel with evidence: they come only from
//! the binary or the verifier's own configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::known::KnownUse;

/// A verdict's `policy_source` when `teewatch verify` judged with the policy stored in the bundle.
pub const POLICY_FROM_BUNDLE: &str = "from the bundle, chosen by whoever made it, not by your configuration (judge with yours: --config FILE)";

/// A verdict's `policy_source` when the bundle carried no policy and no configuration was given.
pub const POLICY_DEFAULT: &str =
    "the default (the bundle carries none): nothing pinned (judge with yours: --config FILE)";

/// TCB statuses accepted when a policy does not say otherwise.
pub const DEFAULT_ALLOWED_TCB_STATUSES: [&str; 2] = ["UpToDate", "SWHardeningNeeded"];

/// Every TCB status dcap-qvl can report, so a typo in a policy is caught when it is loaded.
pub const KNOWN_TCB_STATUSES: [&str; 9] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
    "Revoked",
];

/// How the values of a pinnable field are written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// Raw bytes of this length, written as hex (case-insensitive, `0x` optional).
    Hex(usize),
    /// A signing address: 20 bytes (ECDSA) or a 32-byte ed25519 public key, as hex.
    Address,
    /// A name or version string, compared exactly.
    Text,
}

/// Whether a pinned field is read from the TDX side or from GPU evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinSide {
    Tdx,
    Gpu,
}

/// A field that can be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinField {
    pub name: &'static str,
    pub kind: PinKind,
    pub side: PinSide,
}

const fn tdx(name: &'static str, kind: PinKind) -> PinField {
    PinField {
        name,
        kind,
        side: PinSide::Tdx,
    }
}

const fn gpu(name: &'static str, kind: PinKind) -> PinField {
    PinField {
        name,
        kind,
        side: PinSide::Gpu,
    }
}

/// Every pinnable field except the per-block GPU pins `gpu_block_<n>`.
pub const PIN_FIELDS: [PinField; 26] = [
    tdx("mrtd", PinKind::Hex(48)),
    tdx("rtmr0", PinKind::Hex(48)),
    tdx("rtmr1", PinKind::Hex(48)),
    tdx("rtmr2", PinKind::Hex(48)),
    tdx("rtmr3", PinKind::Hex(48)),
    tdx("mrseam", PinKind::Hex(48)),
    tdx("mrsignerseam", PinKind::Hex(48)),
    tdx("mrconfigid", PinKind::Hex(48)),
    tdx("td_attributes", PinKind::Hex(8)),
    tdx("xfam", PinKind::Hex(8)),
    tdx("compose_hash", PinKind::Hex(32)),
    tdx("app_id", PinKind::Hex(20)),
    tdx("instance_id", PinKind::Hex(20)),
    tdx("os_image_hash", PinKind::Hex(32)),
    tdx("key_provider", PinKind::Text),
    tdx("signing_address", PinKind::Address),
    tdx("deployed_compose_sha256", PinKind::Hex(32)),
    tdx("deployed_compose_file", PinKind::Text),
    tdx("deployed_tag", PinKind::Text),
    tdx("deployed_commit", PinKind::Text),
    tdx("intel_mrenclave", PinKind::Hex(32)),
    tdx("intel_mrsigner", PinKind::Hex(32)),
    gpu("nvidia_mrenclave", PinKind::Hex(32)),
    gpu("nvidia_mrsigner", PinKind::Hex(32)),
    gpu("gpu_driver_version", PinKind::Text),
    gpu("gpu_vbios_version", PinKind::Text),
];

/// Whether a field is read from a NEAR compose manager's action log (judged on the compose
/// manager's part, not on the model node's).
pub fn is_deployed_field(field: &str) -> bool {
    field.starts_with("deployed_")
}

/// Looks up a pinnable field by name, including `gpu_block_<n>` for n in 1..=254 (SPDM block indices).
pub fn pin_field(name: &str) -> Option<PinField> {
    if let Some(found) = PIN_FIELDS.iter().find(|f| f.name == name) {
        return Some(*found);
    }
    let index = name.strip_prefix("gpu_block_")?;
    let valid = !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && !index.starts_with('0')
        // SPDM reserves index 0 and 0xFF (which asks for all blocks).
        && index.parse::<u8>().is_ok_and(|n| n < 0xff);
    valid.then_some(PinField {
        name: "gpu_block",
        kind: PinKind::Text,
        side: PinSide::Gpu,
    })
}

/// Why a policy value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{table}.{field}: unknown field; expected one of {expected}")]
    UnknownPinField {
        table: &'static str,
        field: String,
        expected: String,
    },
    #[error("{table}.{field}[{index}]: expected {expected}, found \"{found}\"")]
    BadPinValue {
        table: &'static str,
        field: String,
        index: usize,
        expected: String,
        found: String,
    },
    #[error("{table}.{field}: expected at least one accepted value, found an empty list")]
    EmptyPin { table: &'static str, field: String },
    #[error("formats: expected at least one accepted format, found an empty list")]
    EmptyFormats,
    /// A `[target.provenance]` problem; `key` is relative to that table.
    #[error("provenance.{key}: {message}")]
    Provenance { key: String, message: String },
    #[error("formats[{index}]: expected one of {expected}, found \"{found}\"")]
    UnknownFormat {
        index: usize,
        expected: String,
        found: String,
    },
    #[error("allowed_tcb_statuses[{index}]: expected one of {expected}, found \"{found}\"")]
    UnknownTcbStatus {
        index: usize,
        expected: String,
        found: String,
    },
    /// A target's use of the known-measurements table (`known_extra[0].value`, …).
    #[error("{path}: {message}")]
    BadKnown { path: String, message: String },
}

/// Field name to its allowlist of accepted values, as written in the configuration.
pub type Pins = BTreeMap<String, Vec<String>>;

/// The attestation formats a policy can name in `formats`.
pub const POLICY_FORMATS: [&str; 3] = ["dstack", "near-gateway", "near-direct"];

/// The policy a bundle is judged against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub allowed_tcb_statuses: Vec<String>,
    /// The pins of the parts that run the model.
    pub pins: Pins,
    /// The pins of the NEAR gateway, which sees every prompt in the clear and runs other
    /// software than the model (TDX fields only: it has no GPU).
    pub gateway_pins: Pins,
    /// The attestation formats the target may answer in; `None` accepts every supported one
    /// (the format seen is then tracked for drift).
    pub formats: Option<Vec<String>>,
    /// `[target.provenance]`: who may have built each container image; `None` skips
    /// `image_provenance`.
    pub provenance: Option<super::image_provenance::ProvenancePolicy>,
    /// The known-measurements table judging `mrseam` and `mrtd` where a pin table sets neither;
    /// `None` when it is not used (the default, and every bundle stored before it existed).
    pub known: Option<KnownUse>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_tcb_statuses: DEFAULT_ALLOWED_TCB_STATUSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            pins: BTreeMap::new(),
            gateway_pins: BTreeMap::new(),
            formats: None,
            provenance: None,
            known: None,
        }
    }
}

/// A policy as stored in a bundle: every field optional, defaults filled in on use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tcb_statuses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: Pins,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_pins: Pins,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<super::image_provenance::ProvenancePolicy>,
    /// Absent means the table was not used, so every snapshot stored before the table existed
    /// re-derives its verdict unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_measurements: Option<KnownUse>,
}

impl Policy {
    /// Builds a policy from a snapshot, validating every value and reporting every error.
    pub fn from_snapshot(snapshot: &PolicySnapshot) -> Result<Policy, Vec<PolicyError>> {
        let policy = Policy {
            allowed_tcb_statuses: snapshot
                .allowed_tcb_statuses
                .clone()
                .unwrap_or_else(|| Policy::default().allowed_tcb_statuses),
            pins: snapshot.pins.clone(),
            gateway_pins: snapshot.gateway_pins.clone(),
            formats: snapshot.formats.clone(),
            provenance: snapshot.provenance.clone(),
            known: snapshot.known_measurements.clone(),
        };
        let errors = policy.validate();
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// The snapshot written into bundles so that they re-verify under the same policy.
    pub fn snapshot(&self) -> PolicySnapshot {
        PolicySnapshot {
            allowed_tcb_statuses: Some(self.allowed_tcb_statuses.clone()),
            pins: self.pins.clone(),
            gateway_pins: self.gateway_pins.clone(),
            formats: self.formats.clone(),
            provenance: self.provenance.clone(),
            known_measurements: self.known.clone(),
        }
    }

    /// Every problem with this policy, in a stable order.
    pub fn validate(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        for (index, status) in self.allowed_tcb_statuses.iter().enumerate() {
            if !KNOWN_TCB_STATUSES.contains(&status.as_str()) {
                errors.push(PolicyError::UnknownTcbStatus {
                    index,
                    expected: KNOWN_TCB_STATUSES.join(", "),
                    found: status.clone(),
                });
            }
        }
        validate_pins("pins", &self.pins, true, &mut errors);
        validate_pins("gateway_pins", &self.gateway_pins, false, &mut errors);
        if self.formats.as_ref().is_some_and(Vec::is_empty) {
            errors.push(PolicyError::EmptyFormats);
        }
        for (index, format) in self.formats.iter().flatten().enumerate() {
            if !POLICY_FORMATS.contains(&format.as_str()) {
                errors.push(PolicyError::UnknownFormat {
                    index,
                    expected: POLICY_FORMATS.join(", "),
                    found: format.clone(),
                });
            }
        }
        for (key, message) in self.provenance.iter().flat_map(|p| p.validate()) {
            errors.push(PolicyError::Provenance { key, message });
        }
        for (path, message) in self.known.iter().flat_map(KnownUse::problems) {
            errors.push(PolicyError::BadKnown { path, message });
        }
        errors
    }

    /// Whether a value matches the allowlist of a pinned field of the model's parts.
    pub fn pin_accepts(&self, field: &str, value: &str) -> bool {
        pins_accept(&self.pins, field, value)
    }

    /// Whether a format is one this policy accepts.
    pub fn accepts_format(&self, format: &str) -> bool {
        self.formats
            .as_ref()
            .is_none_or(|formats| formats.iter().any(|f| f == format))
    }
}

/// Whether a value matches the allowlist of a field in a pin table.
pub fn pins_accept(pins: &Pins, field: &str, value: &str) -> bool {
    let Some(allowed) = pins.get(field) else {
        return false;
    };
    let hex = pin_field(field).is_some_and(|f| f.name == "gpu_block" || f.kind != PinKind::Text);
    allowed.iter().any(|candidate| {
        if hex {
            normalize_hex(candidate).is_some_and(|c| Some(c) == normalize_hex(value))
        } else {
            candidate == value
        }
    })
}

/// Checks one pin table: known fields (GPU fields only where the part has GPUs), at least one
/// value each, every value of the field's form.
fn validate_pins(
    table: &'static str,
    pins: &Pins,
    gpu_fields: bool,
    errors: &mut Vec<PolicyError>,
) {
    for (field, values) in pins {
        let spec = pin_field(field).filter(|spec| gpu_fields || spec.side == PinSide::Tdx);
        let Some(spec) = spec else {
            let mut names: Vec<&str> = PIN_FIELDS
                .iter()
                .filter(|f| gpu_fields || f.side == PinSide::Tdx)
                .map(|f| f.name)
                .collect();
            if gpu_fields {
                names.push("gpu_block_<n>");
            }
            errors.push(PolicyError::UnknownPinField {
                table,
                field: field.clone(),
                expected: names.join(", "),
            });
            continue;
        };
        if values.is_empty() {
            errors.push(PolicyError::EmptyPin {
                table,
                field: field.clone(),
            });
        }
        let kind = if spec.name == "gpu_block" {
            PinKind::Hex(48)
        } else {
            spec.kind
        };
        for (index, value) in values.iter().enumerate() {
            if kind == PinKind::Address {
                if normalize_hex(value).is_none_or(|h| h.len() != 40 && h.len() != 64) {
                    errors.push(PolicyError::BadPinValue {
                        table,
                        field: field.clone(),
                        index,
                        expected: "40 or 64 hex characters (an ecdsa address or an ed25519 key)"
                            .to_string(),
                        found: value.clone(),
                    });
                }
            } else if let PinKind::Hex(len) = kind {
                if normalize_hex(value).is_none_or(|h| h.len() != len * 2) {
                    errors.push(PolicyError::BadPinValue {
                        table,
                        field: field.clone(),
                        index,
                        expected: format!("{} hex characters ({len} bytes)", len * 2),
                        found: value.clone(),
                    });
                }
            } else if value.is_empty() {
                errors.push(PolicyError::BadPinValue {
                    table,
                    field: field.clone(),
                    index,
                    expected: "a non-empty string".to_string(),
                    found: value.clone(),
                });
            }
        }
    }
}

/// Lowercase hex without a `0x` prefix, or `None` when the text is not hex.
pub fn normalize_hex(text: &str) -> Option<String> {
    let body = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    (body.len() % 2 == 0 && body.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| body.to_ascii_lowercase())
}

/// Intel's SGX root CA (see `anchors/README.md`).
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("../anchors/intel_sgx_root_ca.der");

/// NVIDIA's Device Identity CA, the root of every GPU device certificate chain.
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("../anchors/nvidia_device_identity_ca.pem");

/// The NRAS intermediate that signs the JWKS leaf certificates (the default NRAS anchor).
pub const NRAS_INTERMEDIATE_004_PEM: &str =
    include_str!("../anchors/nras_gpu_intermediate_004.pem");

/// NRAS's base URL, which is also the `iss` of its tokens.
pub const DEFAULT_NRAS_URL: &str = "https://nras.attestation.nvidia.com";

/// DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()?
        .ok()
        .map(|p| p.contents)
}

/// What the verifier remembers between bundles to avoid repeating work on unchanged inputs.
#[derive(Debug, Default)]
pub struct VerifierCache {
    /// GPU certificate chains whose link signatures verified.
    pub gpu_chains: super::gpu::certs::ChainCache,
    /// DCAP collateral already parsed, with its validity windows.
    pub collateral: super::dcap::CollateralCache,
}

/// The roots the verifier trusts, and which `dangerous_*` options put them there.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    /// DER of the Intel SGX root CA that PCK chains, TCB info and QE identity must reach.
    pub intel_root_der: Vec<u8>,
    /// DER of the NVIDIA Device Identity root GPU certificate chains must reach.
    pub nvidia_device_root_der: Vec<u8>,
    /// DER of the NRAS intermediates a JWKS leaf may be signed by.
    pub nras_intermediates_der: Vec<Vec<u8>>,
    /// The NRAS base URL, which NRAS tokens must name as `iss`.
    pub nras_url: String,
    /// Test Sigstore roots (`dangerous_sigstore_fulcio_root`, `dangerous_rekor_key`) as PEM text;
    /// Sigstore's production root pinned in the binary is used unless both are set.
    pub sigstore_fulcio_pem: Option<String>,
    pub rekor_key_pem: Option<String>,
    /// Names of the `dangerous_*` options in force; copied into every verdict.
    pub dangerous: Vec<String>,
    /// Work already done on unchanged inputs (verified GPU chains, read collateral), shared by
    /// clones. It changes no result: validity at `observed_at` is still checked every time.
    pub cache: std::sync::Arc<VerifierCache>,
}

impl TrustAnchors {
    /// The production anchors compiled into the binary.
    pub fn production() -> TrustAnchors {
        TrustAnchors {
            intel_root_der: INTEL_SGX_ROOT_CA_DER.to_vec(),
            nvidia_device_root_der: pem_to_der(NVIDIA_DEVICE_ROOT_PEM).unwrap_or_default(),
            nras_intermediates_der: pem_to_der(NRAS_INTERMEDIATE_004_PEM).into_iter().collect(),
            nras_url: DEFAULT_NRAS_URL.to_string(),
            sigstore_fulcio_pem: None,
            rekor_key_pem: None,
            dangerous: Vec::new(),
            cache: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_pins_compare_case_insensitively_with_or_without_prefix() {
        let mut policy = Policy::default();
        policy.pins.insert(
            "app_id".into(),
            vec!["0xABCDEF0000000000000000000000000000000000".into()],
        );
        assert!(policy.validate().is_empty());
        assert!(policy.pin_accepts("app_id", "abcdef0000000000000000000000000000000000"));
        assert!(!policy.pin_accepts("app_id", "abcdef0000000000000000000000000000000001"));
        policy
            .pins
            .insert("key_provider".into(), vec!["kms".into()]);
        assert!(policy.pin_accepts("key_provider", "kms"));
        assert!(!policy.pin_accepts("key_provider", "KMS"));
    }

    #[test]
    fn every_bad_value_is_reported() {
        let mut policy = Policy::default();
        policy.allowed_tcb_statuses.push("UpToDat".into());
        policy.pins.insert("mrtdd".into(), vec!["00".into()]);
        policy
            .pins
            .insert("mrtd".into(), vec!["xyz".into(), "00".into()]);
        policy.pins.insert("compose_hash".into(), vec![]);
        let errors: Vec<String> = policy.validate().iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("allowed_tcb_statuses[2]: expected one of"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("pins.mrtdd: unknown field"))
        );
        assert!(errors.contains(
            &"pins.mrtd[0]: expected 96 hex characters (48 bytes), found \"xyz\"".to_string()
        ));
        assert!(errors.contains(
            &"pins.mrtd[1]: expected 96 hex characters (48 bytes), found \"00\"".to_string()
        ));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("pins.compose_hash: expected at least one"))
        );
    }

    #[test]
    fn compiled_in_anchors_decode() {
        let anchors = TrustAnchors::production();
        assert!(!anchors.nvidia_device_root_der.is_empty());
        assert_eq!(anchors.nras_intermediates_der.len(), 1);
    }

    #[test]
    fn gpu_block_pins_take_an_index() {
        assert!(pin_field("gpu_block_1").is_some());
        assert!(
            pin_field("gpu_block_0").is_none(),
            "spdm measurement blocks start at 1"
        );
        assert!(pin_field("gpu_block_254").is_some());
        assert!(
            pin_field("gpu_block_255").is_none(),
            "0xff means all blocks in spdm"
        );
        assert!(pin_field("gpu_block_256").is_none());
        assert!(pin_field("gpu_block_01").is_none());
        assert!(pin_field("gpu_block_").is_none());
    }
}
