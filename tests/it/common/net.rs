//! A free loopback port for a child process to listen on (shared by tests and the load bench).
#![allow(dead_code, clippy::unwrap_used)]

/// A port nothing listens on right now (the OS picks it; a race with another process is possible
/// but harmless on loopback test machines).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
