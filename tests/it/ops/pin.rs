//! `teewatch pin` as a process: from a configuration without pins to `identity_pinned` against
//! the simulator, the same blocks from a saved bundle without network, a forged quote refused
//! with the file untouched, and a NEAR gateway's `[target.gateway_pins]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::process::teewatch;
use common::sim_run::start;
use serde_json::Value;
use teewatch::verify::hexutil;
use teewatch_sim::nvidia::GpuState;
use teewatch_sim::server::{SimOptions, model_name};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Runs the binary off the async runtime (the simulator serves on it).
async fn run_teewatch(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || teewatch(args))
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// The configuration without its `[target.pins]` and `[target.gateway_pins]` tables (each runs
/// to the next blank line), with operator comments added around and inside the target.
fn strip_pins(config: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in config.lines() {
        if line == "[target.pins]" || line == "[target.gateway_pins]" {
            skipping = true;
        } else if skipping && line.is_empty() {
            skipping = false;
        } else if !skipping {
            if line == "[[target]]" {
                out.push_str("# operator: reviewed before pinning\n");
            }
            if line.starts_with("interval = ") {
                out.push_str(&format!("{line}  # every ten seconds\n"));
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# end of the operator's file\n");
    assert!(!out.contains("pins"), "{out}");
    out
}

/// Whether every non-empty line of `original` appears in `edited`, in the same order.
fn keeps_lines(original: &str, edited: &str) -> Result<(), String> {
    let mut rest = edited;
    for line in original.lines().filter(|l| !l.is_empty()) {
        match rest.find(line) {
            Some(at) => rest = &rest[at + line.len()..],
            None => return Err(format!("{line:?} was lost or moved")),
        }
    }
    Ok(())
}

/// The pin table `table` of the target named `name` in a configuration.
fn pins_of(config: &str, name: &str, table: &str) -> toml::Table {
    let parsed: toml::Table = toml::from_str(config).unwrap();
    let target = parsed["target"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"].as_str() == Some(name))
        .unwrap()
        .clone();
    target
        .get(table)
        .and_then(|t| t.as_table().cloned())
        .unwrap_or_default()
}

fn strings(value: &toml::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The printed blocks (`[target.…]` on), without the header comments.
fn blocks(stdout: &str) -> &str {
    let start = stdout.find("[target.pins]").unwrap();
    let end = stdout
        .find("\nwrote ")
        .map(|e| e + 1)
        .unwrap_or(stdout.len());
    &stdout[start..end]
}

/// Flips one bit of the ECDSA signature of every quote in a bundle (v4: the body ends at 632,
/// then the 4-byte signature data length, then the 64-byte signature).
fn break_quote_signatures(value: &mut Value) -> usize {
    match value {
        Value::Object(map) => {
            let mut n = 0;
            for (key, v) in map.iter_mut() {
                if key == "intel_quote" {
                    let mut raw = hex::decode(v.as_str().unwrap()).unwrap();
                    raw[640] ^= 0x01;
                    *v = Value::String(hex::encode(raw));
                    n += 1;
                } else {
                    n += break_quote_signatures(v);
                }
            }
            n
        }
        Value::Array(items) => items.iter_mut().map(break_quote_signatures).sum(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_write_takes_a_config_without_pins_to_identity_pinned() {
    let run = start(
        "pin",
        SimOptions {
            nodes: 2,
            ..SimOptions::default()
        },
    )
    .await;
    let model = model_name(0);
    let config = run.dir.join("sim.toml");
    let unpinned = strip_pins(&std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, &unpinned).unwrap();
    let config_s = path_str(&config);

    // Without pins the hardware is proven, not the software, and a bundle is kept.
    let saved = run.dir.join("bundles");
    let out = run_teewatch(args(&[
        "check",
        "--config",
        &config_s,
        "--json",
        "--save-bundle",
        &path_str(&saved),
    ]))
    .await;
    assert_code(&out, 2, "check without pins");
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let identity = verdicts[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "identity_pinned")
        .unwrap();
    assert_eq!(identity["state"], "unknown");

    let before = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let out = run_teewatch(args(&[
        "pin", "--config", &config_s, "--target", &model, "--write",
    ]))
    .await;
    let after = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_code(&out, 0, "pin --write");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("# TCB status: UpToDate"), "{stdout}");
    // The module each node runs, named by the known-measurements table (mrseam is not written).
    assert!(
        stdout.contains("# TDX module (mrseam, not written; see docs/pins.md#known-measurements): 7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d TDX module 1.5.16 ("),
        "{stdout}"
    );
    assert!(!stdout.contains("[target.gateway_pins]"), "{stdout}");
    assert!(
        stdout.contains("  pins.mrtd: (not pinned) → [\""),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&config).unwrap();

    // The file kept every comment and line, in order, and still validates.
    keeps_lines(&unpinned, &written).unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert!(written.contains("interval = \"10s\"  # every ten seconds\n"));
    assert_code(
        &run_teewatch(args(&["config", "check", &config_s])).await,
        0,
        "config check",
    );

    // The pins are the simulator's own values: one per field across both nodes.
    let sim_model = &run.sim.state.models[0];
    let tds = [sim_model.td_for(0), sim_model.td_for(1)];
    let pins = pins_of(&written, &model, "pins");
    let distinct = |values: Vec<String>| {
        let mut v = values;
        v.sort();
        v.dedup();
        v
    };
    let expected: [(&str, Vec<String>); 8] = [
        (
            "mrtd",
            distinct(
                tds.iter()
                    .map(|t| hexutil::lower(&t.identity.mrtd))
                    .collect(),
            ),
        ),
        (
            "rtmr0",
            distinct(tds.iter().map(|t| hexutil::lower(&t.rtmr[0])).collect()),
        ),
        (
            "rtmr1",
            distinct(tds.iter().map(|t| hexutil::lower(&t.rtmr[1])).collect()),
        ),
        (
            "rtmr2",
            distinct(tds.iter().map(|t| hexutil::lower(&t.rtmr[2])).collect()),
        ),
        (
            "compose_hash",
            distinct(
                tds.iter()
                    .map(|t| hexutil::lower(&t.identity.compose_hash()))
                    .collect(),
            ),
        ),
        (
            "app_id",
            distinct(
                tds.iter()
                    .map(|t| hexutil::lower(&t.identity.app_id))
                    .collect(),
            ),
        ),
        (
            "gpu_driver_version",
            vec![GpuState::default().driver_version],
        ),
        ("gpu_vbios_version", vec!["96.00.CF.00.02".to_string()]),
    ];
    assert_eq!(
        GpuState::encode_vbios("96.00.CF.00.02").unwrap(),
        GpuState::default().vbios
    );
    for (field, values) in &expected {
        assert_eq!(&strings(&pins[*field]), values, "{field}");
    }
    assert_eq!(pins.len(), expected.len(), "{pins:?}");
    // Each value line says when and by which check it was proven.
    for (field, values) in &expected {
        let check = match *field {
            "compose_hash" | "app_id" => "tdx_quote_signature + event_log_replay",
            f if f.starts_with("gpu_") => "gpu_evidence_signature",
            _ => "tdx_quote_signature",
        };
        for value in values {
            let line = written
                .lines()
                .find(|l| l.contains(&format!("\"{value}\",")))
                .unwrap();
            // The known-measurements table's name follows a value it knows: the simulator
            // runs the NanoGPT/NEAR model image.
            let name = match teewatch::verify::known::shipped_name(field, value) {
                Some(name) => format!(", {name}"),
                None => String::new(),
            };
            if *field == "mrtd" {
                assert_eq!(
                    name,
                    ", dstack-nvidia, os_image_hash 9b69bb16… (version not published)"
                );
            }
            assert!(
                line.ends_with(&format!("# {before}, {check}{name}"))
                    || line.ends_with(&format!("# {after}, {check}{name}")),
                "{line}"
            );
        }
    }

    // A live check of the written configuration now proves which software runs.
    let out = run_teewatch(args(&["check", "--config", &config_s, "--json"])).await;
    assert_code(&out, 0, "check after pin --write");
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let checks = verdicts[0]["checks"].as_array().unwrap();
    let pin_checks: Vec<&Value> = checks
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("pin:"))
        .collect();
    // One per pinned field and node, and pin:mrseam per node from the known-measurements table
    // (pin does not write mrseam).
    assert_eq!(pin_checks.len(), (expected.len() + 1) * 2);
    let module = pin_checks.iter().filter(|c| c["name"] == "pin:mrseam");
    for c in module {
        assert!(
            c["reason"]
                .as_str()
                .unwrap()
                .starts_with("TDX module 1.5.16 (known-measurements table v1): "),
            "{c}"
        );
    }
    for c in pin_checks
        .iter()
        .copied()
        .chain(checks.iter().filter(|c| c["name"] == "identity_pinned"))
    {
        assert_eq!(c["state"], "pass", "{c}");
    }

    // Pinning again changes nothing: the file is left byte for byte.
    let out = run_teewatch(args(&[
        "pin", "--config", &config_s, "--target", &model, "--write",
    ]))
    .await;
    assert_code(&out, 0, "pin --write again");
    assert!(text(&out.stdout).contains("nothing written"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);

    // The saved bundle gives the same blocks with the provider and PCCS unreachable (the NRAS
    // URL stays: it is the issuer its tokens must name).
    let bundle = saved.join(format!("{}.json", model.replace('/', "_")));
    let offline = run.dir.join("offline.toml");
    let base = run.sim.base_url.clone();
    let offline_text = unpinned
        .replace(
            &format!("base_url = \"{base}\""),
            "base_url = \"http://127.0.0.1:9\"",
        )
        .replace(
            &format!("pccs_url = \"{base}\""),
            "pccs_url = \"http://127.0.0.1:9\"",
        );
    assert_ne!(offline_text, unpinned);
    std::fs::write(&offline, &offline_text).unwrap();
    let out = run_teewatch(args(&[
        "pin",
        "--config",
        &path_str(&offline),
        "--target",
        &model,
        "--bundle",
        &path_str(&bundle),
    ]))
    .await;
    assert_code(&out, 0, "pin --bundle");
    let bundle_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let observed_day = &bundle_json["observed_at"].as_str().unwrap()[..10];
    let printed = text(&out.stdout);
    let same_day = written
        .replace(&before, observed_day)
        .replace(&after, observed_day);
    assert!(
        blocks(&same_day).starts_with(blocks(&printed)),
        "{printed}\n{same_day}"
    );
    assert_eq!(
        std::fs::read_to_string(&offline).unwrap(),
        offline_text,
        "without --write the file is not touched"
    );

    // A quote whose signature does not verify is refused, naming the check; nothing is written.
    let mut forged = bundle_json.clone();
    assert!(break_quote_signatures(&mut forged) > 0);
    let forged_path = run.dir.join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let before_bytes = std::fs::read(&offline).unwrap();
    let out = run_teewatch(args(&[
        "pin",
        "--config",
        &path_str(&offline),
        "--target",
        &model,
        "--bundle",
        &path_str(&forged_path),
        "--write",
    ]))
    .await;
    assert_code(&out, 1, "pin on a forged quote");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("tdx_quote_signature ["), "{stderr}");
    assert!(stderr.contains("nothing written"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(&offline).unwrap(), before_bytes);
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&run.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("teewatch-pin"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A copy of a stored simulator case in a fresh folder, with its pins stripped.
fn gateway_case(name: &str) -> (PathBuf, PathBuf, String) {
    let source = common::repo_path("tests/bundles/formats/near-gateway-ed25519");
    let dir = std::env::temp_dir().join(format!("teewatch-pin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let original = std::fs::read_to_string(dir.join("sim.toml")).unwrap();
    std::fs::write(dir.join("sim.toml"), strip_pins(&original)).unwrap();
    (dir.join("sim.toml"), dir.join("bundle.json"), original)
}

#[test]
fn a_near_gateway_bundle_gives_gateway_pins() {
    let (config, bundle, original) = gateway_case("gateway");
    let target = "TEE/sim-model-0";
    let out = teewatch(args(&[
        "pin",
        "--config",
        &path_str(&config),
        "--target",
        target,
        "--bundle",
        &path_str(&bundle),
    ]));
    assert_code(&out, 0, "pin --bundle (gateway)");
    let stdout = text(&out.stdout);
    // The printed output is TOML (its header is comments) holding both blocks.
    let printed: toml::Table = toml::from_str(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    let model_pins = printed["target"]["pins"].as_table().unwrap();
    let gateway_pins = printed["target"]["gateway_pins"].as_table().unwrap();
    // The same OS and application identity the simulator pinned when it wrote the case.
    let want_model = pins_of(&original, target, "pins");
    let want_gateway = pins_of(&original, target, "gateway_pins");
    for field in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "compose_hash", "app_id"] {
        assert_eq!(
            strings(&model_pins[field]),
            strings(&want_model[field]),
            "{field}"
        );
        assert_eq!(
            strings(&gateway_pins[field]),
            strings(&want_gateway[field]),
            "gateway {field}"
        );
    }
    assert_ne!(model_pins["mrtd"], gateway_pins["mrtd"]);
    // The gateway is a CPU-only TD: no GPU fields.
    assert!(model_pins.contains_key("gpu_driver_version"));
    assert!(
        !gateway_pins.keys().any(|k| k.starts_with("gpu_")),
        "{gateway_pins:?}"
    );

    // Written, the configuration judges the bundle with both identities pinned.
    let out = teewatch(args(&[
        "pin",
        "--config",
        &path_str(&config),
        "--target",
        target,
        "--bundle",
        &path_str(&bundle),
        "--write",
    ]));
    assert_code(&out, 0, "pin --write (gateway)");
    assert!(text(&out.stdout).contains("  gateway_pins.mrtd: (not pinned) → [\""));
    let out = teewatch(args(&[
        "verify",
        "--json",
        "--config",
        &path_str(&config),
        &path_str(&bundle),
    ]));
    assert_code(&out, 0, "verify after pin --write (gateway)");
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    let identity = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "identity_pinned")
        .unwrap();
    assert!(
        identity["reason"]
            .as_str()
            .unwrap()
            .contains("gateway: os pinned"),
        "{identity}"
    );
    std::fs::remove_dir_all(config.parent().unwrap()).unwrap();
}

#[test]
fn a_forged_gateway_quote_is_refused_and_the_file_left_byte_identical() {
    let (config, bundle, _) = gateway_case("forged");
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let quote = &mut value["attestation"]["gateway_attestation"]["intel_quote"];
    let mut raw = hex::decode(quote.as_str().unwrap()).unwrap();
    raw[640] ^= 0x01;
    *quote = Value::String(hex::encode(raw));
    std::fs::write(&bundle, value.to_string()).unwrap();
    let before = std::fs::read(&config).unwrap();
    let out = teewatch(args(&[
        "pin",
        "--config",
        &path_str(&config),
        "--target",
        "TEE/sim-model-0",
        "--bundle",
        &path_str(&bundle),
        "--write",
    ]));
    assert_code(&out, 1, "pin on a forged gateway quote");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("  tdx_quote_signature [gateway] fail: "),
        "{stderr}"
    );
    // Only the gateway's quote was touched: the model parts are not named.
    assert!(!stderr.contains("[model:"), "{stderr}");
    assert_eq!(std::fs::read(&config).unwrap(), before);
    std::fs::remove_dir_all(config.parent().unwrap()).unwrap();
}

/// Issue 14's end state: a target of each verifiable format, pinned from nothing by
/// `pin --write`, passes end to end against the simulator, canaries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_pinned_by_pin_write_passes_end_to_end() {
    use teewatch_sim::format::SimFormat;
    let formats = [
        SimFormat::Dstack,
        SimFormat::NearGateway,
        SimFormat::NearDirect,
    ];
    let run = start(
        "pin-formats",
        SimOptions {
            models: formats.len(),
            formats: formats.to_vec(),
            nodes: 2,
            tls: true,
            ..SimOptions::default()
        },
    )
    .await;
    let config = run.dir.join("sim.toml");
    std::fs::write(
        &config,
        strip_pins(&std::fs::read_to_string(&config).unwrap()),
    )
    .unwrap();
    let config_s = path_str(&config);
    for (index, format) in formats.iter().enumerate() {
        let model = model_name(index);
        let out = run_teewatch(args(&[
            "pin", "--config", &config_s, "--target", &model, "--write",
        ]))
        .await;
        assert_code(&out, 0, &format!("pin --write {model}"));
        let written = std::fs::read_to_string(&config).unwrap();
        let pins = pins_of(&written, &model, "pins");
        assert!(
            pins.contains_key("mrtd") && pins.contains_key("compose_hash"),
            "{pins:?}"
        );
        if *format != SimFormat::Dstack {
            assert!(
                pins.contains_key("deployed_compose_sha256"),
                "{model}: {pins:?}"
            );
        }
        let gateway = *format == SimFormat::NearGateway;
        assert_eq!(
            !pins_of(&written, &model, "gateway_pins").is_empty(),
            gateway,
            "{model}"
        );
    }
    let out = run_teewatch(args(&["check", "--config", &config_s, "--json"])).await;
    assert_code(&out, 0, "check after pin --write");
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts.len(), formats.len());
    for verdict in &verdicts {
        assert_eq!(verdict["state"], "pass", "{verdict:#}");
        let names: Vec<&str> = verdict["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"canary_signature"), "{names:?}");
        assert!(names.contains(&"identity_pinned"), "{names:?}");
    }
}
