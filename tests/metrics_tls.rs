//! `/metrics` off loopback, safely: the daemon's listener with `[daemon] web_config` (the
//! exporter-toolkit web configuration file), run in-process on loopback with a test CA made here.
//! HTTPS with the right CA and credentials scrapes; a wrong password, no credentials, plain HTTP
//! and a missing client certificate do not; a reload puts new users and a renewed certificate in
//! force; and a real Prometheus (Debian's `prometheus`) scraping with `scheme: https`,
//! `tls_config` and `basic_auth` reports the target up, which proves the format is the one
//! Prometheus speaks. Without `prometheus` that test fails at once, naming the install command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
#[path = "common/prom.rs"]
mod prom;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::Value;

use common::daemon_run::{manual_schedule, start_daemon};
use common::net::free_port;
use teewatch::daemon::Daemon;

const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("teewatch-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
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
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
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
    fn write(&self, dir: &Scratch) {
        dir.write("server.crt", &self.server_cert);
        dir.write("server.key", &self.server_key);
        dir.write("ca.crt", &self.ca);
        dir.write("client.crt", &self.client_cert);
        dir.write("client.key", &self.client_key);
    }
}

/// A daemon with no targets whose `[daemon] web_config` is `web.yml` with `yaml` in `dir`.
async fn daemon_with(dir: &Scratch, yaml: &str) -> Daemon {
    dir.write("web.yml", yaml);
    let config = dir.write("teewatch.toml", "[daemon]\nweb_config = \"web.yml\"\n");
    start_daemon(&config, &dir.0).await
}

/// `tls_server_config` with the files `Pki::write` leaves, and `extra` lines in it.
fn tls_yaml(extra: &str) -> String {
    format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}")
}

fn users_yaml(password: &str) -> String {
    format!(
        "basic_auth_users:\n  {USER}: {}\n",
        bcrypt::hash(password, 4).unwrap()
    )
}

