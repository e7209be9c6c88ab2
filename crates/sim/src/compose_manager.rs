//! NEAR AI's compose manager as the simulator runs it: the action log it keeps, the compose file
//! each model deploys at run time, and the three member orders real answers were seen in.
//!
//! NEAR's CVM boots a compose manager (what the boot-time `compose_hash` names), which then pulls
//! and starts the model's containers: the latest `compose_up` of its log names the software
//! actually serving. The manager hashes its log (`actions_hash` = SHA-256 of the `actions` array
//! as compact JSON) and the model node's own TD quotes that hash with the client nonce, so a log
//! is only as good as the order its members were hashed in. Real answers used three orders
//! (REFERENCE.md §1), each a per-model simulator option ([`ActionsOrder`]).
//!
//! Everything here is deterministic per model and node, so a redeploy is a deliberate change
//! (the `redeploy` fault) and a test can recompute what should have been served.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use teewatch_verify::hexutil;

/// The compose manager's own member order (REFERENCE.md §1, one list for the simulator and the
/// verifier); any other member follows these, in the order the action carries it.
pub use teewatch_verify::compose_manager::MANAGER_MEMBER_ORDER;

/// The containers a simulated compose file starts.
const SERVICES: [&str; 2] = ["vllm", "vllm-proxy"];

/// In which member order the actions are hashed and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ActionsOrder {
    /// Hashed and served in the compose manager's own order (the 2026-06-10 answer).
    #[default]
    Manager,
    /// Hashed in the compose manager's order, served with each action's members sorted by key
    /// (the 2026-04-24 answer): the served bytes do not hash to `actions_hash` as they stand.
    SortedView,
    /// Hashed and served with each action's members sorted by key (the 2026-06-29 answer).
    Sorted,
}

/// Every order, for listings and the name test.
pub const ALL_ACTIONS_ORDERS: [ActionsOrder; 3] = [
    ActionsOrder::Manager,
    ActionsOrder::SortedView,
    ActionsOrder::Sorted,
];

impl ActionsOrder {
    pub fn name(self) -> &'static str {
        match self {
            ActionsOrder::Manager => "manager",
            ActionsOrder::SortedView => "sorted-view",
            ActionsOrder::Sorted => "sorted",
        }
    }

    /// Whether the hash is taken over members sorted by key.
    fn hashes_sorted(self) -> bool {
        self == ActionsOrder::Sorted
    }

    /// Whether the answer lists members sorted by key.
    fn serves_sorted(self) -> bool {
        self != ActionsOrder::Manager
    }
}

impl fmt::Display for ActionsOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown order name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown actions order \"{0}\"; expected one of {names}", names = ALL_ACTIONS_ORDERS.iter().map(|o| o.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownActionsOrder(pub String);

impl FromStr for ActionsOrder {
    type Err = UnknownActionsOrder;

    fn from_str(s: &str) -> Result<ActionsOrder, UnknownActionsOrder> {
        ALL_ACTIONS_ORDERS
            .iter()
            .copied()
            .find(|o| o.name() == s)
            .ok_or_else(|| UnknownActionsOrder(s.to_string()))
    }
}

/// Which deployment of a model a compose file is: the one before the current, the current one,
/// or the one the `redeploy` fault rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Previous,
    Current,
    Next,
}

impl Generation {
    fn label(self) -> &'static str {
        match self {
            Generation::Previous => "previous",
            Generation::Current => "current",
            Generation::Next => "next",
        }
    }
}

/// A compose file the manager deploys: where it lives in NEAR's deployment repository, the tag and
/// commit it was taken from, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeFile {
    /// `prod/<model>.yaml` style path, as `compose_up`'s `file` names it.
    pub path: String,
    pub tag: String,
    /// 40 hex characters, as a git commit.
    pub commit: String,
    pub content: String,
}

