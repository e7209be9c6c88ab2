//! Rows on the dstack event log and the compose file: identity events retyped, reordered,
//! dropped and duplicated, digest-only and payload-only changes, an event moved to another
//! register, a part given another part's log, and the compose text and its claims.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::{Value, json};

use crate::common;

use super::edit::*;
use super::{Base, DSTACK, ECDSA, Row, fail, same};

const PMLSDK: Base = Base::Real("pmlsdk-dstack-sample");
const REPLAY: &str = "event_log_replay";

/// The digest of the event at `at`, one bit flipped.
fn flip_digest(list: &mut [Value], at: usize) {
    let mut raw = hex::decode(list[at]["digest"].as_str().unwrap()).unwrap();
    raw[0] ^= 0x01;
    list[at]["digest"] = Value::String(hex::encode(raw));
}

/// The payload of the event at `at`, one bit flipped.
fn flip_payload(list: &mut [Value], at: usize) {
    let mut raw = hex::decode(list[at]["event_payload"].as_str().unwrap()).unwrap();
    raw[0] ^= 0x01;
    list[at]["event_payload"] = Value::String(hex::encode(raw));
}

pub fn rows() -> Vec<Row> {
    vec![
        fail(
            "event log: compose-hash event retyped (digest kept, the replay still matches)",
            PMLSDK,
            |v| {
                events_edit(v, TOP, |l| {
                    let at = index_of(l, "compose-hash");
                    l[at]["event_type"] = json!(0x8000_0009u32);
                })
            },
            REPLAY,
            "",
            "expected a runtime event (type 0x08000001), found type 0x80000009",
        ),
        fail(
            "event log: app-id event retyped",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let at = index_of(l, "app-id");
                    l[at]["event_type"] = json!(0x8000_0001u32);
                })
            },
            REPLAY,
            "model:0",
            "expected a runtime event",
        ),
        fail(
            "event log: key-provider event retyped",
            DSTACK,
            |v| {
                events_edit(v, TOP, |l| {
                    let at = index_of(l, "key-provider");
                    l[at]["event_type"] = json!(0x0000_000Du32);
                })
            },
            REPLAY,
            "",
            "expected a runtime event",
        ),
        fail(
            "event log: app-id and compose-hash events swapped",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let a = index_of(l, "app-id");
                    let c = index_of(l, "compose-hash");
                    l.swap(a, c);
                })
            },
            REPLAY,
            "model:0",
            "rtmr3: replayed",
        ),
        fail(
            "event log: two firmware events of rtmr0 swapped",
            ECDSA,
            |v| events_edit(v, GW, |l| l.swap(0, 1)),
            REPLAY,
            "gateway",
            "rtmr0: replayed",
        ),
        fail(
            "event log: key-provider event dropped",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let at = index_of(l, "key-provider");
                    l.remove(at);
                })
            },
            REPLAY,
            "model:0",
            "rtmr3: replayed",
        ),
        fail(
            "event log: an rtmr1 event dropped",
            PMLSDK,
            |v| {
                events_edit(v, TOP, |l| {
                    let at = l.iter().position(|e| e["imr"] == 1).unwrap();
                    l.remove(at);
                })
            },
            REPLAY,
            "",
            "rtmr1: replayed",
        ),
        fail(
            "event log: compose-hash event duplicated with another value, rtmr3 recomputed",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let at = index_of(l, "compose-hash");
                    l.insert(at + 1, common::runtime_event("compose-hash", &[0xAB; 32]));
                });
                rtmr3_from_replay(v, M0);
            },
            REPLAY,
            "model:0",
            "two compose-hash events",
        ),
        fail(
            "event log: app-id event duplicated verbatim, rtmr3 recomputed",
            DSTACK,
            |v| {
                events_edit(v, TOP, |l| {
                    let at = index_of(l, "app-id");
                    let copy = l[at].clone();
                    l.insert(at + 1, copy);
                });
                rtmr3_from_replay(v, TOP);
            },
            REPLAY,
            "",
            "two app-id events",
        ),
        fail(
            "event log: an application copy of os-image-hash after system-ready, rtmr3 recomputed",
            ECDSA,
            |v| {
                events_edit(v, GW, |l| {
                    let at = index_of(l, "os-image-hash");
                    let payload = hex::decode(l[at]["event_payload"].as_str().unwrap()).unwrap();
                    l.push(common::runtime_event("os-image-hash", &payload));
                });
                rtmr3_from_replay(v, GW);
            },
            REPLAY,
            "gateway",
            "two os-image-hash events (events 14 and 17)",
        ),
        fail(
            "event log: digest-only change of an rtmr0 event",
            ECDSA,
            |v| events_edit(v, M0, |l| flip_digest(l, 0)),
            REPLAY,
            "model:0",
            "rtmr0: replayed",
        ),
        fail(
            "event log: digest-only change of the compose-hash event",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let at = index_of(l, "compose-hash");
                    flip_digest(l, at);
                })
            },
            REPLAY,
            "model:0",
            "(compose-hash): supplied digest",
        ),
        fail(
            "event log: payload-only change of the compose-hash event",
            ECDSA,
            |v| {
                events_edit(v, GW, |l| {
                    let at = index_of(l, "compose-hash");
                    flip_payload(l, at);
                })
            },
            REPLAY,
            "gateway",
            "(compose-hash): supplied digest",
        ),
        fail(
            "event log: payload-only change of the app-id event",
            PMLSDK,
            |v| {
                events_edit(v, TOP, |l| {
                    let at = index_of(l, "app-id");
                    flip_payload(l, at);
                })
            },
            REPLAY,
            "",
            "(app-id): supplied digest",
        ),
        fail(
            "event log: payload-only change of the os-image-hash event",
            DSTACK,
            |v| {
                events_edit(v, TOP, |l| {
                    let at = index_of(l, "os-image-hash");
                    flip_payload(l, at);
                })
            },
            REPLAY,
            "",
            "(os-image-hash): supplied digest",
        ),
        fail(
            "event log: the compose-hash event moved from imr 3 to imr 2",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let at = index_of(l, "compose-hash");
                    l[at]["imr"] = json!(2);
                })
            },
            REPLAY,
            "model:0",
            "rtmr2: replayed",
        ),
        fail(
            "event log: the gateway's genuine log given to the model",
            ECDSA,
            |v| {
                let gw = get(v, &format!("{GW}/event_log"));
                set(v, &format!("{M0}/event_log"), gw);
            },
            REPLAY,
            "model:0",
            "rtmr0: replayed",
        ),
        // ---- the compose file ---------------------------------------------------------------
        fail(
            "app_compose: one character of the compose text",
            ECDSA,
            |v| {
                json_in_string(v, &format!("{M0}/info/tcb_info"), |t| {
                    let text = t["app_compose"]
                        .as_str()
                        .unwrap()
                        .replacen("vllm", "vllN", 1);
                    t["app_compose"] = Value::String(text);
                })
            },
            "compose_binding",
            "model:0",
            "compose-hash event: expected sha256(app_compose)",
        ),
        fail(
            "app_compose: one character of the compose text",
            PMLSDK,
            |v| {
                json_in_string(v, "/attestation/info/tcb_info", |t| {
                    let old = t["app_compose"].as_str().unwrap();
                    let text = old.replacen('"', "'", 1);
                    assert_ne!(text, old);
                    t["app_compose"] = Value::String(text);
                })
            },
            "compose_binding",
            "",
            "compose-hash event: expected sha256(app_compose)",
        ),
        fail(
            "app_compose: the gateway's compose text given to the model",
            ECDSA,
            |v| {
                let gw = json_of(v, &format!("{GW}/info/tcb_info"))["app_compose"].clone();
                json_in_string(v, &format!("{M0}/info/tcb_info"), |t| {
                    t["app_compose"] = gw;
                })
            },
            "compose_binding",
            "model:0",
            "compose-hash event: expected sha256(app_compose)",
        ),
        fail(
            "event log: an rtmr2 event moved to imr 4, which no register has",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let at = l.iter().position(|e| e["imr"] == 2).unwrap();
                    l[at]["imr"] = json!(4);
                })
            },
            REPLAY,
            "model:0",
            "`imr`: expected 0 to 3, found 4",
        ),
        fail(
            "event log: the compose-hash event renamed, digest and payload kept",
            ECDSA,
            |v| {
                events_edit(v, M0, |l| {
                    let at = index_of(l, "compose-hash");
                    l[at]["event"] = json!("compose-hash2");
                })
            },
            REPLAY,
            "model:0",
            "(compose-hash2): supplied digest",
        ),
        same(
            "info.tcb_info: the claimed mrtd edited",
            ECDSA,
            |v| {
                json_in_string(v, &format!("{M0}/info/tcb_info"), |t| {
                    t["mrtd"] = json!("00".repeat(48));
                })
            },
            "pin:mrtd",
            "model:0",
            "(quote) is allowed",
            "a claim: the pin reads mrtd from the verified quote, never from info",
        ),
        same(
            "vm_config: the claimed os image hash edited",
            DSTACK,
            |v| {
                json_in_string(v, "/attestation/vm_config", |t| {
                    t["os_image_hash"] = json!("00".repeat(32));
                })
            },
            "pin:os_image_hash",
            "",
            "(event_log) is allowed",
            "a claim: the pin reads the os image hash from the replayed event log, never from vm_config",
        ),
    ]
}