/// An HTTPS client trusting only `ca` (and presenting `identity`, PEM certificate and key).
fn client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
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
async fn get(
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

#[tokio::test]
async fn https_with_the_right_ca_and_credentials_scrapes_and_nothing_less_does() {
    let dir = Scratch::new("auth");
    let pki = Pki::new("auth");
    pki.write(&dir);
    let daemon = daemon_with(&dir, &format!("{}{}", tls_yaml(""), users_yaml(PASSWORD))).await;
    let https = client(&pki.ca, None);

    // The right CA and credentials: the metrics, twice (the second from the cache).
    for _ in 0..2 {
        let (status, _, body) = get(&https, &daemon, "/metrics", Some((USER, PASSWORD)))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("teewatch_build_info{"), "{body}");
        assert!(body.contains("teewatch_targets 0"), "{body}");
    }
    // Every endpoint asks for credentials; a wrong password or user, or none, is a 401 with the
    // challenge Prometheus and browsers understand.
    let challenge = Some("Basic realm=\"teewatch\"".to_string());
    for path in ["/metrics", "/healthz", "/readyz", "/", "/no-such-page"] {
        for credentials in [
            None,
            Some((USER, "wrong")),
            Some(("someone", PASSWORD)),
            Some((USER, "")),
        ] {
            let (status, got, _) = get(&https, &daemon, path, credentials).await.unwrap();
            assert_eq!(status, 401, "{path} with {credentials:?}");
            assert_eq!(got, challenge, "{path} with {credentials:?}");
        }
    }
    let (status, _, body) = get(&https, &daemon, "/healthz", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let result = plain
        .get(format!("http://{}/metrics", daemon.addr()))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await;
    assert!(result.is_err(), "plain HTTP was answered: {result:?}");
    // A client that does not trust the test CA refuses the certificate.
    let other = client(&Pki::new("other").ca, None);
    let error = get(&other, &daemon, "/metrics", Some((USER, PASSWORD)))
        .await
        .unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
    // And after all that, the right credentials still work.
    let (status, _, _) = get(&https, &daemon, "/metrics", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(status, 200);
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_client_certificate_is_required_when_the_web_config_says_so() {
    let dir = Scratch::new("mtls");
    let pki = Pki::new("mtls");
    pki.write(&dir);
    let daemon = daemon_with(
        &dir,
        &tls_yaml("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"),
    )
    .await;
    // No client certificate: the handshake fails, no HTTP answer at all.
    let error = get(&client(&pki.ca, None), &daemon, "/metrics", None)
        .await
        .unwrap_err();
    assert!(!error.is_empty());
    // A certificate from another CA: refused too.
    let stranger = Pki::new("stranger");
    let error = get(
        &client(&pki.ca, Some((&stranger.client_cert, &stranger.client_key))),
        &daemon,
        "/metrics",
        None,
    )
    .await
    .unwrap_err();
    assert!(!error.is_empty());
    // The client certificate the CA signed: the metrics.
    let (status, _, body) = get(
        &client(&pki.ca, Some((&pki.client_cert, &pki.client_key))),
        &daemon,
        "/metrics",
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("teewatch_build_info{"), "{body}");
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_reload_puts_new_users_and_a_renewed_certificate_in_force() {
    let dir = Scratch::new("reload");
    let old = Pki::new("old");
    old.write(&dir);
    let daemon = daemon_with(&dir, &format!("{}{}", tls_yaml(""), users_yaml(PASSWORD))).await;
    let (status, _, _) = get(
        &client(&old.ca, None),
        &daemon,
        "/metrics",
        Some((USER, PASSWORD)),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // A renewed certificate from a new CA and a new password, then SIGHUP's reload.
    let new = Pki::new("new");
    new.write(&dir);
    dir.write(
        "web.yml",
        &format!("{}{}", tls_yaml(""), users_yaml("new password")),
    );
    daemon.reload().await.unwrap();
    let https = client(&new.ca, None);
    let (status, _, _) = get(&https, &daemon, "/metrics", Some((USER, "new password")))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The old password was remembered as verified, but against the old hash: refused now.
    let (status, _, _) = get(&https, &daemon, "/metrics", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert!(
        get(
            &client(&old.ca, None),
            &daemon,
            "/metrics",
            Some((USER, "new password"))
        )
        .await
        .is_err(),
        "the old certificate is still served"
    );

    // Turning TLS off takes a restart: the listener keeps its web configuration.
    dir.write("web.yml", &users_yaml("plain"));
    daemon.reload().await.unwrap();
    let (status, _, _) = get(&https, &daemon, "/metrics", Some((USER, "new password")))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // An invalid web configuration is refused like any invalid configuration.
    dir.write("web.yml", "tls_server_config:\n  cert_file: nowhere.crt\n");
    let error = daemon.reload().await.unwrap_err().to_string();
    assert!(
        error.contains("daemon.web_config.tls_server_config.cert_file: cannot read"),
        "{error}"
    );
    let (status, _, _) = get(&https, &daemon, "/metrics", Some((USER, "new password")))
        .await
        .unwrap();
    assert_eq!(status, 200);
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_plain_listener_off_loopback_is_refused_at_start_too() {
    // `--listen` overrides the file's (loopback) address after it was checked: the listener
    // checks again, and the refusal is a configuration error (exit 78).
    let dir = Scratch::new("listen");
    let config = dir.write("teewatch.toml", "");
    let error = teewatch::daemon::Daemon::start(teewatch::daemon::RunOptions {
        config_path: config,
        listen: Some("0.0.0.0:0".parse().unwrap()),
        db: Some(dir.0.join("teewatch.db")),
    })
    .await
    .err()
    .expect("a plain listener on 0.0.0.0 started");
    assert_eq!(error.exit_code(), 78, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("daemon.listen: 0.0.0.0:0 is not a loopback address")
            && text.contains("allow_plain_http_off_loopback = true"),
        "{text}"
    );
}

/// A Prometheus server scraping the daemon with the scrape configuration `jobs`.
struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    url: String,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Prometheus {
    async fn start(binary: &Path, dir: &Path, jobs: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}"
            ),
        )
        .unwrap();
        let mut server = Prometheus {
            child: None,
            dir: dir.to_path_buf(),
            url: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        // A free port can be taken between the probe and the bind: try a few.
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
            server.child = Some(child);
            server.url = format!("http://127.0.0.1:{port}");
            if server.ready(Duration::from_secs(30)).await {
                return server;
            }
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        panic!("prometheus did not start:\n{}", server.log());
    }

    async fn ready(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    return false;
                }
            }
            if let Ok(r) = self
                .client
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
            {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The active targets: job → (health, last error).
    async fn targets(&self) -> Vec<(String, String, String)> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    text(&t["labels"]["job"]),
                    text(&t["health"]),
                    text(&t["lastError"]),
                )
            })
            .collect()
    }

    /// An instant query's first value, if any.
    async fn value(&self, expr: &str) -> Option<f64> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_over_https_with_basic_auth_and_a_client_certificate() {
    let binary = common::tool::tool("prometheus", prom::INSTALL);
    let dir = Scratch::new("prometheus");
    let pki = Pki::new("prometheus");
    pki.write(&dir);
    // The simulator as a target, so the scrape carries a real check's series.
    let sim = common::sim_run::start(
        "tls-prometheus",
        teewatch::sim::server::SimOptions::default(),
    )
    .await;
    let sim_config = sim.dir.join("sim.toml");
    manual_schedule(&sim_config);
    // A cost-10 hash as an operator would make it (htpasswd -nBC 10): verified once, then
    // remembered, though Prometheus scrapes every second.
    dir.write(
        "web.yml",
        &format!(
            "{}basic_auth_users:\n  {USER}: {}\n",
            tls_yaml(&format!(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
                dir.0.join("ca.crt").display()
            )),
            bcrypt::hash(PASSWORD, 10).unwrap()
        ),
    );
    let text = std::fs::read_to_string(&sim_config).unwrap();
    let web = dir.0.join("web.yml");
    let text = if text.contains("[daemon]\n") {
        text.replacen(
            "[daemon]\n",
            &format!("[daemon]\nweb_config = \"{}\"\n", web.display()),
            1,
        )
    } else {
        format!("[daemon]\nweb_config = \"{}\"\n\n{text}", web.display())
    };
    std::fs::write(&sim_config, text).unwrap();
    let daemon = start_daemon(&sim_config, &dir.0).await;
    let model = teewatch::sim::server::model_name(0);
    assert!(daemon.check_now(&model).await);
    let addr: SocketAddr = daemon.addr();

    let job = |name: &str, password: &str, client_cert: bool| {
        let cert = if client_cert {
            "\n      cert_file: client.crt\n      key_file: client.key"
        } else {
            ""
        };
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: ca.crt{cert}\n    \
             basic_auth:\n      username: {USER}\n      password: '{password}'\n    \
             static_configs:\n      - targets: ['{addr}']\n"
        )
    };
    let jobs = [
        job("teewatch", PASSWORD, true),
        job("wrong-password", "wrong", true),
        job("no-client-cert", PASSWORD, false),
    ]
    .concat();
    let prometheus = Prometheus::start(&binary, &dir.0, &jobs).await;

    let end = Instant::now() + Duration::from_secs(60);
    let targets = loop {
        let targets = prometheus.targets().await;
        let settled =
            targets.len() == 3 && targets.iter().all(|(_, health, _)| health != "unknown");
        if settled && prometheus.value("up{job=\"teewatch\"}").await == Some(1.0) {
            break targets;
        }
        assert!(
            Instant::now() < end,
            "the targets did not settle: {targets:?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let health = |job: &str| {
        targets
            .iter()
            .find(|(j, _, _)| j == job)
            .cloned()
            .unwrap_or_else(|| panic!("no {job} in {targets:?}"))
    };
    assert_eq!(health("teewatch").1, "up", "{targets:?}");
    let (_, state, error) = health("wrong-password");
    assert_eq!(state, "down");
    assert!(error.contains("401"), "{error}");
    let (_, state, error) = health("no-client-cert");
    assert_eq!(state, "down");
    assert!(!error.is_empty());
    // What Prometheus stored came from the daemon: the simulated target's state, and the check
    // it counted.
    let query = format!("teewatch_target_state{{job=\"teewatch\",target=\"{model}\"}}");
    let end = Instant::now() + Duration::from_secs(30);
    while prometheus.value(&query).await.is_none() {
        assert!(
            Instant::now() < end,
            "{query} never came\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        prometheus.value("up{job=\"wrong-password\"}").await,
        Some(0.0)
    );
    drop(prometheus);
    daemon.shutdown(Duration::from_secs(5)).await;
    drop(sim);
}
