//! Tests of configuration loading: every mistake reported with its path, trust anchors.
use super::*;

#[test]
fn nras_url_and_anchors_become_trust_anchors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = r#"
[nvidia]
nras_url = "https://nras.example.test/"
nras_anchors = ["tests/fixtures/nras_test_pki/intermediate.pem", "crates/verify/anchors/nras_gpu_intermediate_004.pem"]
"#;
    let config = Config::parse_in(text, "t.toml", dir).unwrap_or_else(|e| panic!("{e}"));
    let anchors = config.trust_anchors();
    assert_eq!(anchors.nras_url, "https://nras.example.test");
    assert_eq!(anchors.nras_intermediates_der.len(), 2);
    // Without [nvidia] the compiled-in defaults apply.
    let anchors = Config::parse("", "t.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .trust_anchors();
    assert_eq!(anchors.nras_url, DEFAULT_NRAS_URL);
    assert_eq!(
        anchors.nras_intermediates_der,
        TrustAnchors::production().nras_intermediates_der
    );
    // Unreadable anchors and a plain-http remote NRAS are configuration errors.
    let text = r#"
[nvidia]
nras_url = "http://nras.attestation.nvidia.com"
nras_anchors = ["no/such/file.pem", "Cargo.toml"]
"#;
    let Err(error) = Config::parse_in(text, "t.toml", dir) else {
        panic!("expected errors");
    };
    let text = error.to_string();
    assert!(
        text.contains("nvidia.nras_url: expected an https:// base url"),
        "{text}"
    );
    assert!(
        text.contains("nvidia.nras_anchors[0]: cannot read"),
        "{text}"
    );
    assert!(
        text.contains("nvidia.nras_anchors[1]:")
            && text.contains("is not a pem or der x.509 certificate"),
        "{text}"
    );
}

#[test]
fn loopback_means_a_loopback_address() {
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost/x",
        "http://[::1]/",
        "http://[::1]:9",
        "http://127.9.9.9",
    ] {
        assert!(is_loopback_http(url), "{url}");
    }
    for url in [
        "http://127.example.com",
        "http://10.0.0.1",
        "https://127.0.0.1",
        "http://[::2]",
        "http://localhost.evil",
        "http://127.0.0.1:1@example.com/",
        "http://localhost:x@example.com/",
    ] {
        assert!(!is_loopback_http(url), "{url}");
    }
    // Either scheme for the test roots' rule, with the same reading of the host.
    assert!(is_loopback_url("https://127.0.0.1:8443"));
    assert!(is_loopback_url("http://localhost/x"));
    for url in [
        "https://nano-gpt.com",
        "https://127.0.0.1:1@example.com/",
        "ftp://127.0.0.1",
    ] {
        assert!(!is_loopback_url(url), "{url}");
    }
}

#[test]
fn the_shipped_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let config = Config::load(Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.targets.is_empty());
    assert_eq!(config.monitored().count(), config.targets.len());
    for (_, monitor) in config.monitored() {
        assert_eq!(monitor.profile, Profile::Nanogpt);
        assert_eq!(
            monitor.api_key,
            ApiKeySource::Credential("nanogpt_api_key".into())
        );
    }
    // The commented vllm-proxy example is valid once uncommented.
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let Some((head, example)) = text.split_once("\n# [[target]]\n") else {
        panic!("config.toml has no commented vllm-proxy example");
    };
    let example = format!(
        "{head}\n[[target]]{}",
        format!("\n{example}").replace("\n# ", "\n")
    );
    let config = Config::parse(&example, "config.toml").unwrap_or_else(|e| panic!("{e}"));
    let Some(vllm) = config.target("my-vllm").and_then(|t| t.monitor.as_ref()) else {
        panic!("the vllm-proxy example is not monitored");
    };
    let Some(near) = config.target("near-glm") else {
        panic!("config.toml has no commented near example");
    };
    assert_eq!(near.policy.gateway_pins.len(), 1);
    assert_eq!(near.policy.formats, Some(vec!["near-gateway".to_string()]));
    assert_eq!(vllm.profile, Profile::VllmProxy);
}

