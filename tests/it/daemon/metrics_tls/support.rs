//! What the listener tests share: scratch folders, a test PKI made with rcgen (a CA, a server
//! certificate for `localhost` and 127.0.0.1, a client certificate), web configuration snippets,
//! and an HTTPS client that trusts only the test CA.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::common::daemon_run::start_daemon;
use teewatch::daemon::Daemon;

pub const USER: &str = "prometheus";
pub const PASSWORD: &str = "correct horse battery staple";

/// A scratch folder, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("teewatch-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA and what it signed, as PEM.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("teewatch test CA {name}"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, &ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server
            .distinguished_name
            .push(DnType::CommonName, "teewatch");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap().pem();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "prometheus");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).unwrap().pem();
        Pki {
            ca: ca_pem,
            server_cert,
            server_key: server_key.serialize_pem(),
            client_cert,
            client_key: client_key.serialize_pem(),
        }
    }

    /// Writes the server's certificate and key and the CA into `dir` as `server.crt`,
    /// `server.key`, `ca.crt`, and the client's as `client.crt` and `client.key`.
    pub fn write(&self, dir: &Scratch) {
        dir.write("server.crt", &self.server_cert);
        dir.write("server.key", &self.server_key);
        dir.write("ca.crt", &self.ca);
        dir.write("client.crt", &self.client_cert);
        dir.write("client.key", &self.client_key);
    }
}

/// `config` with a policy-only target added when it has none: these tests are about the
/// listener, and a configuration without any target is refused.
pub fn with_a_target(config: &str) -> String {
    if config.contains("[[target]]") {
        config.to_string()
    } else {
        format!("{config}\n[[target]]\nname = \"policy-only\"\n")
    }
}

/// A daemon with nothing to check (one policy-only target) whose `[daemon] web_config` is
/// `web.yml` with `yaml` in `dir`.
pub async fn daemon_with(dir: &Scratch, yaml: &str) -> Daemon {
    dir.write("web.yml", yaml);
    let config = dir.write(
        "teewatch.toml",
        &with_a_target("[daemon]\nweb_config = \"web.yml\"\n"),
    );
    start_daemon(&config, &dir.0).await
}

/// `tls_server_config` with the files `Pki::write` leaves, and `extra` lines in it.
pub fn tls_yaml(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
}

pub fn users_yaml(password: &str) -> String {
    format!(
        "basic_auth_users:\n  {USER}: {}\n",
        bcrypt::hash(password, 4).unwrap()
    )
}

/// An HTTPS client trusting only `ca` (and presenting `identity`, PEM certificate and key).
pub fn client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// `GET https://<daemon><path>`: the status and body, or the error's text.
pub async fn get(
    client: &reqwest::Client,
    daemon: &Daemon,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> Result<(u16, Option<String>, String), String> {
    let mut request = client.get(format!("https://{}{path}", daemon.addr()));
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, challenge, body))
}
