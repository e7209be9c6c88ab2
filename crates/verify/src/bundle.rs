//! The evidence bundle `teewatch-bundle/1`: everything one check gathered, as one JSON document.
//!
//! A bundle holds the raw provider response, the nonce that was sent, the collateral and NRAS
//! answers used and the time the response arrived, so that `verify` can re-derive the verdict
//! offline at any later date. Loading checks only the envelope: a file that is not a bundle is
//! rejected here, while bad evidence inside a well-formed bundle is left for the verifier to
//! judge. The format is specified in `docs/bundle.md`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::canary::cadence::CanaryNotRun;
use super::image_provenance::RekorLookup;
use super::policy::PolicySnapshot;

/// The format tag every bundle carries.
pub const BUNDLE_FORMAT: &str = "teewatch-bundle/1";

/// Fields a bundle must contain (`attestation` may be null but must be present).
const REQUIRED_FIELDS: [&str; 5] = ["format", "target", "observed_at", "nonce", "attestation"];

/// Why a document is not a readable bundle.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("not json: {0}")]
    NotJson(String),
    #[error("expected a json object at the top level, found {0}")]
    NotObject(&'static str),
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("field `format`: expected \"{BUNDLE_FORMAT}\", found {0}")]
    WrongFormat(String),
    #[error("field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// URLs of the services a check talked to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub nras: Option<String>,
    #[serde(default)]
    pub pccs: Option<String>,
}

/// One failed fetch: which endpoint, what kind of failure, and the error text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchError {
    pub endpoint: String,
    pub kind: String,
    pub message: String,
}

/// One canary chat: the exact bytes sent and received, and the signature endpoint's answer.
///
/// The response is kept as bytes because the signature covers the bytes received: a lossy text
/// conversion would hash something the provider never sent. The request is text because teewatch
/// serialises it itself (always UTF-8) and sends exactly those bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CanaryExchangeWire", into = "CanaryExchangeWire")]
pub struct CanaryExchange {
    pub stream: bool,
    pub request_body: String,
    pub response_body: Vec<u8>,
    pub signature: Option<Value>,
}

/// A canary entry as written: the response as `response_body` text when it is valid UTF-8 (so
/// bundles written before byte-exact storage read and write unchanged), otherwise as
/// `response_body_base64`; exactly one of the two.
#[derive(Serialize, Deserialize)]
struct CanaryExchangeWire {
    stream: bool,
    request_body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_body_base64: Option<String>,
    #[serde(default)]
    signature: Option<Value>,
}

impl TryFrom<CanaryExchangeWire> for CanaryExchange {
    type Error = String;

    fn try_from(wire: CanaryExchangeWire) -> Result<CanaryExchange, String> {
        use base64::Engine as _;
        let response_body = match (wire.response_body, wire.response_body_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|e| {
                    let e = e.to_string().to_lowercase();
                    format!(
                        "canary entry `response_body_base64`: expected standard base64, found invalid base64 ({})",
                        e.trim_end_matches('.')
                    )
                })?,
            (text, encoded) => {
                return Err(format!(
                    "canary entry: expected exactly one of `response_body` and `response_body_base64`, found {}",
                    if text.is_some() && encoded.is_some() { "both" } else { "neither" }
                ));
            }
        };
        Ok(CanaryExchange {
            stream: wire.stream,
            request_body: wire.request_body,
            response_body,
            signature: wire.signature,
        })
    }
}

impl From<CanaryExchange> for CanaryExchangeWire {
    fn from(exchange: CanaryExchange) -> CanaryExchangeWire {
        use base64::Engine as _;
        let (response_body, response_body_base64) = match String::from_utf8(exchange.response_body)
        {
            Ok(text) => (Some(text), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
            ),
        };
        CanaryExchangeWire {
            stream: exchange.stream,
            request_body: exchange.request_body,
            response_body,
            response_body_base64,
            signature: exchange.signature,
        }
    }
}

/// A loaded bundle. Evidence parts stay as JSON values: judging them is the verifier's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub target: String,
    #[serde(with = "rfc3339")]
    pub observed_at: DateTime<Utc>,
    pub nonce: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoints: Endpoints,
    pub attestation: Option<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub fetch_errors: Vec<FetchError>,
    /// dcap-qvl `QuoteCollateralV3` JSON, or a list of them (one per FMSPC).
    #[serde(default)]
    pub tdx_collateral: Option<Value>,
    /// `{response, jwks}` or a list of `{scope, response, jwks}`.
    #[serde(default)]
    pub nras: Option<Value>,
    #[serde(default)]
    pub canary: Option<Vec<CanaryExchange>>,
    /// Why a check carries no canary chat, and the last run's result (`canary/cadence.rs`);
    /// absent when the chats ran or the bundle predates the canary cadence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_not_run: Option<CanaryNotRun>,
    /// Base64 DER SubjectPublicKeyInfo of the attestation fetch's TLS peer.
    #[serde(default)]
    pub tls_peer_spki: Option<String>,
    /// Whether teewatch talked to the attested service itself or through a proxy (absent in
    /// bundles made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(default)]
    pub policy: Option<PolicySnapshot>,
    /// The Rekor answers `image_provenance` used, per image digest; absent when the target
    /// configures no provenance (bundles written before it re-verify unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekor: Option<Vec<RekorLookup>>,
}