#[test]
fn every_mistake_is_reported_with_its_path() {
    let text = r#"
[intel]
allowed_tcb_statuses = ["UpToDate", "Fine"]
[dangerous]
trust_everything = true
dangerous_trust_anything = true
[[target]]
name = "a"
api_key = "sk-secret"
colour = "blue"
[target.pins]
mrtd = ["nothex"]
bogus = ["00"]
[[target]]
name = "a"
"#;
    let Err(error) = Config::parse(text, "t.toml") else {
        panic!("expected errors");
    };
    let text = error.to_string();
    for needle in [
        "dangerous.trust_everything: options in [dangerous] must be named dangerous_*",
        "dangerous.dangerous_trust_anything: unknown dangerous option; expected one of dangerous_intel_root_ca",
        "target[0].api_key: an api key must not be written into the configuration",
        "target[0].colour: unknown key",
        "target[0].pins.bogus: unknown field",
        "target[0].pins.mrtd[0]: expected 96 hex characters (48 bytes), found \"nothex\"",
        "intel.allowed_tcb_statuses[1]: expected one of",
        "target[1].name: duplicate target name \"a\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(error.issues.len(), 8, "{text}");
    assert!(
        !text.contains("sk-secret"),
        "the api key leaked into the error:\n{text}"
    );
}

#[test]
fn test_roots_replace_anchors_only_for_loopback_targets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = r#"
[dangerous]
dangerous_intel_root_ca = "tests/fixtures/gpu_test_pki/root.pem"
dangerous_nvidia_device_root = "tests/fixtures/gpu_test_pki/root.der"
dangerous_nras_intermediates = ["tests/fixtures/nras_test_pki/intermediate.pem"]
[[target]]
name = "sim"
base_url = "http://127.0.0.1:8080"
"#;
    let config = Config::parse_in(text, "t.toml", dir).unwrap_or_else(|e| panic!("{e}"));
    let anchors = config.trust_anchors();
    let production = TrustAnchors::production();
    assert_ne!(anchors.intel_root_der, production.intel_root_der);
    assert_ne!(
        anchors.nvidia_device_root_der,
        production.nvidia_device_root_der
    );
    assert_eq!(anchors.nras_intermediates_der.len(), 1);
    assert_eq!(
        anchors.dangerous,
        [
            "dangerous_intel_root_ca",
            "dangerous_nvidia_device_root",
            "dangerous_nras_intermediates"
        ]
    );
    // The same roots with a remote target, or a target without a base_url, are refused.
    let remote = text.replace("http://127.0.0.1:8080", "https://nano-gpt.com");
    let Err(error) = Config::parse_in(&remote, "t.toml", dir) else {
        panic!("expected the remote target to be refused");
    };
    let message = error.to_string();
    assert!(
        message.contains("target[0].base_url: [dangerous] test roots (dangerous_intel_root_ca, dangerous_nvidia_device_root, dangerous_nras_intermediates) are refused for target \"sim\": expected an http:// or https:// loopback base_url, found \"https://nano-gpt.com\""),
        "{message}"
    );
    let missing = text.replace("base_url = \"http://127.0.0.1:8080\"\n", "");
    assert!(Config::parse_in(&missing, "t.toml", dir).is_err());
    // Wrong shapes and unreadable files are reported with their paths.
    let bad = r#"
[dangerous]
dangerous_intel_root_ca = ["a.pem"]
dangerous_nvidia_device_root = "missing.pem"
"#;
    let Err(error) = Config::parse_in(bad, "t.toml", dir) else {
        panic!("expected errors");
    };
    let message = error.to_string();
    assert!(
        message.contains(
            "dangerous.dangerous_intel_root_ca: expected a certificate file path, found array"
        ),
        "{message}"
    );
    assert!(
        message.contains("dangerous.dangerous_nvidia_device_root[0]: cannot read"),
        "{message}"
    );
}

