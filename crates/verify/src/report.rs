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
    } else if [
        "intel_quote",
        "quote",
        "all_attestations",
        "signing_address",
        "event_log",
    ]
    .iter()
    .any(|key| has(key))
    {
        // A dstack report that lost its quote is still a dstack report: its quote check fails
        // naming what is missing, rather than the response passing for an unknown format.
        AttestationFormat::Dstack
    } else {
        AttestationFormat::Unknown
    }
}

/// What a report part is in the provider's deployment, which decides the checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartRole {
    /// An inference node: a dstack / vllm-proxy node, or a node of the NEAR AI direct format.
    Node,
    /// The NEAR AI cloud gateway: a CPU-only TD that routes requests to the models.
    Gateway,
    /// A model attestation behind the NEAR AI gateway.
    Model,
    /// NEAR AI's compose manager: the process inside a model node's TD that deploys the model's
    /// containers at run time, attested by a quote of that same TD bound to its action log.
    ComposeManager,
}

impl PartRole {
    /// Whether the part runs the model, so that it has GPUs, may sign chats and is pinned.
    pub fn serves_inference(self) -> bool {
        matches!(self, PartRole::Node | PartRole::Model)
    }
}

/// The scope of the NEAR AI gateway's part.
pub const GATEWAY_SCOPE: &str = "gateway";
/// The scope of the NEAR AI direct format's compose manager.
pub const COMPOSE_MANAGER_SCOPE: &str = "compose_manager";

/// Whether a check or observation scope belongs to a part that runs the model (everything but
/// the gateway and the compose managers, `compose_manager` or `model:<i>/compose_manager`).
pub fn scope_serves_inference(scope: &str) -> bool {
    let mut segments = scope.split('/');
    segments.next() != Some(GATEWAY_SCOPE) && !scope.split('/').any(|s| s == COMPOSE_MANAGER_SCOPE)
}

/// The scope of the compose manager of the part with this scope: `compose_manager` for the
/// direct format's answering node, `<part>/compose_manager` for a model behind the gateway.
pub fn compose_manager_scope(owner: &str, format: AttestationFormat) -> String {
    if format == AttestationFormat::NearGateway {
        format!("{owner}/{COMPOSE_MANAGER_SCOPE}")
    } else {
        COMPOSE_MANAGER_SCOPE.to_string()
    }
}

/// Where a part sits relative to the TLS connection the attestation was fetched over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPosition {
    /// The part that answered: its TLS key is the one the connection saw (the NEAR gateway, or
    /// the node whose report is at the top level).
    Terminating,
    /// Behind the terminating part (a model behind the gateway): its key was never on the wire.
    Behind,
    /// Listed beside the part that answered (another node of a load-balanced deployment).
    Beside,
}

/// One attested part of a response (a node, the gateway, a model attestation, the compose
/// manager) and its fields.
#[derive(Debug, Clone)]
pub struct Part<'a> {
    /// `node:<address>` when the response lists several nodes, `gateway`, `model:<i>` or
    /// `compose_manager` in the NEAR formats, else empty.
    pub scope: String,
    pub fields: &'a Map<String, Value>,
    pub role: PartRole,
    pub tls: TlsPosition,
    /// For a compose manager, the scope of the part whose TD it runs in.
    pub owner: Option<String>,
    /// `info`, parsed once (dstack may serve it as a JSON string).
    info: Option<Value>,
    /// `info.tcb_info`, parsed once (dstack serves it as a JSON string).
    tcb_info: Option<Value>,
}

impl<'a> Part<'a> {
    pub fn new(scope: String, fields: &'a Map<String, Value>) -> Part<'a> {
        Part::with_role(scope, fields, PartRole::Node, TlsPosition::Terminating)
    }

    pub fn with_role(
        scope: String,
        fields: &'a Map<String, Value>,
        role: PartRole,
        tls: TlsPosition,
    ) -> Part<'a> {
        let info = object_or_json_string(fields.get("info"));
        let tcb_info = info
            .as_ref()
            .and_then(|i| object_or_json_string(i.get("tcb_info")));
        Part {
            scope,
            fields,
            role,
            tls,
            owner: None,
            info,
            tcb_info,
        }
    }
}

