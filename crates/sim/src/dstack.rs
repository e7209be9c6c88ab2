//! A dstack-shaped TD for the simulator: the measurements, the event log that replays to them,
//! and the `info` a dstack guest agent reports.
//!
//! The boot registers RTMR0–2 are folded from synthetic boot events (their digests are given, as
//! firmware measurements are), RTMR3 from dstack runtime events hashed the v1 way
//! (`SHA384(le32(type) ‖ ":" ‖ name ‖ ":" ‖ payload)`), and MRCONFIGID is 0x01 ‖
//! sha256(app_compose), as newer dstack sets it. Everything a verifier replays is consistent by
//! construction, so any drift the simulator injects shows up exactly where a real one would.

use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384};

use teewatch_verify::dstack::RUNTIME_EVENT_TYPE;
use teewatch_verify::hexutil;

/// One event of the simulated log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimEvent {
    imr: usize,
    event_type: u32,
    digest: [u8; 48],
    name: String,
    payload: Vec<u8>,
}

/// MRTD of the dstack-nvidia image of every NanoGPT and NEAR model node seen (REFERENCE.md §2),
/// which the known-measurements table names: every simulated model node runs it, so a target
/// with no pins of its own passes `pin:mrtd` by name (`drift-mrtd` changes it).
pub const MODEL_MRTD: [u8; 48] = crate::intel::hex_const(
    "b24d3b24e9e3c16012376b52362ca09856c4adecb709d5fac33addf1c47e193da075b125b6c364115771390a5461e217",
);

/// MRTD of dstack-nvidia-0.5.5, seen on NEAR's gateway (REFERENCE.md §2): the simulated gateway's.
pub const GATEWAY_MRTD: [u8; 48] = crate::intel::hex_const(
    "f06dfda6dce1cf904d4e2bab1dc370634cf95cefa2ceb2de2eee127c9382698090d7a4a13e14c536ec6c9c3c8fa87077",
);

/// The identity of a simulated dstack app and OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DstackIdentity {
    pub app_compose: String,
    pub app_id: [u8; 20],
    pub os_image_hash: [u8; 32],
    pub mrtd: [u8; 48],
    /// Seeds the synthetic boot events, so that RTMR0–2 follow the "OS image".
    pub boot_seed: [u8; 32],
    pub key_provider: String,
}

impl DstackIdentity {
    /// A deterministic identity derived from a name, so a simulated model keeps its measurements
    /// across restarts and a drift is a deliberate change.
    pub fn derived(name: &str) -> DstackIdentity {
        let h = |label: &str| Sha384::digest(format!("teewatch-sim/{name}/{label}").as_bytes());
        let pick = |label: &str, out: &mut [u8]| {
            let digest = h(label);
            for (o, d) in out.iter_mut().zip(digest.iter()) {
                *o = *d;
            }
        };
        let mut app_id = [0u8; 20];
        let mut os_image_hash = [0u8; 32];
        let mut boot_seed = [0u8; 32];
        pick("app-id", &mut app_id);
        pick("os-image", &mut os_image_hash);
        pick("boot", &mut boot_seed);
        DstackIdentity {
            app_compose: format!(
                "{{\"manifest_version\":2,\"name\":\"{name}\",\"runner\":\"docker-compose\",\"docker_compose_file\":\"services:\\n  vllm:\\n    image: vllm/vllm-openai@sha256:{}\\n\",\"kms_enabled\":true}}",
                hexutil::lower(&Sha256::digest(name.as_bytes()))
            ),
            app_id,
            os_image_hash,
            mrtd: MODEL_MRTD,
            boot_seed,
            key_provider: "kms".to_string(),
        }
    }

    pub fn compose_hash(&self) -> [u8; 32] {
        Sha256::digest(self.app_compose.as_bytes()).into()
    }

    /// MRCONFIGID = 0x01 ‖ sha256(app_compose) ‖ zeros.
    pub fn mrconfigid(&self) -> [u8; 48] {
        teewatch_verify::dstack::expected_mrconfigid(&self.compose_hash())
    }
}

/// The measured state of one simulated TD (one node).
#[derive(Debug, Clone, PartialEq)]
pub struct DstackTd {
    pub identity: DstackIdentity,
    pub instance_id: [u8; 20],
    events: Vec<SimEvent>,
    pub rtmr: [[u8; 48]; 4],
}