#[test]
fn a_file_with_many_mistakes_reports_them_all_at_once() {
    let text = r#"
[daemon]
listen = "localhost"
retention_days = -1

[intel]
pccs_url = "http://pccs.phala.network"

[[target]]
name = "bad-interval"
profile = "nanogpt"
model = "m"
api_key_env = "NANOGPT_API_KEY"
interval = "5 minutes"

[[target]]
name = "interval-and-cron"
profile = "nanogpt"
model = "m"
api_key_env = "NANOGPT_API_KEY"
interval = "5m"
cron = "*/5 * * * *"

[[target]]
name = "bad-cron"
profile = "nanogpt"
model = "m"
api_key_env = "NANOGPT_API_KEY"
cron = "*/5 25 * *"

[[target]]
name = "no-model"
profile = "nanogpt"
api_key_env = "NANOGPT_API_KEY"

[[target]]
name = "two-key-sources"
profile = "nanogpt"
model = "m"
api_key_env = "NANOGPT_API_KEY"
api_key_file = "nanogpt.key"

[[target]]
name = "inline-key"
profile = "nanogpt"
model = "m"
api_key = "sk-live-0123456789abcdef"

[[target]]
name = "remote-http"
profile = "vllm-proxy"
base_url = "http://tee.example.com"
model = "m"
api_key_credential = "vllm"

[[target]]
name = "signature-without-id"
profile = "vllm-proxy"
base_url = "https://tee.example.com"
model = "m"
api_key_env = "VLLM_KEY"
[target.paths]
signature = "/v1/signature"

[[target]]
name = "no-canary"
profile = "nanogpt"
model = "m"
api_key_env = "NANOGPT_API_KEY"
[target.canary]
stream = false
non_stream = false
max_tokens = 5000

[[target]]
name = "no-time"
profile = "nanogpt"
model = "m"
api_key_env = "NANOGPT_API_KEY"
timeout_seconds = 0

[[target]]
name = "unknown-profile"
profile = "openai"
model = "m"
api_key_env = "sk-live-0123456789abcdef"
"#;
    let Err(error) = Config::parse(text, "many.toml") else {
        panic!("expected errors");
    };
    let message = error.to_string();
    let expected = [
        "daemon.listen: expected an ip address and port such as \"127.0.0.1:9477\" or \"[::1]:9477\", found \"localhost\"",
        "daemon.retention_days: expected an integer from 1 to 36500, found -1",
        "intel.pccs_url: expected an https:// base url (http only for loopback), found \"http://pccs.phala.network\"",
        "target[0].interval: expected a duration such as \"30s\", \"5m\", \"1h\" or \"1h30m\" (units d, h, m, s, largest first), found \"5 minutes\"",
        "target[1]: expected interval or cron, found both",
        "target[2].cron: expected a cron expression of 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), found 4 fields in \"*/5 25 * *\"",
        "target[3].model: missing; expected the model name the provider serves",
        "target[4]: expected exactly one of api_key_env, api_key_file, api_key_credential, found api_key_env and api_key_file",
        "target[5].api_key: an api key must not be written into the configuration; name where to read it instead: api_key_env",
        "target[6].base_url: expected an https:// base url (http only for loopback), found \"http://tee.example.com\"",
        "target[7].paths.signature: expected a path starting with / and containing {id}",
        "target[8].canary.max_tokens: expected an integer from 1 to 4096, found 5000",
        "target[8].canary: expected stream or non_stream (or both) to be true, found both false",
        "target[9].timeout_seconds: expected an integer from 1 to 600, found 0",
        "target[10].profile: expected one of nanogpt, vllm-proxy, near, found \"openai\"",
        "target[10].api_key_env: expected an environment variable name",
    ];
    for needle in expected {
        assert!(
            message.contains(needle),
            "missing {needle:?} in:\n{message}"
        );
    }
    assert_eq!(error.issues.len(), expected.len(), "{message}");
    assert!(message.starts_with("many.toml: 16 problems\n"), "{message}");
    assert!(
        !message.contains("0123456789abcdef"),
        "a key leaked into the error:\n{message}"
    );
    // A bad cron field is named with its range.
    let Err(error) = Config::parse(&text.replace("*/5 25 * *", "*/5 25 * * *"), "t.toml") else {
        panic!("expected errors");
    };
    assert!(
        error.to_string().contains("target[2].cron: expected the hour field to be *, a value, a range a-b, a list a,b or a step */n, with values from 0 to 23, found \"25\""),
        "{error}"
    );
}

