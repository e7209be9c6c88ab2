//! Tests of configuration loading: every mistake reported with its path, trust anchors.
use super::*;

#[test]
fn nras_url_and_anchors_become_trust_anchors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = r#"
[nvidia]
nras_url = "https://nras.example.test/"
nras_anchors = ["tests/fixtures/nras_test_pki/intermediate.pem", "src/anchors/nras_gpu_intermediate_004.pem"]
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
    ] {
        assert!(!is_loopback_http(url), "{url}");
    }
}

#[test]
fn the_shipped_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let config = Config::load(Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.targets.is_empty());
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
        message.contains("target[0].base_url: [dangerous] test roots (dangerous_intel_root_ca, dangerous_nvidia_device_root, dangerous_nras_intermediates) are refused for target \"sim\": expected an http:// loopback base_url, found \"https://nano-gpt.com\""),
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
