//! The load bench's HTTP side: one runtime and one client for every request of the whole run, and
//! a trivial loopback server that answers every request with the same bytes, the floor a
//! `/metrics` scrape of that size is compared with.
//!
//! Building a runtime and a client per scrape (what the bench did before) added their set-up and
//! a fresh TCP connection to each timed scrape; with one client the connection is kept alive, as
//! Prometheus keeps it, and what is timed is the request, the daemon's answer and the transfer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One current-thread runtime and one reqwest client, shared by every request of the run.
pub struct Scraper {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Scraper {
    pub fn new() -> Scraper {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot build the scraper's tokio runtime");
        // A whole-request timeout, so that a daemon that stops answering fails the bench with a
        // message instead of hanging it.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("cannot build the scraper's reqwest client");
        Scraper { runtime, client }
    }

    /// The body of a GET of `url`, or the error (connection refused while a daemon starts, a
    /// timeout, a status other than 200).
    pub fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        self.runtime.block_on(async {
            let response = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            Ok(body.to_vec())
        })
    }

    /// A GET of `url` and its wall-clock time in milliseconds; panics if the request fails.
    pub fn timed_get(&self, url: &str) -> (Vec<u8>, f64) {
        let started = Instant::now();
        let body = self
            .get(url)
            .unwrap_or_else(|e| panic!("scrape of {url} failed: {e}"));
        (body, started.elapsed().as_secs_f64() * 1000.0)
    }

    /// Polls `url` until it answers 200, for at most `within`.
    pub fn wait_for(&self, url: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.get(url) {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{url} did not answer within {within:?}: last error {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A loopback HTTP/1.1 server that answers every request with `200` and the same body, written
/// with one `write_all` from memory: no rendering, no file system, keep-alive like the daemon's.
/// Stopped (and its accepting thread joined) when dropped.
pub struct StaticServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl StaticServer {
    pub fn start(body: Vec<u8>) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the static server");
        let addr = listener
            .local_addr()
            .expect("the static server has no address");
        let stop = Arc::new(AtomicBool::new(false));
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        let response = Arc::new(response);
        let acceptor = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let response = Arc::clone(&response);
                    std::thread::spawn(move || serve(stream, &response));
                }
            })
        };
        StaticServer {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

/// Answers each request on one connection until the client closes it or stays idle for 5 s (the
/// client's pool keeps idle connections; the timeout ends the thread once the bench moves on).
fn serve(mut stream: TcpStream, response: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buffer) else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buffer[..n]);
        // The client sends GETs without a body: a request ends at its blank line.
        while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            request.drain(..end + 4);
            if stream.write_all(response).is_err() {
                return;
            }
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
