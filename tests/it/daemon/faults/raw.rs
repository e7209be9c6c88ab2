//! A provider that misbehaves below HTTP's surface, written on raw TCP so the bytes and their
//! timing are exactly the fault's: a body that trickles (slow-loris), a body that never ends,
//! and JSON nested 100,000 deep. Only the attestation request (the one GET) gets the fault;
//! the canary's POSTs are answered 404 at once, so a row's check is bounded by the one request
//! under test.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the raw provider does with the attestation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// A 200 whose announced 1 MB body arrives one byte every 200 ms: never idle long enough for
    /// a read timeout, so only a total deadline ends it.
    SlowLoris,
    /// A chunked 200 whose body streams without end: only the body cap ends it.
    EndlessBody,
    /// A complete 200 whose body is an array nested 100,000 deep (200 KB): a recursive reader
    /// without a depth limit overflows its stack.
    DeepJson,
}

impl RawMode {
    pub fn name(self) -> &'static str {
        match self {
            RawMode::SlowLoris => "slow-loris",
            RawMode::EndlessBody => "endless-body",
            RawMode::DeepJson => "deep-json",
        }
    }
}

/// How deep the nested JSON goes.
pub const DEPTH: usize = 100_000;

/// A raw provider on a free loopback port.
pub struct RawServer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a raw provider answering every attestation request with `mode`.
pub async fn start(mode: RawMode) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, mode));
        }
    });
    RawServer { port, task }
}

/// Reads one request head and answers it; a write error (the client gave up) ends it.
async fn serve(mut stream: TcpStream, mode: RawMode) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    if !head.starts_with(b"GET ") {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    let _ = answer(&mut stream, mode).await;
}

async fn answer(stream: &mut TcpStream, mode: RawMode) -> std::io::Result<()> {
    match mode {
        RawMode::SlowLoris => {
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{\"padding\":\"",
                )
                .await?;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                stream.write_all(b"x").await?;
            }
        }
        RawMode::EndlessBody => {
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                )
                .await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            loop {
                stream.write_all(&framed).await?;
            }
        }
        RawMode::DeepJson => {
            let mut body = "[".repeat(DEPTH);
            body.push_str(&"]".repeat(DEPTH));
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            stream.shutdown().await
        }
    }
}