/// The last path segment of a model name, lowercased, as a file name stem.
fn slug(model: &str) -> String {
    model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn digest(label: &str) -> [u8; 32] {
    Sha256::digest(format!("teewatch-sim/{label}").as_bytes()).into()
}

impl ComposeFile {
    /// The compose file of `model` in `generation`, the same at every start.
    pub fn of(model: &str, generation: Generation) -> ComposeFile {
        let slug = slug(model);
        let g = generation.label();
        let path = match generation {
            Generation::Current => format!("prod/{slug}.yaml"),
            Generation::Previous | Generation::Next => format!("prod/{slug}-{g}.yaml"),
        };
        let tag = match generation {
            Generation::Previous => "v2026.05.2",
            Generation::Current => "v2026.06.0",
            Generation::Next => "v2026.06.1",
        };
        let commit = digest(&format!("{model}/commit/{g}"));
        let content = format!(
            "# {model} as NEAR's compose manager deploys it (teewatch simulator, {g})\nservices:\n  vllm:\n    image: vllm/vllm-openai@sha256:{}\n    command: [\"--model\", \"{model}\"]\n  vllm-proxy:\n    image: nearaidev/vllm-proxy@sha256:{}\n    depends_on: [vllm]\n",
            hexutil::lower(&digest(&format!("{model}/vllm/{g}"))),
            hexutil::lower(&digest(&format!("{model}/vllm-proxy/{g}"))),
        );
        ComposeFile {
            path,
            tag: tag.to_string(),
            commit: hexutil::lower(commit.get(..20).unwrap_or(&commit)),
            content,
        }
    }

    /// SHA-256 of the file's bytes: `compose_up`'s `file_sha256`.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.content.as_bytes()).into()
    }
}

/// What happened on a node beyond its normal deployment (each a simulator fault).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogEvents {
    /// A new `compose_up` of the next compose file (a legitimate redeploy).
    pub redeploy: bool,
    /// A `docker_restart` of the model's container.
    pub restart: bool,
}

/// An ISO 8601 timestamp on the simulated deployment day, `minutes` after 07:00 UTC, offset by
/// the node so that each node's manager has a log of its own.
fn timestamp(node: usize, minutes: usize, seconds: usize) -> String {
    let total = 7 * 60 + (node % 60) + minutes;
    format!(
        "2026-06-10T{:02}:{:02}:{:02}Z",
        (total / 60) % 24,
        total % 60,
        seconds % 60
    )
}

