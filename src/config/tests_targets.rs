//! Tests of the monitoring settings: defaults per profile, schedules, and API key sources that
//! resolve at use time without ever showing the key.
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("teewatch-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(text: &str) -> Config {
    Config::parse_in(text, "t.toml", Path::new("/etc/teewatch")).unwrap_or_else(|e| panic!("{e}"))
}

fn only_monitor(config: &Config) -> &MonitorConfig {
    let Some((_, monitor)) = config.monitored().next() else {
        panic!("no monitored target in {config:?}");
    };
    monitor
}

#[test]
fn each_profile_has_its_defaults() {
    let config = parse(
        "[[target]]\nname = \"n\"\nprofile = \"nanogpt\"\nmodel = \"TEE/gpt-oss-120b\"\napi_key_env = \"NANOGPT_API_KEY\"\n",
    );
    let m = only_monitor(&config);
    assert_eq!(m.profile, Profile::Nanogpt);
    assert_eq!(m.base_url, "https://nano-gpt.com");
    assert_eq!(m.model, "TEE/gpt-oss-120b");
    assert_eq!(m.api_key, ApiKeySource::Env("NANOGPT_API_KEY".into()));
    assert_eq!(m.paths.attestation, "/api/v1/tee/attestation");
    assert_eq!(m.paths.signature, "/api/v1/tee/signature/{id}");
    assert_eq!(m.paths.chat, "/api/v1/chat/completions");
    assert_eq!(
        m.url(&m.paths.signature_for("chatcmpl-1")),
        "https://nano-gpt.com/api/v1/tee/signature/chatcmpl-1"
    );
    assert_eq!(m.schedule, Schedule::Interval(Duration::from_secs(300)));
    assert_eq!(m.timeout, Duration::from_secs(60));
    assert_eq!(m.canary, CanaryConfig::default());
    assert_eq!(m.canary.prompt, "Reply with the single word: ok.");
    assert_eq!(
        (m.canary.max_tokens, m.canary.stream, m.canary.non_stream),
        (16, true, true)
    );
    // The global sections' defaults.
    assert_eq!(
        config.daemon.listen,
        SocketAddr::from(([127, 0, 0, 1], 9477))
    );
    assert_eq!(
        config.daemon.db.sqlite_path(),
        Some(Path::new("/etc/teewatch/teewatch.db"))
    );
    assert_eq!(
        (config.daemon.retention_days, config.daemon.concurrency),
        (90, 8)
    );
    assert_eq!(
        config.intel.pccs_url,
        "https://api.trustedservices.intel.com"
    );
    assert_eq!(
        config.intel.root_crl_url,
        "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    );
    assert_eq!(
        config.intel.allowed_tcb_statuses,
        ["UpToDate", "SWHardeningNeeded"]
    );
    assert_eq!(
        config.nvidia.nras_url,
        "https://nras.attestation.nvidia.com"
    );
    assert_eq!(
        config.nvidia.jwks_url,
        "https://nras.attestation.nvidia.com/.well-known/jwks.json"
    );
    assert_eq!(config.nvidia.nras_anchors_der, None);

    // vllm-proxy: its own paths, one overridden; the base URL loses its trailing slash.
    let config = parse(
        r#"
[daemon]
listen = "[::1]:9000"
db = "/var/lib/teewatch/history.db"
retention_days = 30
concurrency = 2
[nvidia]
nras_url = "https://nras.example.test/"
[[target]]
name = "v"
profile = "vllm-proxy"
base_url = "https://tee.example.test/"
model = "qwen"
api_key_credential = "vllm"
cron = "0 */15  9-17 * * MON-FRI"
timeout_seconds = 600
[target.paths]
attestation = "/attestation"
[target.canary]
prompt = "Say ok."
max_tokens = 4096
stream = false
"#,
    );
    let m = only_monitor(&config);
    assert_eq!(m.profile, Profile::VllmProxy);
    assert_eq!(m.base_url, "https://tee.example.test");
    assert_eq!(m.paths.attestation, "/attestation");
    assert_eq!(m.paths.signature, "/v1/signature/{id}");
    assert_eq!(m.paths.chat, "/v1/chat/completions");
    assert_eq!(m.schedule, Schedule::Cron("0 */15 9-17 * * MON-FRI".into()));
    assert_eq!(m.timeout, Duration::from_secs(600));
    assert_eq!(m.api_key, ApiKeySource::Credential("vllm".into()));
    assert_eq!(
        (
            m.canary.prompt.as_str(),
            m.canary.max_tokens,
            m.canary.stream,
            m.canary.non_stream
        ),
        ("Say ok.", 4096, false, true)
    );
    assert_eq!(config.daemon.listen.to_string(), "[::1]:9000");
    assert_eq!(
        config.daemon.db.sqlite_path(),
        Some(Path::new("/var/lib/teewatch/history.db"))
    );
    assert_eq!(
        (config.daemon.retention_days, config.daemon.concurrency),
        (30, 2)
    );
    assert_eq!(
        config.nvidia.jwks_url,
        "https://nras.example.test/.well-known/jwks.json"
    );

    // vllm-proxy has no default base URL.
    let Err(error) = Config::parse(
        "[[target]]\nname = \"v\"\nprofile = \"vllm-proxy\"\nmodel = \"m\"\napi_key_env = \"K\"\n",
        "t.toml",
    ) else {
        panic!("expected an error");
    };
    assert!(
        error
            .to_string()
            .contains("target[0].base_url: missing; the vllm-proxy profile has no default"),
        "{error}"
    );
    // A target without monitoring keys only carries a policy; one with any of them needs the rest.
    let config = parse("[[target]]\nname = \"p\"\nallowed_tcb_statuses = [\"UpToDate\"]\n");
    assert_eq!(config.targets.len(), 1);
    assert_eq!(config.monitored().count(), 0);
    assert_eq!(config.target("p").and_then(TargetConfig::base_url), None);
    let Err(error) = Config::parse("[[target]]\nname = \"p\"\ninterval = \"1m\"\n", "t.toml")
    else {
        panic!("expected errors");
    };
    let message = error.to_string();
    for needle in [
        "target[0].profile: missing; a monitored target needs a provider profile: one of nanogpt, vllm-proxy",
        "target[0].model: missing",
        "target[0]: missing an api key source; expected exactly one of api_key_env, api_key_file, api_key_credential",
    ] {
        assert!(
            message.contains(needle),
            "missing {needle:?} in:\n{message}"
        );
    }
    assert_eq!(error.issues.len(), 3, "{message}");
}

#[test]
fn relative_paths_follow_the_configuration_file() {
    let scratch = Scratch::new("relative");
    let path = scratch.write(
        "teewatch.toml",
        "[daemon]\ndb = \"state/history.db\"\n[[target]]\nname = \"v\"\nprofile = \"vllm-proxy\"\nbase_url = \"http://127.0.0.1:8088\"\nmodel = \"m\"\napi_key_file = \"keys/vllm.key\"\ninterval = \"10s\"\n",
    );
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.daemon.db.sqlite_path(),
        Some(scratch.0.join("state/history.db").as_path())
    );
    let m = only_monitor(&config);
    assert_eq!(
        m.api_key,
        ApiKeySource::File(scratch.0.join("keys/vllm.key"))
    );
    assert_eq!(m.schedule, Schedule::Interval(Duration::from_secs(10)));
    // Loading does not read the key: a missing key file is an error only when it is used.
    assert!(matches!(m.api_key.resolve(), Err(ApiKeyError::File { .. })));
}

