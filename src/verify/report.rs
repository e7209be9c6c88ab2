//! Reading a provider's attestation response: which format it is, which nodes it describes, and
//! the fields of each node report.
//!
//! Responses are untrusted JSON. Nothing here judges them; accessors return `None` or an error
//! text, and the verifier decides what a missing field means.

use serde_json::{Map, Value};

use super::verdict::AttestationFormat;

/// Recognises the attestation format of a provider response.
pub fn detect_format(attestation: &Value) -> AttestationFormat {
    let Some(object) = attestation.as_object() else {
        return AttestationFormat::Unknown;
    };
    let has = |key: &str| object.get(key).is_some_and(|v| !v.is_null());
    if has("gateway_attestation") || has("model_attestations") {
        AttestationFormat::NearGateway
    } else if object.get("attestation_type").and_then(Value::as_str) == Some("chutes") {
        AttestationFormat::Chutes
    } else if object
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.starts_with("https://tinfoil.sh/predicate/"))
    {
        AttestationFormat::Tinfoil
    } else if has("model_name")
        && (has("tls_cert_fingerprint") || has("compose_manager_attestation"))
    {
        AttestationFormat::NearDirect
    } else if has("intel_quote") || has("quote") || has("all_attestations") {
        AttestationFormat::Dstack
    } else {
        AttestationFormat::Unknown
    }
}

/// One node's report inside a dstack / vllm-proxy response.
#[derive(Debug, Clone)]
pub struct NodeReport<'a> {
    /// `node:<address>` when the response lists several nodes, else empty.
    pub scope: String,
    pub fields: &'a Map<String, Value>,
    /// `info`, parsed once (dstack may serve it as a JSON string).
    info: Option<Value>,
    /// `info.tcb_info`, parsed once (dstack serves it as a JSON string).
    tcb_info: Option<Value>,
}

impl<'a> NodeReport<'a> {
    pub fn new(scope: String, fields: &'a Map<String, Value>) -> NodeReport<'a> {
        let info = object_or_json_string(fields.get("info"));
        let tcb_info = info
            .as_ref()
            .and_then(|i| object_or_json_string(i.get("tcb_info")));
        NodeReport {
            scope,
            fields,
            info,
            tcb_info,
        }
    }
}

/// Lists the nodes of a dstack response. With several entries in `all_attestations` each is a
/// node (and the top-level report too, if its signing address is not among them); otherwise the
/// top-level report is the one node.
pub fn nodes(attestation: &Value) -> Vec<NodeReport<'_>> {
    let Some(top) = attestation.as_object() else {
        return Vec::new();
    };
    let listed: Vec<&Map<String, Value>> = top
        .get("all_attestations")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let top_has_quote = top.contains_key("intel_quote") || top.contains_key("quote");
    if listed.len() < 2 {
        // One listed node and no quote at the top level: the listed report is the node.
        let fields = match listed.first() {
            Some(only) if !top_has_quote => only,
            _ => top,
        };
        return vec![NodeReport::new(String::new(), fields)];
    }
    let mut reports: Vec<&Map<String, Value>> = listed;
    let top_address = address_of(top);
    let top_is_listed = reports.iter().any(|r| address_of(r) == top_address);
    if !top_is_listed && top_has_quote {
        reports.insert(0, top);
    }
    let mut seen: Vec<String> = Vec::new();
    reports
        .into_iter()
        .enumerate()
        .map(|(index, fields)| {
            // Scopes must be unique: a node is named by its address when that is hex and not
            // taken, else by its position (`#` cannot occur in a hex address).
            let scope = match address_of(fields) {
                Some(address)
                    if !seen.contains(&address) && super::hexutil::decode(&address).is_ok() =>
                {
                    seen.push(address.clone());
                    format!("node:{address}")
                }
                _ => format!("node:#{index}"),
            };
            NodeReport::new(scope, fields)
        })
        .collect()
}

fn address_of(fields: &Map<String, Value>) -> Option<String> {
    fields
        .get("signing_address")
        .and_then(Value::as_str)
        .map(|s| s.to_ascii_lowercase())
}

/// A field that may arrive as an object or as a string holding JSON (dstack's `info` and
/// `tcb_info` both do).
fn object_or_json_string(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::Object(_) => value.cloned(),
        Value::String(text) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object),
        _ => None,
    }
}

impl NodeReport<'_> {
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    /// The quote as hex text, and whether `intel_quote` and `quote` disagree.
    pub fn quote_hex(&self) -> Result<&str, String> {
        let intel = self.fields.get("intel_quote");
        let plain = self.fields.get("quote");
        match (intel, plain) {
            (Some(Value::String(a)), Some(Value::String(b)))
                if super::hexutil::decode(a).ok() != super::hexutil::decode(b).ok() =>
            {
                Err("`intel_quote` and `quote` carry different quotes".into())
            }
            (Some(Value::String(a)), _) => Ok(a),
            (None | Some(Value::Null), Some(Value::String(b))) => Ok(b),
            (None | Some(Value::Null), None | Some(Value::Null)) => {
                Err("the report carries no `intel_quote`".into())
            }
            _ => Err("`intel_quote` is not a string".into()),
        }
    }

    /// The dstack `info` object.
    pub fn info(&self) -> Option<&Value> {
        self.info.as_ref()
    }

    /// `info.tcb_info`, which dstack serves as a JSON string.
    pub fn tcb_info(&self) -> Option<&Value> {
        self.tcb_info.as_ref()
    }

    /// The event log: the report's own `event_log`, else `info.tcb_info.event_log`.
    pub fn event_log(&self) -> Option<&Value> {
        match self.fields.get("event_log") {
            Some(v) if !v.is_null() => Some(v),
            _ => self.tcb_info()?.get("event_log").filter(|v| !v.is_null()),
        }
    }

    /// The app compose text from `info.tcb_info.app_compose`.
    pub fn app_compose(&self) -> Option<String> {
        self.tcb_info()?
            .get("app_compose")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// `vm_config`, from the report or from `info`.
    pub fn vm_config(&self) -> Option<Value> {
        object_or_json_string(self.fields.get("vm_config"))
            .or_else(|| object_or_json_string(self.info()?.get("vm_config")))
    }
}
