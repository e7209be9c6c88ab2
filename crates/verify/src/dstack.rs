//! The dstack event log: replaying RTMR0–3 from the events and reading the app identity out of the
//! runtime events whose replay matched the quote.
//!
//! RTMRn is the fold `SHA384(acc ‖ digest)` from 48 zero bytes over the events measured into
//! register n, in order. Runtime events (type 0x08000001, RTMR3) are never taken at their word:
//! their digests are recomputed from name and payload (v1: `SHA384(le32(type) ‖ ":" ‖ name ‖ ":"
//! ‖ payload)`; v2: SHA384 of the RFC 8785 canonical JSON `{name, payload, type}`). Boot events
//! (RTMR0–2) are firmware measurements whose digests cannot be recomputed from the log; they are
//! replayed as given and must reproduce the quote's registers.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384};

use super::bundle::json_kind;
use super::hexutil;
use super::verdict::Outcome;

/// Event type of dstack runtime events.
pub const RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;

/// One event of the log, with its payload decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub imr: usize,
    pub event_type: u32,
    /// The digest as supplied (may be empty for runtime events).
    pub supplied_digest: Vec<u8>,
    pub name: String,
    pub payload: Vec<u8>,
    /// 2 for events hashed over canonical JSON, else 1.
    pub version: u64,
}

/// Why an event log cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("event log: expected a list of events or a json string of one, found {0}")]
    NotAList(&'static str),
    #[error("event log is a string that is not json: {0}")]
    BadJson(String),
    #[error("event {index}: {reason}")]
    BadEvent { index: usize, reason: String },
}

/// Reads an event log given as a JSON list or as a string holding one.
pub fn parse_event_log(value: &Value) -> Result<Vec<Event>, EventLogError> {
    let parsed;
    let list = match value {
        Value::Array(list) => list,
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| EventLogError::BadJson(e.to_string()))?;
            match &parsed {
                Value::Array(list) => list,
                other => return Err(EventLogError::NotAList(json_kind(other))),
            }
        }
        other => return Err(EventLogError::NotAList(json_kind(other))),
    };
    list.iter()
        .enumerate()
        .map(|(index, v)| {
            parse_event(v).map_err(|reason| EventLogError::BadEvent { index, reason })
        })
        .collect()
}

fn parse_event(value: &Value) -> Result<Event, String> {
    let number = |key: &str| -> Result<u64, String> {
        value
            .get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`{key}` missing or not a non-negative integer"))
    };
    let hex_field = |key: &str| -> Result<Vec<u8>, String> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => {
                hexutil::decode(s).map_err(|e| format!("`{key}` is not hex: {e}"))
            }
            Some(other) => Err(format!(
                "`{key}`: expected a hex string, found {}",
                json_kind(other)
            )),
        }
    };
    let imr = number("imr")?;
    let imr = usize::try_from(imr)
        .ok()
        .filter(|i| *i < 4)
        .ok_or_else(|| format!("`imr`: expected 0 to 3, found {imr}"))?;
    let event_type = u32::try_from(number("event_type")?)
        .map_err(|_| "`event_type` does not fit in 32 bits".to_string())?;
    let name = match value.get("event") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "`event`: expected a string, found {}",
                json_kind(other)
            ));
        }
    };
    Ok(Event {
        imr,
        event_type,
        supplied_digest: hex_field("digest")?,
        name,
        payload: hex_field("event_payload")?,
        version: value.get("version").and_then(Value::as_u64).unwrap_or(1),
    })
}

/// The digest of a runtime event, recomputed from its name and payload.
pub fn runtime_event_digest(event: &Event) -> Vec<u8> {
    if event.version >= 2 {
        #[derive(Serialize)]
        struct Canonical<'a> {
            name: &'a str,
            payload: String,
            #[serde(rename = "type")]
            event_type: u32,
        }
        let canonical = Canonical {
            name: &event.name,
            payload: hexutil::lower(&event.payload),
            event_type: event.event_type,
        };
        let text = serde_jcs::to_string(&canonical).unwrap_or_default();
        Sha384::digest(text.as_bytes()).to_vec()
    } else {
        let mut hasher = Sha384::new();
        hasher.update(event.event_type.to_le_bytes());
        hasher.update(b":");
        hasher.update(event.name.as_bytes());
        hasher.update(b":");
        hasher.update(&event.payload);
        hasher.finalize().to_vec()
    }
}

/// The registers replayed from a log, and what the replay noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub rtmr: [[u8; 48]; 4],
    /// How many events were measured into each register.
    pub event_counts: [usize; 4],
    /// Problems with individual events (an unusable boot digest, a supplied runtime digest that
    /// disagrees with the recomputed one).
    pub problems: Vec<String>,
}