#[test]
fn intervals_and_cron_expressions() {
    for (text, seconds) in [
        ("30s", 30),
        ("10s", 10),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1d2h3m4s", 93_784),
    ] {
        assert_eq!(
            parse_interval(text),
            Ok(Duration::from_secs(seconds)),
            "{text}"
        );
    }
    for text in [
        "",
        "10",
        "m",
        "5s",
        "9s",
        "30m1h",
        "1h1h",
        "1.5h",
        "-5m",
        "5 m",
        "5min",
        "99999999999999999999d",
    ] {
        assert!(parse_interval(text).is_err(), "{text:?} was accepted");
    }
    assert!(parse_interval("5s").is_err_and(|e| e.contains("at least 10s")));
    for text in [
        "*/5 * * * *",
        "0 3 * * sun",
        "0,30 9-17 1-31/2 JAN-jun 1-5",
        "0 */15 9-17 ? * MON-FRI",
        "59 59 23 31 12 7",
    ] {
        assert!(
            check_cron(text).is_ok(),
            "{text:?} was refused: {:?}",
            check_cron(text)
        );
    }
    for text in [
        "* * * *",
        "* * * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "? * * * *",
        "@daily",
        "* * * * MONDAY",
        "1,,2 * * * *",
    ] {
        assert!(check_cron(text).is_err(), "{text:?} was accepted");
    }
}

