//! `/metrics` off loopback, safely: the daemon's listener with `[daemon] web_config` (the
//! exporter-toolkit web configuration file), run in-process on loopback with a test CA made here
//! (`metrics_tls/support.rs`). HTTPS with the right CA and credentials scrapes; a wrong password,
//! no credentials, plain HTTP and a missing or foreign client certificate do not; a reload puts
//! new users and a renewed certificate in force; a plain listener off loopback is refused unless
//! `allow_plain_http_off_loopback` is set; `teewatch config check` names each problem of a broken
//! web configuration; and a real Prometheus (Debian's `prometheus`) scraping with `scheme:
//! https`, `tls_config` and `basic_auth` reports the target up, which proves the format is the
//! one Prometheus speaks. Without `prometheus` that test fails at once, naming the install
//! command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;
use crate::common::prom;
use crate::common::prom_server;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon_run::{manual_schedule, start_daemon};
use prom_server::Prometheus;
use support::{
    PASSWORD, Pki, Scratch, USER, client, daemon_with, get, tls_yaml, users_yaml, with_a_target,
};

/// Sends a plain HTTP request with the right credentials to `addr` and returns every byte that
/// comes back before the daemon closes the connection.
async fn plain_http_exchange(addr: SocketAddr) -> Vec<u8> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {credentials}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    // A reset after the alert is as good as a close.
    let _ = stream.read_to_end(&mut reply).await;
    reply
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

    // Plain HTTP to the TLS port, with the right credentials, gets no HTTP answer: the bytes
    // that come back (if any) are a TLS alert record (content type 21), not a status line.
    let reply = plain_http_exchange(daemon.addr()).await;
    assert!(
        reply.first().is_none_or(|&b| b == 21) && !reply.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&reply)
    );
    let result = reqwest::Client::new()
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
    assert!(error.contains("CertificateRequired"), "{error}");
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
    assert!(error.contains("UnknownCA"), "{error}");
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
    let error = get(
        &client(&old.ca, None),
        &daemon,
        "/metrics",
        Some((USER, "new password")),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("UnknownIssuer"),
        "the old certificate is still served: {error}"
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

/// Starts a daemon on the configuration file `config`, with `listen` overriding its address.
async fn start(
    dir: &Scratch,
    config: &str,
    listen: Option<&str>,
) -> Result<teewatch::daemon::Daemon, teewatch::daemon::RunError> {
    teewatch::daemon::Daemon::start(teewatch::daemon::RunOptions {
        config_path: dir.write("teewatch.toml", &with_a_target(config)),
        listen: listen.map(|l| l.parse().unwrap()),
        db: Some(dir.0.join("teewatch.db")),
    })
    .await
}

#[tokio::test]
async fn a_plain_listener_off_loopback_is_refused_unless_explicitly_allowed() {
    let dir = Scratch::new("listen");
    // In the file: the configuration is invalid (exit 78), naming both ways out.
    let error = start(&dir, "[daemon]\nlisten = \"0.0.0.0:0\"\n", None)
        .await
        .err()
        .expect("a plain listener on 0.0.0.0 started");
    assert_eq!(error.exit_code(), 78, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("daemon.listen: 0.0.0.0:0 is not a loopback address")
            && text.contains("web_config = \"/etc/teewatch/web.yml\"")
            && text.contains("allow_plain_http_off_loopback = true"),
        "{text}"
    );
    // `--listen` overrides the file's loopback address after the file was checked: the
    // listener checks again.
    let error = start(&dir, "", Some("0.0.0.0:0"))
        .await
        .err()
        .expect("a plain listener on 0.0.0.0 started through --listen");
    assert_eq!(error.exit_code(), 78, "{error}");
    assert!(
        error
            .to_string()
            .contains("daemon.listen: 0.0.0.0:0 is not a loopback address"),
        "{error}"
    );
    // Basic authentication alone does not make it safe: the password would cross in the clear.
    dir.write("web.yml", &users_yaml(PASSWORD));
    let error = start(&dir, "", Some("0.0.0.0:0"))
        .await
        .err()
        .expect("a plain listener with basic auth on 0.0.0.0 started");
    assert!(
        error.to_string().contains("is not a loopback address"),
        "{error}"
    );

    // The explicit opt-in: the daemon listens on every address and answers plain HTTP (reached
    // here through loopback, the only peer a test may use).
    let daemon = start(
        &dir,
        "[daemon]\nlisten = \"0.0.0.0:0\"\nallow_plain_http_off_loopback = true\n",
        None,
    )
    .await
    .unwrap();
    assert!(daemon.addr().ip().is_unspecified(), "{}", daemon.addr());
    let url = format!("http://127.0.0.1:{}/metrics", daemon.addr().port());
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("teewatch_build_info{")
    );
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn config_check_names_each_problem_of_a_web_config() {
    // `teewatch config check`, the binary: each broken web configuration is reported with the
    // key it is about, and exit 78 (never a panic).
    let dir = Scratch::new("check");
    let pki = Pki::new("check");
    pki.write(&dir);
    let config = dir
        .write(
            "teewatch.toml",
            &with_a_target("[daemon]\nweb_config = \"web.yml\"\n"),
        )
        .display()
        .to_string();
    let valid = format!("{}{}", tls_yaml(""), users_yaml(PASSWORD));
    dir.write("web.yml", &valid);
    let out = common::process::teewatch(["config", "check", &config]);
    common::process::assert_success(&out);
    let cases = [
        (
            "tls_server_config: [\n".to_string(),
            "daemon.web_config: ".to_string() + &dir.0.join("web.yml").display().to_string()
                + " is not valid YAML",
        ),
        (
            valid.replace("key_file:", "keyfile:"),
            "daemon.web_config.tls_server_config.keyfile: unknown key; expected one of cert_file, key_file".into(),
        ),
        (
            valid.replace("server.crt", "missing.crt"),
            "daemon.web_config.tls_server_config.cert_file: cannot read ".to_string()
                + &dir.0.join("missing.crt").display().to_string(),
        ),
        (
            valid.replace("key_file: server.key", "key_file: ca.crt"),
            "daemon.web_config.tls_server_config.key_file: expected a PEM private key".into(),
        ),
        (
            format!("{}basic_auth_users:\n  {USER}: {PASSWORD}\n", tls_yaml("")),
            format!("daemon.web_config.basic_auth_users.{USER}: expected a bcrypt hash"),
        ),
    ];
    for (yaml, expected) in cases {
        dir.write("web.yml", &yaml);
        let out = common::process::teewatch(["config", "check", &config]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{yaml}\n{stderr}");
        assert!(
            stderr.contains(&expected),
            "{yaml}: expected {expected:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        // A password written where the hash goes is not repeated.
        assert!(!stderr.contains(PASSWORD), "{stderr}");
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
        teewatch_sim::server::SimOptions::default(),
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
    let model = teewatch_sim::server::model_name(0);
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
    let prometheus = Prometheus::start_scraping(&binary, &dir.0, &jobs).await;

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
    assert!(error.contains("tls: certificate required"), "{error}");
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
