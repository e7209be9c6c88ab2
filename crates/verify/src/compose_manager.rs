//! NEAR AI's compose manager: the process inside a model node's TD that deploys the model's
//! containers at run time, and the attestation of its action log.
//!
//! A NEAR node's boot-time `compose_hash` names the compose manager, not the model: the software
//! actually serving is whatever the latest `compose_up` action deployed. The
//! `compose_manager_attestation` carries that action log with a quote of **the same TD** as the
//! model node (its MRTD, MRCONFIGID and RTMR0–3 equal the node's), whose REPORTDATA is
//! `actions_hash ‖ nonce`, `actions_hash` being SHA-256 of the `actions` array as compact JSON.
//! Real answers were hashed in one of three member orders (REFERENCE.md §1): the compose
//! manager's own order (even where the answer lists members sorted), the order received, or
//! members sorted by key. Each is a one-to-one encoding of the same list, so any is accepted and
//! the verdict says which matched. Once the binding holds, the log says what runs: the deployed
//! compose file's SHA-256, its file name, tag and commit, and the last action.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::hexutil;
use super::report::Part;
use super::verdict::{Observed, Outcome, Source};

/// The member order the compose manager itself writes an action in; other members follow in
/// the order received.
pub const MANAGER_MEMBER_ORDER: [&str; 8] = [
    "timestamp",
    "action",
    "tag",
    "commit",
    "file",
    "file_sha256",
    "container",
    "services",
];

/// The serialisations of the action list that real answers were hashed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOrder {
    /// Each action's members in [`MANAGER_MEMBER_ORDER`], then the others as received.
    Manager,
    /// Each action's members as the answer lists them.
    AsReceived,
    /// Members sorted by key, at every depth.
    Sorted,
}

impl MemberOrder {
    pub const ALL: [MemberOrder; 3] = [
        MemberOrder::Manager,
        MemberOrder::AsReceived,
        MemberOrder::Sorted,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            MemberOrder::Manager => "the compose manager's member order",
            MemberOrder::AsReceived => "the member order received",
            MemberOrder::Sorted => "members sorted by key",
        }
    }
}

