//! A server program a test runs for real (Prometheus, Alertmanager) as a child process on a free
//! loopback port, its standard output and error in a log file: ready once `GET <path>` answers
//! 200, killed when dropped. One place for the start-up the servers share, so a fix to the port
//! retry or the readiness wait reaches every test that runs one.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its readiness path once started.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running server child listening on `addr`, writing to the log file `log`.
pub struct ToolServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Drop for ToolServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client for a server's API, its requests cut off after 10 s so a hung server fails
/// the test instead of stalling it.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A new empty folder `teewatch-<name>-<pid>-<nanos>` in the temporary folder, for a server's
/// configuration, data and log; removed when dropped. An owner declares it after its
/// `ToolServer`, so that the server is killed before its folder goes.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("teewatch-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ToolServer {
    /// Starts `binary` with the arguments `args` gives for its listen address, writing to the
    /// file `log` (made anew), and waits until `GET http://<addr><ready>` answers 200. A free
    /// port can be taken between the probe and the bind, and the server then exits or never gets
    /// ready: it is killed and started again on another port, three times in all; then this
    /// panics with the last try's log, naming the server `name`.
    pub async fn start(
        name: &str,
        binary: &Path,
        log: &Path,
        ready: &str,
        client: &reqwest::Client,
        args: impl Fn(SocketAddr) -> Vec<String>,
    ) -> ToolServer {
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], super::net::free_port()));
            let file = std::fs::File::create(log).unwrap();
            let child = Command::new(binary)
                .args(args(addr))
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut server = ToolServer {
                child: Some(child),
                addr,
                log: log.to_path_buf(),
            };
            if server.ready(client, ready).await {
                return server;
            }
            server.stop();
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{name} did not start:\n{log}");
    }

    /// `http://<addr>`, to which API paths are appended.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills and reaps the server, if it still runs (also done when dropped).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls `ready` until it answers 200; false when the server exited or did not get ready in
    /// time.
    async fn ready(&mut self, client: &reqwest::Client, ready: &str) -> bool {
        let url = format!("{}{ready}", self.url());
        let end = Instant::now() + READY_WITHIN;
        while Instant::now() < end {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    return false;
                }
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}