/// An environment holding exactly these variables.
fn env_of(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_os_str().to_os_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn api_key_sources_resolve_at_use_time_without_showing_the_key() {
    let scratch = Scratch::new("api-keys");
    let none = env_of(&[]);
    // An environment variable (an injected environment: edition 2024 makes set_var unsafe).
    let env = |name: &str| (name == "TEEWATCH_TEST_KEY").then(|| OsString::from(" sk-env-key\n"));
    let source = ApiKeySource::Env("TEEWATCH_TEST_KEY".into());
    assert_eq!(source.resolve_with(&env), Ok("sk-env-key".into()));
    let missing = source.resolve_with(&none);
    assert_eq!(
        missing,
        Err(ApiKeyError::EnvNotSet("TEEWATCH_TEST_KEY".into()))
    );
    // The real process environment: any variable set for this test process resolves.
    if let Some((name, value)) = std::env::vars().find(|(k, v)| {
        api_key::is_env_name(k) && !v.is_empty() && !v.chars().any(|c| c.is_whitespace())
    }) {
        assert_eq!(ApiKeySource::Env(name).resolve(), Ok(value));
    }
    let unset = ApiKeySource::Env("TEEWATCH_SURELY_UNSET_7F3A".into()).resolve();
    assert_eq!(
        unset,
        Err(ApiKeyError::EnvNotSet("TEEWATCH_SURELY_UNSET_7F3A".into()))
    );

    // A file, trimmed of surrounding whitespace.
    let file = scratch.write("nanogpt.key", "  sk-file-key-0123\n\n");
    assert_eq!(
        ApiKeySource::File(file.clone()).resolve(),
        Ok("sk-file-key-0123".into())
    );
    let gone = ApiKeySource::File(scratch.0.join("absent.key")).resolve();
    assert!(matches!(gone, Err(ApiKeyError::File { .. })), "{gone:?}");

    // A systemd credential from $CREDENTIALS_DIRECTORY.
    let credentials = scratch.0.join("credentials");
    std::fs::create_dir_all(&credentials).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(credentials.join("nanogpt"), "sk-credential-key\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let systemd = env_of(&[(CREDENTIALS_DIRECTORY, &credentials)]);
    let source = ApiKeySource::Credential("nanogpt".into());
    assert_eq!(
        source.resolve_with(&systemd),
        Ok("sk-credential-key".into())
    );
    assert_eq!(
        source.resolve_with(&none),
        Err(ApiKeyError::NoCredentialsDirectory("nanogpt".into()))
    );
    let other = ApiKeySource::Credential("other".into()).resolve_with(&systemd);
    assert!(
        matches!(other, Err(ApiKeyError::Credential { .. })),
        "{other:?}"
    );

    // Keys that cannot be sent are refused, and no error or Debug output shows one.
    let empty = scratch.write("empty.key", " \n");
    let spaced = scratch.write("spaced.key", "sk-first-half second-half\n");
    let binary = scratch.0.join("binary.key");
    std::fs::write(&binary, [0xff, 0xfe, b's', b'k']).unwrap_or_else(|e| panic!("{e}"));
    let empty = ApiKeySource::File(empty).resolve();
    let spaced = ApiKeySource::File(spaced).resolve();
    let binary = ApiKeySource::File(binary).resolve();
    assert!(matches!(empty, Err(ApiKeyError::Empty(_))), "{empty:?}");
    assert!(
        matches!(spaced, Err(ApiKeyError::BadCharacters(_))),
        "{spaced:?}"
    );
    assert!(matches!(binary, Err(ApiKeyError::NotUtf8(_))), "{binary:?}");
    let errors = [empty, spaced, binary, missing, gone, other];
    for error in errors {
        let Err(error) = error else {
            panic!("expected an error");
        };
        let shown = format!("{error} {error:?}");
        for secret in [
            "sk-env-key",
            "sk-file",
            "sk-first-half",
            "second-half",
            "sk-credential",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }
    // A loaded configuration names the place only.
    let config = Config::parse_in(
        "[[target]]\nname = \"n\"\nprofile = \"nanogpt\"\nmodel = \"m\"\napi_key_file = \"nanogpt.key\"\n",
        "t.toml",
        &scratch.0,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?}");
    assert!(
        shown.contains("nanogpt.key") && !shown.contains("sk-file-key"),
        "{shown}"
    );
    assert_eq!(
        only_monitor(&config).api_key.resolve(),
        Ok("sk-file-key-0123".into())
    );
}

#[test]
fn api_key_fields_never_echo_their_value() {
    let text = r#"
[[target]]
name = "a"
profile = "nanogpt"
model = "m"
api_key_env = "sk-pasted-by-mistake-42"
[[target]]
name = "b"
profile = "nanogpt"
model = "m"
api_key_credential = "sk/pasted/credential"
[[target]]
name = "c"
profile = "nanogpt"
model = "m"
api_key_file = ""
"#;
    let Err(error) = Config::parse(text, "t.toml") else {
        panic!("expected errors");
    };
    let message = error.to_string();
    assert_eq!(error.issues.len(), 3, "{message}");
    for needle in [
        "target[0].api_key_env: expected an environment variable name",
        "target[1].api_key_credential: expected a systemd credential name",
        "target[2].api_key_file: expected a path to a file holding only the key, found an empty string",
    ] {
        assert!(
            message.contains(needle),
            "missing {needle:?} in:\n{message}"
        );
    }
    assert!(!message.contains("pasted"), "{message}");
}

#[test]
fn gateway_pins_and_formats_are_read_and_checked() {
    let config = parse(
        "[[target]]\nname = \"g\"\nformats = [\"near-gateway\"]\n[target.gateway_pins]\nmrtd = \"f06dfda6dce1cf904d4e2bab1dc370634cf95cefa2ceb2de2eee127c9382698090d7a4a13e14c536ec6c9c3c8fa87077\"\ncompose_hash = [\"aa00000000000000000000000000000000000000000000000000000000000000\"]\n",
    );
    let policy = &config.target("g").unwrap_or_else(|| panic!("no g")).policy;
    assert_eq!(
        policy.formats.as_deref(),
        Some(&["near-gateway".to_string()][..])
    );
    assert_eq!(policy.gateway_pins.len(), 2);
    assert!(policy.pins.is_empty());

    // A near target accepts the NEAR formats unless it names its own; others accept any.
    let config = parse(
        "[[target]]\nname = \"n\"\nprofile = \"near\"\nmodel = \"m\"\napi_key_env = \"K\"\n[[target]]\nname = \"v\"\nprofile = \"nanogpt\"\nmodel = \"m\"\napi_key_env = \"K\"\n",
    );
    assert_eq!(
        config.target("n").and_then(|t| t.policy.formats.as_deref()),
        Some(&["near-gateway".to_string(), "near-direct".to_string()][..])
    );
    assert_eq!(
        config.target("v").map(|t| t.policy.formats.clone()),
        Some(None)
    );

    let text = "[[target]]\nname = \"bad\"\nformats = [\"chutes\"]\n[target.gateway_pins]\ngpu_driver_version = \"550.1\"\nmrtd = \"00\"\n[[target]]\nname = \"empty\"\nformats = []\n";
    let Err(error) = Config::parse(text, "t.toml") else {
        panic!("expected errors");
    };
    let message = error.to_string();
    for needle in [
        "target[0].gateway_pins.gpu_driver_version: unknown field; expected one of mrtd,",
        "target[0].gateway_pins.mrtd[0]: expected 96 hex characters (48 bytes), found \"00\"",
        "target[0].formats[0]: expected one of dstack, near-gateway, near-direct, found \"chutes\"",
        "target[1].formats: expected at least one accepted format, found an empty list",
    ] {
        assert!(
            message.contains(needle),
            "missing {needle:?} in:\n{message}"
        );
    }
    // The gateway has no GPU: no GPU field is offered for it.
    assert!(!message.contains("gpu_block_<n>"), "{message}");
    assert_eq!(error.issues.len(), 4, "{message}");
}

#[test]
fn the_known_measurements_table_is_on_by_default_and_can_be_turned_off_or_extended() {
    let shipped = crate::verify::known::table()
        .map(|t| t.version)
        .unwrap_or_else(|e| panic!("{e}"));
    let known = |text: &str| {
        parse(text)
            .targets
            .first()
            .and_then(|t| t.policy.known.clone())
    };

    let on = known("[[target]]\nname = \"a\"\n");
    assert_eq!(on.map(|k| (k.version, k.extra.len())), Some((shipped, 0)));
    assert_eq!(
        known("[[target]]\nname = \"a\"\nknown_measurements = false\n"),
        None
    );

    let mrtd = "ab".repeat(48);
    let extended = known(&format!(
        "[[target]]\nname = \"a\"\n[[target.known_extra]]\nfield = \"mrtd\"\nvalue = \"0x{mrtd}\"\nname = \"our build\"\n"
    ));
    let extra = extended.map(|k| k.extra).unwrap_or_default();
    assert_eq!(extra.len(), 1);
    assert_eq!(
        extra.first().map(|r| (r.field.as_str(), r.name.as_str())),
        Some(("mrtd", "our build"))
    );

    let text = format!(
        "[[target]]\nname = \"bad\"\nknown_measurements = \"no\"\n[[target.known_extra]]\nfield = \"rtmr0\"\nvalue = \"00\"\nname = \"x\"\nnote = \"y\"\n[[target.known_extra]]\nfield = \"mrseam\"\nvalue = \"{mrtd}\"\n[[target]]\nname = \"off\"\nknown_measurements = false\n[[target.known_extra]]\nfield = \"mrtd\"\nvalue = \"{mrtd}\"\nname = \"x\"\n"
    );
    let Err(error) = Config::parse(&text, "t.toml") else {
        panic!("expected errors");
    };
    let message = error.to_string();
    for needle in [
        "target[0].known_measurements: expected true or false, found \"no\"",
        "target[0].known_extra[0].note: unknown key; expected one of field, value, name",
        "target[0].known_extra[1].name: missing; expected the name shown for the value",
        "target[0].known_extra[0].field: expected one of mrseam, mrtd, found \"rtmr0\"",
        "target[0].known_extra[0].value: expected 96 hex characters (48 bytes), found \"00\"",
        "target[1].known_extra: rows are set, and known_measurements = false turns the table off",
    ] {
        assert!(
            message.contains(needle),
            "missing {needle:?} in:\n{message}"
        );
    }
    assert_eq!(error.issues.len(), 6, "{message}");
}

#[test]
fn a_fleet_without_a_lease_gets_a_third_of_its_shortest_interval_and_a_too_long_one_is_refused() {
    let fleet = |daemon_extra: &str, interval: &str| {
        format!(
            "[daemon]\ndb = \"postgres://teewatch@db.internal/teewatch\"\n{daemon_extra}\n\
             [[target]]\nname = \"a\"\nprofile = \"nanogpt\"\nmodel = \"TEE/a\"\n\
             api_key_env = \"K\"\ninterval = \"{interval}\"\n"
        )
    };
    // No lease: 30 s, shortened to a third of a 10 s interval.
    let config = parse(&fleet("", "10s"));
    assert_eq!(config.daemon.fleet.lease, Duration::from_secs(10) / 3);
    // Long intervals keep the 30 s default.
    let config = parse(&fleet("", "5m"));
    assert_eq!(config.daemon.fleet.lease, Duration::from_secs(30));
    // A lease given is kept as given, and refused when a dead instance's targets could wait
    // longer than one interval.
    let config = parse(&fleet("lease = \"4s\"", "10s"));
    assert_eq!(config.daemon.fleet.lease, Duration::from_secs(4));
    let refused =
        match Config::parse_in(&fleet("lease = \"5s\"", "10s"), "t.toml", Path::new("/etc")) {
            Ok(_) => panic!("a 5 s lease for a 10 s interval was accepted"),
            Err(e) => e.to_string(),
        };
    assert!(
        refused.contains(
            "daemon.lease: expected a lease shorter than half the shortest target interval (10s), so a dead instance's targets are taken over within one interval, found 5s"
        ),
        "{refused}"
    );
}