fn action(members: &[(&str, Value)]) -> Map<String, Value> {
    members
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn text(value: &str) -> Value {
    Value::String(value.to_string())
}

fn services() -> Value {
    Value::Array(SERVICES.iter().map(|s| text(s)).collect())
}

/// The `compose_up` that deploys `file`.
fn compose_up(at: String, file: &ComposeFile) -> Map<String, Value> {
    action(&[
        ("timestamp", text(&at)),
        ("action", text("compose_up")),
        ("tag", text(&file.tag)),
        ("commit", text(&file.commit)),
        ("file", text(&file.path)),
        ("file_sha256", text(&hexutil::lower(&file.sha256()))),
        ("services", services()),
    ])
}

/// The action log of `model`'s compose manager on node `node`, in the manager's own member order:
/// start, the kernel check, the previous deployment, its teardown and the current deployment,
/// then whatever `events` adds.
pub fn action_log(model: &str, node: usize, events: LogEvents) -> Vec<Map<String, Value>> {
    let mut log = vec![
        // `version` is a member outside the manager's known list: it must follow them.
        action(&[
            ("timestamp", text(&timestamp(node, 0, 2))),
            ("action", text("compose_manager_started")),
            ("version", text("0.4.2")),
        ]),
        action(&[
            ("timestamp", text(&timestamp(node, 0, 3))),
            ("action", text("kernel_algif_blacklist_ok")),
        ]),
        compose_up(
            timestamp(node, 1, 15),
            &ComposeFile::of(model, Generation::Previous),
        ),
        action(&[
            ("timestamp", text(&timestamp(node, 38, 40))),
            ("action", text("compose_down")),
            ("services", services()),
        ]),
        compose_up(
            timestamp(node, 39, 5),
            &ComposeFile::of(model, Generation::Current),
        ),
    ];
    if events.restart {
        log.push(action(&[
            ("timestamp", text(&timestamp(node, 52, 30))),
            ("action", text("docker_restart")),
            ("container", text("vllm")),
        ]));
    }
    if events.redeploy {
        log.push(compose_up(
            timestamp(node, 58, 12),
            &ComposeFile::of(model, Generation::Next),
        ));
    }
    log
}

/// The action's members in the compose manager's order: the known ones first, in
/// [`MANAGER_MEMBER_ORDER`], then any other in the order the action carries it.
pub fn in_manager_order(action: &Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = MANAGER_MEMBER_ORDER
        .iter()
        .filter_map(|k| action.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect();
    for (k, v) in action {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The action's members sorted by key (byte order, as Python's `sort_keys` for ASCII keys).
pub fn sorted_by_key(action: &Map<String, Value>) -> Map<String, Value> {
    let mut members: Vec<(&String, &Value)> = action.iter().collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    members
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// SHA-256 of the actions as one compact JSON array (`serde_json::to_string`, no spaces), in the
/// member order the maps carry.
pub fn actions_hash(actions: &[Map<String, Value>]) -> Result<[u8; 32], String> {
    let array = Value::Array(actions.iter().cloned().map(Value::Object).collect());
    let compact = serde_json::to_string(&array).map_err(|e| e.to_string())?;
    Ok(Sha256::digest(compact.as_bytes()).into())
}

/// The actions as served and the hash the quote binds.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedActions {
    pub actions: Vec<Value>,
    pub actions_hash: [u8; 32],
}

/// Replaces the latest `compose_up`'s `file_sha256` with that of a compose file nobody pinned.
fn deploy_unpinned(log: &mut [Map<String, Value>], model: &str) {
    let latest = log
        .iter_mut()
        .rev()
        .find(|a| a.get("action").and_then(Value::as_str) == Some("compose_up"));
    if let Some(up) = latest {
        let mut unpinned = ComposeFile::of(model, Generation::Current);
        unpinned.content.push_str("    privileged: true\n");
        up.insert(
            "file_sha256".to_string(),
            text(&hexutil::lower(&unpinned.sha256())),
        );
    }
}

/// The log as `order` hashes and serves it. With `tampered`, the manager hashed the log it really
/// ran, whose latest `compose_up` deployed a file nobody pinned, and the answer was edited
/// afterwards to name the usual file: the served actions look healthy, `actions_hash` (and the
/// quote) no longer match them.
pub fn serve(
    log: &[Map<String, Value>],
    order: ActionsOrder,
    tampered: Option<&str>,
) -> Result<ServedActions, String> {
    let arrange = |sorted: bool, a: &Map<String, Value>| {
        if sorted {
            sorted_by_key(a)
        } else {
            in_manager_order(a)
        }
    };
    let mut ran = log.to_vec();
    if let Some(model) = tampered {
        deploy_unpinned(&mut ran, model);
    }
    let hashed: Vec<Map<String, Value>> = ran
        .iter()
        .map(|a| arrange(order.hashes_sorted(), a))
        .collect();
    let actions = log
        .iter()
        .map(|a| Value::Object(arrange(order.serves_sorted(), a)))
        .collect();
    Ok(ServedActions {
        actions,
        actions_hash: actions_hash(&hashed)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn order_names_round_trip() {
        for order in ALL_ACTIONS_ORDERS {
            assert_eq!(order.name().parse::<ActionsOrder>(), Ok(order));
        }
        assert!("alphabetical".parse::<ActionsOrder>().is_err());
        assert_eq!(ActionsOrder::default(), ActionsOrder::Manager);
    }

    #[test]
    fn compose_files_are_deterministic_and_distinct() {
        let current = ComposeFile::of("TEE/sim-model-0", Generation::Current);
        assert_eq!(
            current,
            ComposeFile::of("TEE/sim-model-0", Generation::Current)
        );
        assert_eq!(current.path, "prod/sim-model-0.yaml");
        assert_eq!(current.commit.len(), 40);
        let next = ComposeFile::of("TEE/sim-model-0", Generation::Next);
        assert_ne!(next.path, current.path);
        assert_ne!(next.sha256(), current.sha256());
        assert_ne!(
            ComposeFile::of("TEE/sim-model-1", Generation::Current).sha256(),
            current.sha256()
        );
    }

    #[test]
    fn members_reorder_as_named() {
        let log = action_log("TEE/m", 0, LogEvents::default());
        let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&log[0]),
            ["timestamp", "action", "version"].map(String::from)
        );
        assert_eq!(
            keys(&sorted_by_key(&log[4])),
            [
                "action",
                "commit",
                "file",
                "file_sha256",
                "services",
                "tag",
                "timestamp"
            ]
            .map(String::from)
        );
        let sorted = sorted_by_key(&log[0]);
        assert_eq!(
            keys(&in_manager_order(&sorted)),
            ["timestamp", "action", "version"].map(String::from)
        );
    }
}