fn runtime_event(name: &str, payload: &[u8]) -> SimEvent {
    let mut hasher = Sha384::new();
    hasher.update(RUNTIME_EVENT_TYPE.to_le_bytes());
    hasher.update(b":");
    hasher.update(name.as_bytes());
    hasher.update(b":");
    hasher.update(payload);
    SimEvent {
        imr: 3,
        event_type: RUNTIME_EVENT_TYPE,
        digest: hasher.finalize().into(),
        name: name.to_string(),
        payload: payload.to_vec(),
    }
}

impl DstackTd {
    /// Boots a TD for `identity`: boot events into RTMR0–2, runtime events into RTMR3.
    pub fn boot(identity: DstackIdentity, instance_id: [u8; 20]) -> DstackTd {
        let mut events = Vec::new();
        // Three firmware/kernel measurements per boot register, derived from the OS seed.
        for imr in 0..3usize {
            for step in 0..3u8 {
                let digest: [u8; 48] =
                    Sha384::digest([&identity.boot_seed[..], &[imr as u8, step]].concat()).into();
                events.push(SimEvent {
                    imr,
                    event_type: 0x8000_0001 + u32::from(step),
                    digest,
                    name: String::new(),
                    payload: vec![imr as u8, step],
                });
            }
        }
        let key_provider = format!(
            "{{\"name\":\"{}\",\"id\":\"{}\"}}",
            identity.key_provider,
            hexutil::lower(&identity.boot_seed[..8])
        );
        for (name, payload) in [
            ("system-preparing", Vec::new()),
            ("app-id", identity.app_id.to_vec()),
            ("compose-hash", identity.compose_hash().to_vec()),
            ("instance-id", instance_id.to_vec()),
            ("boot-mr-done", Vec::new()),
            ("os-image-hash", identity.os_image_hash.to_vec()),
            ("key-provider", key_provider.into_bytes()),
            ("system-ready", Vec::new()),
        ] {
            events.push(runtime_event(name, &payload));
        }
        let mut rtmr = [[0u8; 48]; 4];
        for event in &events {
            if let Some(acc) = rtmr.get_mut(event.imr) {
                let mut hasher = Sha384::new();
                hasher.update(*acc);
                hasher.update(event.digest);
                *acc = hasher.finalize().into();
            }
        }
        DstackTd {
            identity,
            instance_id,
            events,
            rtmr,
        }
    }

    /// The event log as dstack serves it (a list of events; runtime digests included).
    pub fn event_log(&self) -> Value {
        Value::Array(
            self.events
                .iter()
                .map(|e| {
                    json!({
                        "imr": e.imr,
                        "event_type": e.event_type,
                        "digest": hexutil::lower(&e.digest),
                        "event": e.name,
                        "event_payload": hexutil::lower(&e.payload),
                    })
                })
                .collect(),
        )
    }

    /// dstack's `info`, with `tcb_info` as the JSON string the guest agent returns.
    pub fn info(&self) -> Value {
        let id = &self.identity;
        let tcb_info = json!({
            "mrtd": hexutil::lower(&id.mrtd),
            "rtmr0": hexutil::lower(&self.rtmr[0]),
            "rtmr1": hexutil::lower(&self.rtmr[1]),
            "rtmr2": hexutil::lower(&self.rtmr[2]),
            "rtmr3": hexutil::lower(&self.rtmr[3]),
            "compose_hash": hexutil::lower(&id.compose_hash()),
            "os_image_hash": hexutil::lower(&id.os_image_hash),
            "app_compose": id.app_compose,
            "event_log": self.event_log(),
        });
        json!({
            "app_id": hexutil::lower(&id.app_id),
            "instance_id": hexutil::lower(&self.instance_id),
            "app_name": "teewatch-sim",
            "compose_hash": hexutil::lower(&id.compose_hash()),
            "os_image_hash": hexutil::lower(&id.os_image_hash),
            "key_provider_info": format!("{{\"name\":\"{}\"}}", id.key_provider),
            "tcb_info": tcb_info.to_string(),
        })
    }

    /// `vm_config` as dstack reports it (a claim, never evidence).
    pub fn vm_config(&self, gpus: usize) -> Value {
        json!({
            "spec_version": 1,
            "os_image_hash": hexutil::lower(&self.identity.os_image_hash),
            "cpu_count": 16,
            "memory_size": 68_719_476_736u64,
            "num_gpus": gpus,
        })
    }
}
