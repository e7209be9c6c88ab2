//! Tests of `[target.provenance]` and the Sigstore test roots: a valid table becomes the
//! target's policy, and each mistake is reported at its key with what was expected.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;

const TARGET: &str = "[[target]]\nname = \"t\"\n";
const ROW: &str = "\"ghcr.io/o/app\" = { issuer = \"https://i\", subject = \"https://s\" }\n";

fn issues(text: &str) -> Vec<ConfigIssue> {
    match Config::parse(text, "t.toml") {
        Ok(_) => panic!("expected an invalid configuration:\n{text}"),
        Err(e) => e.issues,
    }
}

#[test]
fn a_provenance_table_becomes_the_targets_policy() {
    let text = format!(
        "{TARGET}[target.provenance]\nrekor_url = \"http://127.0.0.1:3000/\"\n{ROW}\"ghcr.io/o/proxy\" = {{ issuer = \"https://i\", subject = \"https://s/*\", required = true }}\n"
    );
    let config = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let provenance = config.targets[0].policy.provenance.clone().unwrap();
    assert_eq!(provenance.rekor_url, "http://127.0.0.1:3000");
    // No attestations_url: GitHub's API for ghcr.io images only.
    assert_eq!(provenance.attestations_url, None);
    assert_eq!(
        provenance.attestations_base("ghcr.io/o/app").as_deref(),
        Some("https://api.github.com")
    );
    assert_eq!(provenance.attestations_base("docker.io/o/app"), None);
    assert_eq!(provenance.images.len(), 2);
    assert!(!provenance.images["ghcr.io/o/app"].required);
    assert!(provenance.images["ghcr.io/o/proxy"].required);
    // The policy travels in the bundle's snapshot, and a target without the table has none.
    let snapshot = config.targets[0].policy.snapshot();
    assert_eq!(snapshot.provenance.as_ref(), Some(&provenance));
    let plain = Config::parse(TARGET, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.targets[0].policy.provenance, None);
    assert_eq!(
        plain.targets[0]
            .policy
            .provenance
            .as_ref()
            .map(|p| p.rekor_url.as_str()),
        None
    );
}

#[test]
fn a_configured_attestations_url_is_asked_for_every_image() {
    let text = format!(
        "{TARGET}[target.provenance]\nattestations_url = \"http://127.0.0.1:3000/\"\n{ROW}"
    );
    let config = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let provenance = config.targets[0].policy.provenance.clone().unwrap();
    assert_eq!(
        provenance.attestations_url.as_deref(),
        Some("http://127.0.0.1:3000")
    );
    assert_eq!(
        provenance.attestations_base("docker.io/o/app").as_deref(),
        Some("http://127.0.0.1:3000")
    );
    let found = issues(&format!(
        "{TARGET}[target.provenance]\nattestations_url = \"http://api.github.com\"\n{ROW}"
    ));
    assert!(
        found
            .iter()
            .any(|i| i.path == "target[0].provenance.attestations_url"
                && i.message
                    .starts_with("expected an https:// base url (http only for loopback), found ")),
        "{found:#?}"
    );
}

#[test]
fn each_provenance_mistake_names_its_key() {
    let cases = [
        (
            "\"ghcr.io/o/app\" = { issuer = \"https://i\" }\n",
            "target[0].provenance.\"ghcr.io/o/app\".subject",
            "missing; image ghcr.io/o/app needs the subject its signing certificate must name",
        ),
        (
            "\"ghcr.io/o/app\" = \"https://i\"\n",
            "target[0].provenance.\"ghcr.io/o/app\"",
            "expected { issuer = \"…\", subject = \"…\" } for image ghcr.io/o/app, found string",
        ),
        (
            "\"ghcr.io/o/app\" = { issuer = \"https://i\", subject = \"https://s\", required = \"yes\" }\n",
            "target[0].provenance.\"ghcr.io/o/app\".required",
            "expected true or false, found \"yes\"",
        ),
        (
            "\"ghcr.io/o/app:v1\" = { issuer = \"https://i\", subject = \"https://s\" }\n",
            "target[0].provenance.\"ghcr.io/o/app:v1\"",
            "expected an image repository without tag or digest (such as ghcr.io/org/image), found \"ghcr.io/o/app:v1\"",
        ),
        (
            "\"ghcr.io/o/app\" = { issuer = \"https://i\", subject = \"\" }\n",
            "target[0].provenance.\"ghcr.io/o/app\".subject",
            "expected a non-empty subject, found an empty string",
        ),
        (
            "\"ghcr.io/o/app\" = { issuer = \"https://i\", subject = \"https://s\", workflow = \"x\" }\n",
            "target[0].provenance.\"ghcr.io/o/app\".workflow",
            "unknown key; expected one of issuer, subject, required",
        ),
        (
            "",
            "target[0].provenance",
            "expected at least one image row (\"ghcr.io/org/image\" = { issuer = \"…\", subject = \"…\" }), found none",
        ),
    ];
    for (body, path, message) in cases {
        let found = issues(&format!("{TARGET}[target.provenance]\n{body}"));
        assert!(
            found.iter().any(|i| i.path == path && i.message == message),
            "{body}: expected {path}: {message}, found {found:#?}"
        );
    }
}

#[test]
fn the_sigstore_test_roots_come_as_a_pair() {
    let dir = std::env::temp_dir().join(format!("teewatch-config-{}-sigstore", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let pem = "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n";
    std::fs::write(dir.join("rekor.pem"), pem).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("not-pem.txt"), "hello").unwrap_or_else(|e| panic!("{e}"));
    let text = "[dangerous]\ndangerous_rekor_key = \"rekor.pem\"\n[[target]]\nname = \"t\"\nprofile = \"vllm-proxy\"\nbase_url = \"http://127.0.0.1:1\"\nmodel = \"m\"\napi_key_env = \"K\"\n".to_string();
    let found = match Config::parse_in(&text, "t.toml", &dir) {
        Ok(_) => panic!("a lone dangerous_rekor_key was accepted"),
        Err(e) => e.issues,
    };
    assert!(
        found.iter().any(|i| i.path == "dangerous"
            && i.message.starts_with(
                "expected both dangerous_sigstore_fulcio_root and dangerous_rekor_key"
            )),
        "{found:#?}"
    );
    let text = text.replace(
        "dangerous_rekor_key = \"rekor.pem\"",
        "dangerous_rekor_key = \"rekor.pem\"\ndangerous_sigstore_fulcio_root = \"not-pem.txt\"",
    );
    let found = match Config::parse_in(&text, "t.toml", &dir) {
        Ok(_) => panic!("a non-pem fulcio root was accepted"),
        Err(e) => e.issues,
    };
    assert!(
        found
            .iter()
            .any(|i| i.path == "dangerous.dangerous_sigstore_fulcio_root"
                && i.message
                    .starts_with("expected a pem file, found no pem block in ")),
        "{found:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