/// Replays RTMR0–3 from the events.
pub fn replay(events: &[Event]) -> Replay {
    let mut rtmr = [[0u8; 48]; 4];
    let mut event_counts = [0usize; 4];
    let mut problems = Vec::new();
    for (index, event) in events.iter().enumerate() {
        // RTMR3 is where dstack's OS and application write runtime events, whose digests are
        // recomputed here. Another type on imr 3 would be folded with the digest the response
        // supplies, letting a provider keep a genuine event's digest while renaming it.
        if event.imr == 3 && event.event_type != RUNTIME_EVENT_TYPE {
            problems.push(format!(
                "event {index} ({}) on imr 3: expected a runtime event (type 0x{RUNTIME_EVENT_TYPE:08x}), found type 0x{:08x}",
                if event.name.is_empty() { "unnamed" } else { event.name.as_str() },
                event.event_type
            ));
        }
        let digest = if event.event_type == RUNTIME_EVENT_TYPE {
            let recomputed = runtime_event_digest(event);
            if !event.supplied_digest.is_empty() && event.supplied_digest != recomputed {
                problems.push(format!(
                    "event {index} ({}): supplied digest {} differs from the digest recomputed from its payload {}",
                    event.name,
                    hexutil::lower(&event.supplied_digest),
                    hexutil::lower(&recomputed)
                ));
            }
            recomputed
        } else {
            if event.supplied_digest.len() != 48 {
                problems.push(format!(
                    "event {index} (type 0x{:08x}, imr {}): expected a 48-byte digest, found {} bytes",
                    event.event_type,
                    event.imr,
                    event.supplied_digest.len()
                ));
            }
            event.supplied_digest.clone()
        };
        if let (Some(acc), Some(count)) = (rtmr.get_mut(event.imr), event_counts.get_mut(event.imr))
        {
            let mut hasher = Sha384::new();
            hasher.update(*acc);
            hasher.update(&digest);
            acc.copy_from_slice(&hasher.finalize());
            *count += 1;
        }
    }
    Replay {
        rtmr,
        event_counts,
        problems,
    }
}

/// The runtime event that ends the OS's part of RTMR3: after it, dstack's guest agent lets the
/// application extend RTMR3 with events of any name.
pub const SYSTEM_READY: &str = "system-ready";

/// The names the guest OS writes before `system-ready`. Each may appear once: a second event of
/// one of these names, or one after `system-ready` (where the application writes), is an attempt
/// to pass an application's event off as the OS's.
pub const OS_EVENT_NAMES: [&str; 12] = [
    "system-preparing",
    "app-id",
    "compose-hash",
    "instance-id",
    "boot-mr-done",
    "mr-kms",
    "mr-image",
    "os-image-hash",
    "key-provider",
    "storage-fs",
    "init-script-hash",
    SYSTEM_READY,
];

/// The app identity the OS wrote into RTMR3 before `system-ready`, and the events the
/// application added after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeIdentity {
    pub compose_hash: Option<Vec<u8>>,
    pub app_id: Option<Vec<u8>>,
    pub instance_id: Option<Vec<u8>>,
    pub os_image_hash: Option<Vec<u8>>,
    /// The `name` of the key-provider event's JSON payload (`kms`, `local-sgx`…).
    pub key_provider: Option<String>,
    /// Whether the log has a `system-ready` event.
    pub system_ready: bool,
    /// Names of the events after `system-ready`: the application's, never identity.
    pub application_events: Vec<String>,
}

/// Why the identity events of RTMR3 cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "two {name} events (events {first} and {second}): each os event is written once, a second one is an application posing as the os"
    )]
    Duplicate {
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "event {index} ({name}) comes after system-ready, where the application writes: an os event name there is an application posing as the os"
    )]
    AfterSystemReady { name: String, index: usize },
}