/// How the attestation fetch reached the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// teewatch's connection ended at the attested service (profiles `vllm-proxy`, `near`).
    Direct,
    /// teewatch's connection ended at a proxy in front of it (profile `nanogpt`): its TLS key
    /// says nothing about the TD, and the signed canary is the end-to-end proof.
    Proxied,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Direct => "direct",
            Transport::Proxied => "proxied",
        }
    }
}

impl Bundle {
    /// Parses and checks the envelope of a bundle. Unknown fields are ignored.
    pub fn from_json(text: &str) -> Result<Bundle, BundleError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| BundleError::NotJson(e.to_string()))?;
        Bundle::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Bundle, BundleError> {
        let object = match &value {
            Value::Object(map) => map,
            other => return Err(BundleError::NotObject(json_kind(other))),
        };
        for field in REQUIRED_FIELDS {
            if !object.contains_key(field) {
                return Err(BundleError::MissingField(field));
            }
        }
        check_envelope(object)?;
        // Check each optional part on its own so that an error names the field it is in.
        for field in OPTIONAL_FIELDS {
            if let Some(part) = object.get(field) {
                if let Err(reason) = check_optional(field, part) {
                    return Err(BundleError::InvalidField { field, reason });
                }
            }
        }
        serde_json::from_value(value).map_err(|e| BundleError::InvalidField {
            field: "(bundle)",
            reason: e.to_string(),
        })
    }

    /// The nonce as 32 raw bytes. The envelope check guarantees it decodes.
    pub fn nonce_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Ok(bytes) = hex::decode(&self.nonce) {
            if let Ok(array) = <[u8; 32]>::try_from(bytes.as_slice()) {
                out = array;
            }
        }
        out
    }

    /// `observed_at` as written in verdicts: RFC 3339, UTC, second precision or finer.
    pub fn observed_at_text(&self) -> String {
        self.observed_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Serialises the bundle as pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Optional fields with a typed shape, checked one by one for precise errors.
const OPTIONAL_FIELDS: [&str; 8] = [
    "endpoints",
    "fetch_errors",
    "canary",
    "canary_not_run",
    "tls_peer_spki",
    "transport",
    "policy",
    "rekor",
];

fn check_optional(field: &str, part: &Value) -> Result<(), String> {
    let part = part.clone();
    let result = match field {
        "endpoints" => serde_json::from_value::<Option<Endpoints>>(part).map(drop),
        "fetch_errors" => serde_json::from_value::<Option<Vec<FetchError>>>(part).map(drop),
        "canary" => serde_json::from_value::<Option<Vec<CanaryExchange>>>(part).map(drop),
        "canary_not_run" => serde_json::from_value::<Option<CanaryNotRun>>(part).map(drop),
        "tls_peer_spki" => serde_json::from_value::<Option<String>>(part).map(drop),
        "transport" => serde_json::from_value::<Option<Transport>>(part).map(drop),
        "policy" => serde_json::from_value::<Option<PolicySnapshot>>(part).map(drop),
        "rekor" => serde_json::from_value::<Option<Vec<RekorLookup>>>(part).map(drop),
        _ => Ok(()),
    };
    result.map_err(|e| e.to_string())
}

/// Reads `null` as the type's default, like an absent field.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Checks the fields whose shape the verifier relies on, with a reason naming each.
fn check_envelope(object: &Map<String, Value>) -> Result<(), BundleError> {
    match object.get("format") {
        Some(Value::String(s)) if s == BUNDLE_FORMAT => {}
        Some(other) => return Err(BundleError::WrongFormat(other.to_string())),
        None => return Err(BundleError::MissingField("format")),
    }
    match object.get("target") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::String(_)) => {
            return Err(BundleError::InvalidField {
                field: "target",
                reason: "expected a non-empty string, found an empty string".into(),
            });
        }
        Some(other) => return Err(invalid("target", "a non-empty string", other)),
        None => return Err(BundleError::MissingField("target")),
    }
    match object.get("observed_at") {
        Some(Value::String(s)) => {
            if DateTime::parse_from_rfc3339(s).is_err() {
                return Err(BundleError::InvalidField {
                    field: "observed_at",
                    reason: format!("expected an rfc 3339 timestamp, found \"{s}\""),
                });
            }
        }
        Some(other) => return Err(invalid("observed_at", "an rfc 3339 string", other)),
        None => return Err(BundleError::MissingField("observed_at")),
    }
    match object.get("nonce") {
        Some(Value::String(s)) => {
            let count = s.chars().count();
            if count != 64 {
                return Err(BundleError::InvalidField {
                    field: "nonce",
                    reason: format!(
                        "expected 64 hex characters (32 bytes), found {count} characters"
                    ),
                });
            }
            if let Some(bad) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
                return Err(BundleError::InvalidField {
                    field: "nonce",
                    reason: format!(
                        "expected 64 hex characters (32 bytes), found non-hex character {bad:?}"
                    ),
                });
            }
        }
        Some(other) => return Err(invalid("nonce", "a 64-character hex string", other)),
        None => return Err(BundleError::MissingField("nonce")),
    }
    Ok(())
}

fn invalid(field: &'static str, expected: &str, found: &Value) -> BundleError {
    BundleError::InvalidField {
        field,
        reason: format!("expected {expected}, found {}", json_kind(found)),
    }
}

/// A short name for the kind of a JSON value, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 3339 (de)serialisation that keeps sub-second precision and writes UTC with `Z`.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
