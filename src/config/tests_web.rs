//! Tests of `[daemon] web_config` (exporter-toolkit's web configuration file) and of the refusal
//! of a plain listener off loopback.
use std::path::PathBuf;

use rcgen::{CertificateParams, KeyPair};

use super::*;

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("teewatch-web-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    /// Loads `toml` with a policy-only target added, since `Config::load` refuses a file
    /// without one.
    fn load(&self, toml: &str) -> Result<Config, ConfigError> {
        let text = format!("{toml}\n[[target]]\nname = \"t\"\n");
        Config::load(&self.write("teewatch.toml", &text))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed server certificate and its key, as PEM.
fn server_identity() -> (String, String) {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .and_then(|p| p.self_signed(&key))
        .unwrap_or_else(|e| panic!("{e}"));
    (cert.pem(), key.serialize_pem())
}

/// A bcrypt hash at the lowest cost (the tests' speed; the cost is the hash's own).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap_or_else(|e| panic!("{e}"))
}

fn issues(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("the configuration was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_plain_listener_off_loopback_is_refused_naming_the_fix() {
    let dir = Scratch::new("plain");
    for listen in ["0.0.0.0:9477", "[::]:9477", "192.0.2.10:9477"] {
        let text = issues(dir.load(&format!("[daemon]\nlisten = \"{listen}\"\n")));
        assert!(
            text.contains(&format!(
                "daemon.listen: {listen} is not a loopback address"
            )),
            "{text}"
        );
        assert!(
            text.contains("web_config = \"/etc/teewatch/web.yml\"")
                && text.contains("tls_server_config")
                && text.contains("allow_plain_http_off_loopback = true"),
            "the error names both fixes: {text}"
        );
    }
    // Loopback needs nothing.
    for listen in ["127.0.0.1:9477", "[::1]:9477", "127.0.0.2:1"] {
        dir.load(&format!("[daemon]\nlisten = \"{listen}\"\n"))
            .unwrap_or_else(|e| panic!("{listen}: {e}"));
    }
    // Basic authentication without TLS would send the password in the clear: still refused.
    dir.write(
        "web.yml",
        &format!("basic_auth_users:\n  prometheus: {}\n", hash("pw")),
    );
    let text = issues(dir.load("[daemon]\nlisten = \"0.0.0.0:9477\"\nweb_config = \"web.yml\"\n"));
    assert!(text.contains("is not a loopback address"), "{text}");
    // The explicit option allows it, and is kept in the configuration for the listener.
    let config = dir
        .load("[daemon]\nlisten = \"0.0.0.0:9477\"\nallow_plain_http_off_loopback = true\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.daemon.allow_plain_http_off_loopback);
    assert!(config.daemon.web.is_none());
    let text = issues(dir.load("[daemon]\nallow_plain_http_off_loopback = \"yes\"\n"));
    assert!(
        text.contains("daemon.allow_plain_http_off_loopback: expected true or false"),
        "{text}"
    );
    // TLS makes a non-loopback address fine.
    let (cert, key) = server_identity();
    dir.write("tls/server.crt", &cert);
    dir.write("tls/server.key", &key);
    dir.write(
        "tls/web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let config = dir
        .load("[daemon]\nlisten = \"0.0.0.0:9477\"\nweb_config = \"tls/web.yml\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let web = config.daemon.web.unwrap_or_else(|| panic!("no web config"));
    assert_eq!(web.file, dir.0.join("tls/web.yml"));
    assert!(web.basic_auth_users.is_empty());
    let tls = web.tls.unwrap_or_else(|| panic!("no tls"));
    assert_eq!(tls.client_auth, ClientAuth::NoClientCert);
    assert!(tls.server_config().is_ok());
}

#[test]
fn a_web_config_with_tls_client_certificates_and_users_loads() {
    let dir = Scratch::new("full");
    let (cert, key) = server_identity();
    let (ca, _) = server_identity();
    dir.write("server.crt", &cert);
    dir.write("server.key", &key);
    dir.write("ca.crt", &ca);
    let prometheus = hash("s3cret");
    dir.write(
        "web.yml",
        &format!(
            "# exporter-toolkit's format\n\
             tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\n\
             basic_auth_users:\n  prometheus: {prometheus}\n  grafana: '{}'\n",
            hash("other")
        ),
    );
    let config = dir
        .load("[daemon]\nweb_config = \"web.yml\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let web = config
        .daemon
        .web
        .clone()
        .unwrap_or_else(|| panic!("no web"));
    assert_eq!(
        web.basic_auth_users.keys().collect::<Vec<_>>(),
        ["grafana", "prometheus"]
    );
    assert_eq!(web.basic_auth_users.get("prometheus"), Some(&prometheus));
    let tls = web.tls.clone().unwrap_or_else(|| panic!("no tls"));
    assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
    let server = tls.server_config().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);
    // The hashes never show in debug output.
    let debug = format!("{web:?}");
    assert!(
        debug.contains("prometheus") && !debug.contains(&prometheus),
        "{debug}"
    );
    // The same files load equal; a renewed certificate does not.
    let again = dir
        .load("[daemon]\nweb_config = \"web.yml\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.daemon, config.daemon);
    let (cert, key) = server_identity();
    dir.write("server.crt", &cert);
    dir.write("server.key", &key);
    let renewed = dir
        .load("[daemon]\nweb_config = \"web.yml\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(renewed.daemon, config.daemon);
    // An empty file is neither TLS nor authentication, as in exporter-toolkit.
    dir.write("empty.yml", "");
    let config = dir
        .load("[daemon]\nweb_config = \"empty.yml\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let web = config.daemon.web.unwrap_or_else(|| panic!("no web"));
    assert!(web.tls.is_none() && web.basic_auth_users.is_empty());
}

#[test]
fn every_problem_of_a_web_config_is_reported_at_once() {
    let dir = Scratch::new("bad");
    let (cert, _) = server_identity();
    let (_, other_key) = server_identity();
    dir.write("server.crt", &cert);
    dir.write("other.key", &other_key);
    let secret_hash = hash("pw");
    dir.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n  \
             client_auth_type: RequireAndVerifyClientcert\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n  \
             min_version: TLS10\n  certfile: typo.crt\n\
             basic_auth_users:\n  prometheus: notahash\n  'a:b': {secret_hash}\n  ok: {secret_hash}x\n\
             http_server_config:\n  http2: false\n\
             basic_auth_user: {{}}\n"
        ),
    );
    let text =
        issues(dir.load(
            "[daemon]\nweb_config = \"web.yml\"\nlisten = \"0.0.0.0:1\"\nretention_days = 0\n",
        ));
    let at = "daemon.web_config";
    for needle in [
        format!("{at}.tls_server_config.key_file: cannot read"),
        format!(
            "{at}.tls_server_config.client_auth_type: expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert, found \"RequireAndVerifyClientcert\""
        ),
        format!(
            "{at}.tls_server_config.cipher_suites: an exporter-toolkit setting teewatch does not support"
        ),
        format!("{at}.tls_server_config.min_version: TLS10 is not supported"),
        format!(
            "{at}.tls_server_config.certfile: unknown key; expected one of cert_file, key_file"
        ),
        format!("{at}.basic_auth_users.prometheus: expected a bcrypt hash"),
        format!("{at}.basic_auth_users.a:b: a user name must be non-empty and hold no ':'"),
        format!("{at}.basic_auth_users.ok: expected a bcrypt hash"),
        format!("{at}.http_server_config: an exporter-toolkit setting teewatch does not support"),
        format!(
            "{at}.basic_auth_user: unknown key; expected one of tls_server_config, basic_auth_users"
        ),
        // The rest of the file is still checked.
        "daemon.retention_days: expected an integer from 1 to 36500".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    // A broken web configuration is not also reported as a missing one.
    assert!(!text.contains("is not a loopback address"), "{text}");
    // No hash, right or wrong, is repeated.
    assert!(
        !text.contains(&secret_hash) && !text.contains("notahash"),
        "{text}"
    );

    // Settings that contradict each other, and a key that is not the certificate's.
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
            "tls_server_config.key_file: the key does not go with cert_file's certificate",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n  client_ca_file: server.crt\n",
            "tls_server_config.client_ca_file: client certificates are not asked for: add client_auth_type: RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file: required by client_auth_type RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n  client_auth_type: RequireAnyClientCert\n",
            "RequireAnyClientCert accepts client certificates nobody verified",
        ),
        (
            "tls_server_config:\n  key_file: other.key\n",
            "tls_server_config.cert_file: required: TLS needs both cert_file and key_file",
        ),
        (
            "tls_server_config:\n  cert_file: other.key\n  key_file: other.key\n",
            "tls_server_config.cert_file: expected PEM certificates, found none",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n  min_version: TLS13\n  max_version: TLS12\n",
            "tls_server_config.min_version: min_version is above max_version",
        ),
        (
            "basic_auth_users:\n",
            "basic_auth_users: expected at least one user",
        ),
        ("- a list\n", "expected a mapping with tls_server_config"),
        ("tls_server_config: [\n", "is not valid YAML"),
        (
            "basic_auth_users:\n  a: x\nbasic_auth_users:\n  b: y\n",
            "is not valid YAML",
        ),
    ];
    for (yaml, needle) in cases {
        dir.write("case.yml", yaml);
        let text = issues(dir.load("[daemon]\nweb_config = \"case.yml\"\n"));
        assert!(
            text.contains(needle),
            "{yaml:?}: missing {needle:?} in:\n{text}"
        );
    }
    let text = issues(dir.load("[daemon]\nweb_config = \"nowhere.yml\"\n"));
    assert!(text.contains("daemon.web_config: cannot read"), "{text}");
}

#[test]
fn tls_files_may_be_systemd_credentials() {
    let dir = Scratch::new("credentials");
    let (cert, key) = server_identity();
    dir.write("etc/server.crt", &cert);
    dir.write("run/credentials/web.key", &key);
    let web = dir.write(
        "etc/web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: $CREDENTIALS_DIRECTORY/web.key\n",
    );
    // Inside the unit: read from the credentials folder.
    let mut v = Validator::default();
    let credentials = dir.0.join("run/credentials");
    let config = web::read_in(&mut v, &web, "daemon.web_config", Some(&credentials));
    assert!(v.issues.is_empty(), "{:?}", v.issues);
    let tls = config
        .and_then(|c| c.tls)
        .unwrap_or_else(|| panic!("no tls"));
    assert!(tls.server_config().is_ok());
    // Outside it (config check as root, other commands): everything else is checked, and the
    // listener is what refuses, naming LoadCredential=.
    let mut v = Validator::default();
    let config = web::read_in(&mut v, &web, "daemon.web_config", None);
    assert!(v.issues.is_empty(), "{:?}", v.issues);
    let tls = config
        .and_then(|c| c.tls)
        .unwrap_or_else(|| panic!("no tls"));
    let Err(reason) = tls.server_config() else {
        panic!("a credential was read outside a unit");
    };
    assert!(
        reason.contains("key_file is read from $CREDENTIALS_DIRECTORY, which is not set")
            && reason.contains("LoadCredential="),
        "{reason}"
    );
    // A wrong credential name is an error wherever it is read.
    let web = dir.write(
        "etc/bad.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: $CREDENTIALS_DIRECTORY/a/b\n",
    );
    let mut v = Validator::default();
    web::read_in(&mut v, &web, "daemon.web_config", Some(&credentials));
    assert!(
        v.issues
            .iter()
            .any(|i| i.path == "daemon.web_config.tls_server_config.key_file"
                && i.message.contains("one credential name")),
        "{:?}",
        v.issues
    );
}