/// The action list as compact JSON in one member order.
pub fn serialise_actions(actions: &[Value], order: MemberOrder) -> String {
    let list: Vec<Value> = actions
        .iter()
        .map(|action| match order {
            MemberOrder::AsReceived => action.clone(),
            MemberOrder::Sorted => sorted(action),
            MemberOrder::Manager => manager_ordered(action),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_default()
}

/// SHA-256 of the action list in one member order.
pub fn actions_hash(actions: &[Value], order: MemberOrder) -> [u8; 32] {
    Sha256::digest(serialise_actions(actions, order).as_bytes()).into()
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                if let Some(member) = map.get(key) {
                    out.insert(key.clone(), sorted(member));
                }
            }
            Value::Object(out)
        }
        Value::Array(list) => Value::Array(list.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn manager_ordered(value: &Value) -> Value {
    let Value::Object(map) = value else {
        return value.clone();
    };
    let mut out = Map::new();
    for key in MANAGER_MEMBER_ORDER {
        if let Some(member) = map.get(key) {
            out.insert(key.to_string(), member.clone());
        }
    }
    for (key, member) in map {
        if !out.contains_key(key) {
            out.insert(key.clone(), member.clone());
        }
    }
    Value::Object(out)
}

/// The compose manager's `actions`, or why they cannot be read.
pub fn actions<'a>(part: &'a Part<'_>) -> Result<&'a [Value], String> {
    match part.fields.get("actions") {
        Some(Value::Array(list)) => Ok(list),
        None | Some(Value::Null) => {
            Err("the compose manager attestation carries no `actions` list".into())
        }
        Some(other) => Err(format!(
            "`actions`: expected a list, found {}",
            super::bundle::json_kind(other)
        )),
    }
}

/// `report_data_binding` of a compose manager: REPORTDATA = `actions_hash` ‖ this check's nonce,
/// with `actions_hash` recomputed from the served actions.
pub fn judge_binding(part: &Part<'_>, report_data: &[u8; 64], nonce: &[u8; 32]) -> Outcome {
    let actions = match actions(part) {
        Ok(list) => list,
        Err(reason) => return Outcome::Fail(reason),
    };
    let (first, second) = report_data.split_at(32);
    // 1. The first half is the hash of the actions served, in one of the known member orders.
    let hashes: Vec<(MemberOrder, [u8; 32])> = MemberOrder::ALL
        .iter()
        .map(|order| (*order, actions_hash(actions, *order)))
        .collect();
    let Some((order, _)) = hashes.iter().find(|(_, hash)| hash.as_slice() == first) else {
        let tried: Vec<String> = hashes
            .iter()
            .map(|(order, hash)| format!("{} {}", order.describe(), hexutil::lower(hash)))
            .collect();
        return Outcome::Fail(format!(
            "reportdata[0..32]: expected sha256 of the {} actions served as compact json ({}), found {}: the action log is not the one the quote binds",
            actions.len(),
            tried.join(", "),
            hexutil::lower(first)
        ));
    };
    // 2. The stated `actions_hash`, when given, is that same hash.
    if let Some(stated) = part.fields.get("actions_hash").filter(|v| !v.is_null()) {
        let stated_bytes = stated.as_str().and_then(|s| hexutil::decode(s).ok());
        if stated_bytes.as_deref() != Some(first) {
            return Outcome::Fail(format!(
                "actions_hash: expected {} (reportdata[0..32]), found {stated}",
                hexutil::lower(first)
            ));
        }
    }
    // 3. The second half is this check's nonce.
    if second != nonce {
        return Outcome::Fail(format!(
            "reportdata[32..64]: expected this check's nonce {}, found {}",
            hexutil::lower(nonce),
            hexutil::lower(second)
        ));
    }
    Outcome::Pass(format!(
        "reportdata = sha256 of the {} actions (compact json, {}) ‖ this check's nonce",
        actions.len(),
        order.describe()
    ))
}

/// The registers that make two quotes the same TD.
const SAME_TD_FIELDS: [&str; 6] = ["mrtd", "mrconfigid", "rtmr0", "rtmr1", "rtmr2", "rtmr3"];

/// `same_td`: the compose manager's quote comes from the TD of the part it belongs to, compared
/// on the registers both quotes' bodies were read with.
pub fn judge_same_td(scope: &str, owner: &str, observed: &[Observed]) -> Outcome {
    let value = |scope: &str, field: &str| {
        observed
            .iter()
            .find(|o| o.scope == scope && o.field == field && o.source == Source::Quote)
            .map(|o| o.value.as_str())
    };
    let owner_label = if owner.is_empty() {
        "the node that answered"
    } else {
        owner
    };
    let mut differences = Vec::new();
    for field in SAME_TD_FIELDS {
        match (value(owner, field), value(scope, field)) {
            (None, _) => {
                return Outcome::Unknown(format!(
                    "the quote of {owner_label} was not read, so the compose manager's td cannot be compared with it"
                ));
            }
            (Some(_), None) => {
                return Outcome::Unknown("the compose manager's quote was not read".into());
            }
            (Some(theirs), Some(ours)) if theirs != ours => differences.push(format!(
                "{field}: expected {theirs} ({owner_label}), found {ours}"
            )),
            _ => {}
        }
    }
    if differences.is_empty() {
        Outcome::Pass(format!(
            "mrtd, mrconfigid and rtmr0-3 equal those of {owner_label}: the compose manager runs in its td"
        ))
    } else {
        Outcome::Fail(format!(
            "the compose manager's quote comes from another td than {owner_label}: {}",
            differences.join("; ")
        ))
    }
}

/// Text of a JSON scalar as a measurement (strings as they are, numbers as written).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What the action log says runs: the latest `compose_up`'s file hash, file, tag and commit, the
/// number of actions and the last one, as `(field, value)` pairs.
///
/// The last action is written `<td>/<action>@<timestamp>`, `<td>` being the first 8 bytes of the
/// TD's `instance-id` (or `unknown`): each node keeps its own log, so a new action means something
/// only against the same node's earlier one (drift compares them per node).
pub fn deployed(actions: &[Value], instance_id: Option<&[u8]>) -> Vec<(&'static str, String)> {
    let mut out = vec![("compose_manager_actions", actions.len().to_string())];
    if let Some(last) = actions.last() {
        let action = text(last.get("action")).unwrap_or_else(|| "?".into());
        let at = text(last.get("timestamp")).unwrap_or_else(|| "?".into());
        let td = instance_id
            .map(|id| hexutil::lower(id.get(..8).unwrap_or(id)))
            .unwrap_or_else(|| "unknown".into());
        out.push(("compose_manager_last_action", format!("{td}/{action}@{at}")));
    }
    let latest_up = actions
        .iter()
        .rev()
        .find(|a| a.get("action").and_then(Value::as_str) == Some("compose_up"));
    if let Some(up) = latest_up {
        if let Some(sha) = up
            .get("file_sha256")
            .and_then(Value::as_str)
            .and_then(|s| hexutil::decode(s).ok())
            .filter(|b| b.len() == 32)
        {
            out.push(("deployed_compose_sha256", hexutil::lower(&sha)));
        }
        for (field, key) in [
            ("deployed_compose_file", "file"),
            ("deployed_tag", "tag"),
            ("deployed_commit", "commit"),
        ] {
            if let Some(value) = text(up.get(key)).filter(|v| !v.is_empty()) {
                out.push((field, value));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::report::{PartRole, TlsPosition};
    use crate::verdict::State;

    fn log() -> Vec<Value> {
        vec![
            json!({"timestamp": "2026-06-10T08:00:00Z", "action": "compose_manager_started"}),
            json!({"action": "compose_up", "timestamp": "2026-06-10T08:00:05Z", "file_sha256": "aa".repeat(32), "file": "prod/a.yaml", "tag": "v1", "commit": "abc"}),
        ]
    }

    fn part(fields: &Map<String, Value>) -> Part<'_> {
        Part::with_role(
            "compose_manager".into(),
            fields,
            PartRole::ComposeManager,
            TlsPosition::Behind,
        )
    }

    fn report_data(hash: [u8; 32], nonce: [u8; 32]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&hash);
        out[32..].copy_from_slice(&nonce);
        out
    }

    #[test]
    fn each_member_order_is_one_serialisation() {
        let actions = log();
        assert_eq!(
            serialise_actions(&actions[1..], MemberOrder::Manager),
            format!(
                r#"[{{"timestamp":"2026-06-10T08:00:05Z","action":"compose_up","tag":"v1","commit":"abc","file":"prod/a.yaml","file_sha256":"{}"}}]"#,
                "aa".repeat(32)
            )
        );
        assert_eq!(
            serialise_actions(&actions[1..], MemberOrder::Sorted),
            format!(
                r#"[{{"action":"compose_up","commit":"abc","file":"prod/a.yaml","file_sha256":"{}","tag":"v1","timestamp":"2026-06-10T08:00:05Z"}}]"#,
                "aa".repeat(32)
            )
        );
        assert!(
            serialise_actions(&actions[1..], MemberOrder::AsReceived)
                .starts_with(r#"[{"action":"compose_up","timestamp""#)
        );
    }

    #[test]
    fn the_binding_accepts_any_known_order_and_says_which() {
        let nonce = [7u8; 32];
        for order in MemberOrder::ALL {
            let mut fields = Map::new();
            fields.insert("actions".into(), Value::Array(log()));
            let rd = report_data(actions_hash(&log(), order), nonce);
            let outcome = judge_binding(&part(&fields), &rd, &nonce);
            assert_eq!(outcome.state(), State::Pass, "{order:?}: {outcome:?}");
            assert!(
                outcome.reason().contains(order.describe())
                    || (order == MemberOrder::AsReceived
                        && actions_hash(&log(), MemberOrder::Manager)
                            == actions_hash(&log(), order)),
                "{order:?}: {outcome:?}"
            );
        }
    }

    #[test]
    fn an_edited_action_a_wrong_nonce_and_a_wrong_stated_hash_fail() {
        let nonce = [7u8; 32];
        let rd = report_data(actions_hash(&log(), MemberOrder::Manager), nonce);
        let mut edited = log();
        edited[1]["file_sha256"] = json!("bb".repeat(32));
        let mut fields = Map::new();
        fields.insert("actions".into(), Value::Array(edited));
        let outcome = judge_binding(&part(&fields), &rd, &nonce);
        assert!(
            matches!(&outcome, Outcome::Fail(r) if r.starts_with("reportdata[0..32]: expected sha256 of the 2 actions served")),
            "{outcome:?}"
        );

        let mut fields = Map::new();
        fields.insert("actions".into(), Value::Array(log()));
        let outcome = judge_binding(&part(&fields), &rd, &[8u8; 32]);
        assert!(
            matches!(&outcome, Outcome::Fail(r) if r.starts_with("reportdata[32..64]: expected this check's nonce 0808")),
            "{outcome:?}"
        );
        fields.insert("actions_hash".into(), json!("cc".repeat(32)));
        let outcome = judge_binding(&part(&fields), &rd, &nonce);
        assert!(
            matches!(&outcome, Outcome::Fail(r) if r.starts_with("actions_hash: expected")),
            "{outcome:?}"
        );
    }

    #[test]
    fn the_deployed_software_is_the_latest_compose_up() {
        let mut actions = log();
        actions.push(
            json!({"timestamp": 1718000000, "action": "docker_restart", "container": "vllm"}),
        );
        let found = deployed(&actions, Some(&[0xab; 20]));
        assert!(found.contains(&("compose_manager_actions", "3".into())));
        assert!(found.contains(&(
            "compose_manager_last_action",
            "abababababababab/docker_restart@1718000000".into()
        )));
        assert!(found.contains(&("deployed_compose_sha256", "aa".repeat(32))));
        assert!(found.contains(&("deployed_compose_file", "prod/a.yaml".into())));
        assert!(found.contains(&("deployed_tag", "v1".into())));
        assert!(found.contains(&("deployed_commit", "abc".into())));
    }

    #[test]
    fn same_td_compares_every_register_with_the_owner() {
        let obs = |scope: &str, field: &str, value: &str| Observed {
            scope: scope.into(),
            field: field.into(),
            value: value.into(),
            source: Source::Quote,
        };
        let mut observed = Vec::new();
        for field in SAME_TD_FIELDS {
            observed.push(obs("model:0", field, "11"));
            observed.push(obs("model:0/compose_manager", field, "11"));
        }
        let outcome = judge_same_td("model:0/compose_manager", "model:0", &observed);
        assert_eq!(outcome.state(), State::Pass, "{outcome:?}");
        observed.last_mut().unwrap().value = "22".into();
        let outcome = judge_same_td("model:0/compose_manager", "model:0", &observed);
        assert!(
            matches!(&outcome, Outcome::Fail(r) if r.ends_with("rtmr3: expected 11 (model:0), found 22")),
            "{outcome:?}"
        );
    }
}