/// Reads the identity events of RTMR3 (runtime events on imr 3, in log order).
///
/// Only events before `system-ready` are the OS's; a second event of an OS name anywhere, or an
/// OS name after `system-ready`, is an error, never a tie resolved by order.
pub fn runtime_identity(events: &[Event]) -> Result<RuntimeIdentity, IdentityError> {
    let mut id = RuntimeIdentity::default();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (index, event) in events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.imr == 3 && e.event_type == RUNTIME_EVENT_TYPE)
    {
        let name = event.name.as_str();
        if let Some(os_name) = OS_EVENT_NAMES.iter().find(|n| **n == name) {
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == os_name) {
                return Err(IdentityError::Duplicate {
                    name: name.to_string(),
                    first: *first,
                    second: index,
                });
            }
            if id.system_ready {
                return Err(IdentityError::AfterSystemReady {
                    name: name.to_string(),
                    index,
                });
            }
            seen.push((os_name, index));
        } else if id.system_ready {
            id.application_events.push(name.to_string());
            continue;
        }
        match name {
            "compose-hash" => id.compose_hash = Some(event.payload.clone()),
            "app-id" => id.app_id = Some(event.payload.clone()),
            "instance-id" => id.instance_id = Some(event.payload.clone()),
            "os-image-hash" => id.os_image_hash = Some(event.payload.clone()),
            "key-provider" => id.key_provider = key_provider_name(&event.payload),
            SYSTEM_READY => id.system_ready = true,
            _ => {}
        }
    }
    Ok(id)
}

/// The `name` member of a key-provider payload (`{"name": "kms", "id": …}`).
fn key_provider_name(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    value.get("name")?.as_str().map(str::to_string)
}

/// SHA-256 of the app compose text, the value the compose-hash event and MRCONFIGID carry.
pub fn compose_hash(app_compose: &str) -> [u8; 32] {
    Sha256::digest(app_compose.as_bytes()).into()
}

/// MRCONFIGID as newer dstack sets it: 0x01 ‖ sha256(app_compose) ‖ zero padding.
pub fn expected_mrconfigid(compose_hash: &[u8; 32]) -> [u8; 48] {
    let mut out = [0u8; 48];
    if let Some(first) = out.first_mut() {
        *first = 0x01;
    }
    if let Some(rest) = out.get_mut(1..33) {
        rest.copy_from_slice(compose_hash);
    }
    out
}

