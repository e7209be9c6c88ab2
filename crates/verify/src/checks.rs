//! The stable names of every check teewatch reports.
//!
//! These strings are part of the verdict format and of the metrics labels: never rename one. The
//! README lists them as the operator's checklist, and a test keeps the two in step.

pub const ATTESTATION_FORMAT: &str = "attestation_format";
pub const TDX_QUOTE_PARSE: &str = "tdx_quote_parse";
pub const TDX_QUOTE_SIGNATURE: &str = "tdx_quote_signature";
pub const TDX_TCB_STATUS: &str = "tdx_tcb_status";
pub const TDX_DEBUG_DISABLED: &str = "tdx_debug_disabled";
pub const TDX_TD_ATTRIBUTES: &str = "tdx_td_attributes";
pub const REPORT_DATA_BINDING: &str = "report_data_binding";
pub const SIGNING_KEY_ADDRESS: &str = "signing_key_address";
pub const TLS_KEY_BINDING: &str = "tls_key_binding";
pub const EVENT_LOG_REPLAY: &str = "event_log_replay";
pub const COMPOSE_BINDING: &str = "compose_binding";
pub const SAME_TD: &str = "same_td";
pub const IDENTITY_PINNED: &str = "identity_pinned";
pub const GPU_NONCE: &str = "gpu_nonce";
pub const GPU_EVIDENCE_SIGNATURE: &str = "gpu_evidence_signature";
pub const NRAS_TOKEN: &str = "nras_token";
pub const NRAS_RESULT: &str = "nras_result";
pub const GPU_UNIQUE: &str = "gpu_unique";
/// Once per part that carries an `ohttp_attestation`, after `gpu_unique`. Omitted when absent,
/// as `signing_key_address` is without `signing_public_key`, but unlike it not in `PART_CHECKS`:
/// without a response there is no OHTTP key to report as `unknown`.
pub const OHTTP_KEY_BINDING: &str = "ohttp_key_binding";
/// Once per container image of the attested compose (scope `image:<reference>`), after the
/// pins, only for a target with `[target.provenance]`; absent otherwise.
pub const IMAGE_PROVENANCE: &str = "image_provenance";
pub const CANARY_FRESH: &str = "canary_fresh";
pub const CANARY_HASHES: &str = "canary_hashes";
pub const CANARY_SIGNATURE: &str = "canary_signature";
/// Prefix of the per-pin checks: `pin:<field>`.
pub const PIN_PREFIX: &str = "pin:";

/// The fixed checks of each attested part, in the order they are reported.
pub const PART_CHECKS: [&str; 10] = [
    TDX_QUOTE_PARSE,
    TDX_QUOTE_SIGNATURE,
    TDX_TCB_STATUS,
    TDX_DEBUG_DISABLED,
    TDX_TD_ATTRIBUTES,
    REPORT_DATA_BINDING,
    SIGNING_KEY_ADDRESS,
    TLS_KEY_BINDING,
    EVENT_LOG_REPLAY,
    COMPOSE_BINDING,
];

/// The checks only a NEAR compose manager gets, besides the quote, binding and event-log checks.
pub const COMPOSE_MANAGER_CHECKS: [&str; 1] = [SAME_TD];

/// The GPU and NRAS checks, in the order they are reported: the first four for each part that
/// carries GPU evidence, `gpu_unique` once per verdict after all parts.
pub const GPU_CHECKS: [&str; 5] = [
    GPU_NONCE,
    GPU_EVIDENCE_SIGNATURE,
    NRAS_TOKEN,
    NRAS_RESULT,
    GPU_UNIQUE,
];

/// The checks of each canary chat, in the order they are reported.
pub const CANARY_CHECKS: [&str; 3] = [CANARY_FRESH, CANARY_HASHES, CANARY_SIGNATURE];

/// Every fixed check name, in report order (pins add `pin:<field>` per configured field), also
/// those listed only when their input is present (`ohttp_key_binding`) or configured
/// (`image_provenance`).
pub fn all_checks() -> impl Iterator<Item = &'static str> {
    [ATTESTATION_FORMAT]
        .into_iter()
        .chain(PART_CHECKS)
        .chain(COMPOSE_MANAGER_CHECKS)
        .chain(GPU_CHECKS)
        .chain([OHTTP_KEY_BINDING])
        .chain([IMAGE_PROVENANCE])
        .chain(CANARY_CHECKS)
        .chain([IDENTITY_PINNED])
}