/// Lists the attested parts of a response in a supported format, in report order; an
/// unsupported format has none.
pub fn parts(attestation: &Value, format: AttestationFormat) -> Vec<Part<'_>> {
    match format {
        AttestationFormat::Dstack => nodes(attestation),
        AttestationFormat::NearDirect => {
            let mut parts = nodes(attestation);
            // The top-level compose manager runs in the TD of the node that answered.
            let owner = parts
                .iter()
                .find(|p| p.tls == TlsPosition::Terminating)
                .map(|p| p.scope.clone())
                .unwrap_or_default();
            if let Some(manager) = compose_manager_of(attestation.as_object(), &owner, format) {
                parts.push(manager);
            }
            parts
        }
        AttestationFormat::NearGateway => near_gateway_parts(attestation),
        AttestationFormat::Chutes | AttestationFormat::Tinfoil | AttestationFormat::Unknown => {
            Vec::new()
        }
    }
}

/// The NEAR AI gateway format: the gateway (scope `gateway`), then each model attestation
/// (scope `model:<i>`, by position in `model_attestations`). An entry that is not an object is
/// kept as an empty part, so that its absence of evidence is reported rather than skipped.
fn near_gateway_parts(attestation: &Value) -> Vec<Part<'_>> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let empty = EMPTY.get_or_init(Map::new);
    let mut parts = Vec::new();
    match attestation.get("gateway_attestation") {
        Some(Value::Object(gateway)) => parts.push(Part::with_role(
            GATEWAY_SCOPE.into(),
            gateway,
            PartRole::Gateway,
            TlsPosition::Terminating,
        )),
        Some(Value::Null) | None => {}
        Some(_) => parts.push(Part::with_role(
            GATEWAY_SCOPE.into(),
            empty,
            PartRole::Gateway,
            TlsPosition::Terminating,
        )),
    }
    if let Some(models) = attestation
        .get("model_attestations")
        .and_then(Value::as_array)
    {
        for (index, model) in models.iter().enumerate() {
            let scope = format!("model:{index}");
            let manager =
                compose_manager_of(model.as_object(), &scope, AttestationFormat::NearGateway);
            parts.push(Part::with_role(
                scope,
                model.as_object().unwrap_or(empty),
                PartRole::Model,
                TlsPosition::Behind,
            ));
            // Right after its model: the compose manager is judged against that model's TD.
            parts.extend(manager);
        }
    }
    parts
}

/// The `compose_manager_attestation` of a report object, as a part owned by `owner`. One that
/// is present but not an object is kept as an empty part, so its missing evidence is reported.
fn compose_manager_of<'a>(
    fields: Option<&'a Map<String, Value>>,
    owner: &str,
    format: AttestationFormat,
) -> Option<Part<'a>> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let value = fields?.get("compose_manager_attestation")?;
    if value.is_null() {
        return None;
    }
    let mut part = Part::with_role(
        compose_manager_scope(owner, format),
        value
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new)),
        PartRole::ComposeManager,
        TlsPosition::Behind,
    );
    part.owner = Some(owner.to_string());
    Some(part)
}

/// Lists the nodes of a dstack response. With several entries in `all_attestations` each is a
/// node (and the top-level report too, if its signing address is not among them); otherwise the
/// top-level report is the one node. The node whose address is the top-level report's answered
/// the request; the others are beside it.
pub fn nodes(attestation: &Value) -> Vec<Part<'_>> {
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
        return vec![Part::new(String::new(), fields)];
    }
    let mut reports: Vec<&Map<String, Value>> = listed;
    let top_address = address_of(top);
    let top_is_listed = reports.iter().any(|r| address_of(r) == top_address);
    if !top_is_listed && top_has_quote {
        reports.insert(0, top);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut answered = false;
    reports
        .into_iter()
        .enumerate()
        .map(|(index, fields)| {
            // Scopes must be unique: a node is named by its address when that is hex and not
            // taken, else by its position (`#` cannot occur in a hex address).
            let address = address_of(fields);
            let tls = if !answered && address.is_some() && address == top_address {
                answered = true;
                TlsPosition::Terminating
            } else {
                TlsPosition::Beside
            };
            let scope = match address {
                Some(address)
                    if !seen.contains(&address) && super::hexutil::decode(&address).is_ok() =>
                {
                    seen.push(address.clone());
                    format!("node:{address}")
                }
                _ => format!("node:#{index}"),
            };
            Part::with_role(scope, fields, PartRole::Node, tls)
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

impl Part<'_> {
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