/// `compose_binding`: the app compose hashes to the replayed compose-hash event, and MRCONFIGID,
/// when non-zero, is 0x01 ‖ sha256(app_compose) ‖ zeros. With MRCONFIGID all zero (older dstack)
/// the compose is bound through the replayed RTMR3 event alone.
pub fn compose_binding(
    app_compose: Option<&str>,
    replayed_compose_event: Option<&[u8]>,
    mrconfigid: &[u8; 48],
) -> Outcome {
    let Some(app_compose) = app_compose else {
        return Outcome::Fail(
            "the report carries no app_compose (info.tcb_info.app_compose)".into(),
        );
    };
    let computed = compose_hash(app_compose);
    let mut facts = Vec::new();
    match replayed_compose_event {
        Some(event) if event == computed.as_slice() => {
            facts.push("sha256(app_compose) equals the replayed compose-hash event".to_string())
        }
        Some(event) => {
            return Outcome::Fail(format!(
                "compose-hash event: expected sha256(app_compose) {}, found {}",
                hexutil::lower(&computed),
                hexutil::lower(event)
            ));
        }
        None => return Outcome::Fail("the replayed event log has no compose-hash event".into()),
    }
    if hexutil::is_zero(mrconfigid) {
        facts.push("mrconfigid is zero (compose bound through rtmr3 only)".to_string());
    } else {
        let expected = expected_mrconfigid(&computed);
        if *mrconfigid != expected {
            return Outcome::Fail(format!(
                "mrconfigid: expected {} (0x01 ‖ sha256(app_compose)), found {}",
                hexutil::lower(&expected),
                hexutil::lower(mrconfigid)
            ));
        }
        facts.push("mrconfigid = 0x01 ‖ sha256(app_compose)".to_string());
    }
    Outcome::Pass(facts.join("; "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::verdict::State;

    fn runtime(name: &str, payload: &[u8], digest: &[u8]) -> Event {
        Event {
            imr: 3,
            event_type: RUNTIME_EVENT_TYPE,
            supplied_digest: digest.to_vec(),
            name: name.into(),
            payload: payload.to_vec(),
            version: 1,
        }
    }

    /// The dstack fixture's first runtime event, with the digest dstack itself logged for it.
    #[test]
    fn v1_runtime_digest_reproduces_dstack_fixture() {
        let event = runtime("system-preparing", b"", b"");
        assert_eq!(
            hex::encode(runtime_event_digest(&event)),
            "f9974020ef507068183313d0ca808e0d1ca9b2d1ad0c61f5784e7157c362c06536f5ddacdad4451693f48fcc72fff624"
        );
    }

    #[test]
    fn v2_runtime_digest_hashes_canonical_json() {
        let mut event = runtime("app-id", &[0xAB, 0x01], b"");
        event.version = 2;
        let expected = Sha384::digest(br#"{"name":"app-id","payload":"ab01","type":134217729}"#);
        assert_eq!(runtime_event_digest(&event), expected.to_vec());
        event.version = 1;
        assert_ne!(runtime_event_digest(&event), expected.to_vec());
    }

    #[test]
    fn supplied_runtime_digest_that_disagrees_is_a_problem() {
        let replay = replay(&[runtime("app-id", b"x", &[7u8; 48])]);
        assert_eq!(replay.problems.len(), 1);
        assert!(replay.problems[0].contains("differs from the digest recomputed"));
    }

    #[test]
    fn boot_event_without_a_48_byte_digest_is_a_problem() {
        let event = Event {
            imr: 0,
            event_type: 4,
            supplied_digest: vec![1, 2, 3],
            name: String::new(),
            payload: vec![],
            version: 1,
        };
        assert!(replay(&[event]).problems[0].contains("expected a 48-byte digest, found 3 bytes"));
    }

    fn os_log() -> Vec<Event> {
        vec![
            runtime("system-preparing", b"", b""),
            runtime("app-id", &[9; 20], b""),
            runtime("compose-hash", &[1; 32], b""),
            runtime("key-provider", br#"{"name":"kms","id":"ab"}"#, b""),
            runtime("system-ready", b"", b""),
            runtime("LIUM_MINER_HOTKEY", b"5F", b""),
        ]
    }

    #[test]
    fn identity_is_read_before_system_ready_and_app_events_after() {
        let id = runtime_identity(&os_log()).unwrap();
        assert_eq!(id.compose_hash, Some(vec![1; 32]));
        assert_eq!(id.app_id, Some(vec![9; 20]));
        assert_eq!(id.key_provider.as_deref(), Some("kms"));
        assert!(id.system_ready);
        assert_eq!(id.application_events, ["LIUM_MINER_HOTKEY"]);
    }

    #[test]
    fn a_second_identity_event_is_an_error_not_a_tie() {
        let mut events = os_log();
        events.insert(3, runtime("compose-hash", &[2; 32], b""));
        assert_eq!(
            runtime_identity(&events).unwrap_err().to_string(),
            "two compose-hash events (events 2 and 3): each os event is written once, a second one is an application posing as the os"
        );
    }

    #[test]
    fn an_identity_name_after_system_ready_is_an_error() {
        let mut events = os_log();
        events.push(runtime("os-image-hash", &[3; 32], b""));
        assert!(matches!(
            runtime_identity(&events),
            Err(IdentityError::AfterSystemReady { index: 6, .. })
        ));
    }

    #[test]
    fn another_event_type_on_imr_3_is_a_replay_problem() {
        let mut event = runtime("compose-hash", &[1; 32], &[5; 48]);
        event.event_type = 4;
        let replay = replay(&[event]);
        assert_eq!(
            replay.problems,
            [
                "event 0 (compose-hash) on imr 3: expected a runtime event (type 0x08000001), found type 0x00000004"
            ]
        );
    }

    #[test]
    fn compose_binding_with_zero_mrconfigid_uses_the_event() {
        let compose = "{\"services\":{}}";
        let hash = compose_hash(compose);
        let outcome = compose_binding(Some(compose), Some(&hash), &[0; 48]);
        assert_eq!(outcome.state(), State::Pass, "{outcome:?}");
    }

    #[test]
    fn compose_binding_with_mrconfigid_form() {
        let compose = "{\"services\":{}}";
        let hash = compose_hash(compose);
        let good = expected_mrconfigid(&hash);
        assert_eq!(
            compose_binding(Some(compose), Some(&hash), &good).state(),
            State::Pass
        );
        let mut bad = good;
        bad[40] ^= 1;
        let outcome = compose_binding(Some(compose), Some(&hash), &bad);
        assert!(
            matches!(&outcome, Outcome::Fail(r) if r.starts_with("mrconfigid: expected 01")),
            "{outcome:?}"
        );
    }

    #[test]
    fn compose_binding_names_each_missing_or_wrong_part() {
        let compose = "a";
        let hash = compose_hash(compose);
        let other = compose_hash("b");
        assert!(
            matches!(compose_binding(None, Some(&hash), &[0; 48]), Outcome::Fail(r) if r.contains("no app_compose"))
        );
        assert!(
            matches!(compose_binding(Some(compose), None, &[0; 48]), Outcome::Fail(r) if r.contains("no compose-hash event"))
        );
        assert!(
            matches!(compose_binding(Some(compose), Some(&other), &[0; 48]), Outcome::Fail(r) if r.starts_with("compose-hash event: expected"))
        );
    }
}