#[test]
fn docs_config_md_documents_every_key_and_its_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let keys = global::DAEMON_KEYS
        .iter()
        .chain(&global::INTEL_KEYS)
        .chain(&global::NVIDIA_KEYS)
        .chain(&target::TARGET_KEYS)
        .chain(&provider::PATHS_KEYS)
        .chain(&provider::CANARY_KEYS)
        .chain(&dangerous::DANGEROUS_KEYS);
    for key in keys {
        assert!(
            doc.contains(&format!("`{key}`")) || doc.contains(&format!("`[target.{key}]`")),
            "docs/config.md does not document {key}"
        );
    }
    for section in TOP_KEYS {
        assert!(
            doc.contains(&format!("[{section}]")),
            "docs/config.md has no [{section}]"
        );
    }
    let Some((_, after)) = doc.split_once("## A complete example\n\n```toml\n") else {
        panic!("docs/config.md has no complete example");
    };
    let Some((example, _)) = after.split_once("```") else {
        panic!("the complete example is not closed");
    };
    let config = Config::parse(example, "docs/config.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.targets.len(), 3);
    assert_eq!(config.monitored().count(), 2);
}

#[test]
fn the_near_profile_defaults_to_ed25519_and_signing_algo_is_checked() {
    let text = r#"
[[target]]
name = "near"
profile = "near"
model = "zai-org/GLM-4.7"
api_key_env = "NEAR_KEY"

[[target]]
name = "via-nanogpt"
profile = "nanogpt"
model = "TEE/glm-4.7"
api_key_env = "NANOGPT_KEY"
signing_algo = "ed25519"
"#;
    let config = Config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let near = config.target("near").and_then(|t| t.monitor.as_ref());
    let near = near.unwrap_or_else(|| panic!("near is monitored"));
    assert_eq!(near.base_url, "https://cloud-api.near.ai");
    assert_eq!(near.signing_algo, SigningAlgo::Ed25519);
    assert_eq!(near.paths.attestation, "/v1/attestation/report");
    let proxied = config
        .target("via-nanogpt")
        .and_then(|t| t.monitor.as_ref());
    let proxied = proxied.unwrap_or_else(|| panic!("via-nanogpt is monitored"));
    assert_eq!(proxied.signing_algo, SigningAlgo::Ed25519);
    assert!(!proxied.profile.connects_directly());

    let bad = text.replace("signing_algo = \"ed25519\"", "signing_algo = \"rsa\"");
    let Err(error) = Config::parse(&bad, "t.toml") else {
        panic!("expected an unknown signing_algo to be refused");
    };
    assert!(
        error
            .to_string()
            .contains("target[1].signing_algo: expected \"ecdsa\" or \"ed25519\", found \"rsa\""),
        "{error}"
    );
}

#[test]
fn collateral_refresh_defaults_to_a_day_and_is_bounded() {
    let refresh = |value: &str| {
        Config::parse(
            &format!("[intel]\ncollateral_refresh = {value}\n"),
            "t.toml",
        )
        .map(|c| c.intel.collateral_refresh)
    };
    let default = Config::parse("", "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        default.intel.collateral_refresh,
        std::time::Duration::from_secs(86_400)
    );
    assert_eq!(default.intel.collateral_refresh, DEFAULT_COLLATERAL_REFRESH);
    for (text, seconds) in [
        ("\"24h\"", 86_400),
        ("\"1h\"", 3_600),
        ("\"6h30m\"", 23_400),
        ("\"7d\"", 604_800),
        ("\"6d23h59m59s\"", 604_799),
    ] {
        let found = refresh(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(found, std::time::Duration::from_secs(seconds), "{text}");
    }
    let bounds = "intel.collateral_refresh: expected a duration from \"1h\" (a refresh is tried \
                  at most hourly) to \"7d\" (collateral is valid about 30 days; longer would \
                  leave a revocation unseen for weeks), found";
    for text in ["0s", "0d", "59m59s", "10s", "7d1s", "30d"] {
        let Err(error) = refresh(&format!("\"{text}\"")) else {
            panic!("{text} was accepted");
        };
        assert!(
            error.to_string().contains(&format!("{bounds} \"{text}\"")),
            "{error}"
        );
        assert_eq!(error.issues.len(), 1, "{error}");
    }
    for (value, needle) in [
        (
            "\"soon\"",
            "intel.collateral_refresh: expected a duration such as \"30s\"",
        ),
        (
            "\"\"",
            "intel.collateral_refresh: expected a duration such as \"30s\"",
        ),
        ("\"24\"", "found \"24\""),
        ("\"1m1h\"", "found \"1m1h\""),
        (
            "24",
            "intel.collateral_refresh: expected a duration such as \"24h\", found integer",
        ),
    ] {
        let Err(error) = refresh(value) else {
            panic!("{value} was accepted");
        };
        assert!(error.to_string().contains(needle), "{value}: {error}");
    }
}
