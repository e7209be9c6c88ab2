//! Running the real `promtool check metrics` (Debian's `prometheus` package) on a scrape.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on the text: whether it succeeded and what it said. Fails the
/// test, naming the install command, when promtool is not installed.
#[track_caller]
fn promtool(text: &str) -> (bool, String) {
    let promtool = super::tool::tool("promtool", "apt-get install -y prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// Asserts that promtool accepts the scrape without a word.
#[track_caller]
pub fn assert_clean(text: &str) {
    let (ok, said) = promtool(text);
    assert!(ok, "promtool rejected the scrape:\n{said}");
    assert!(said.is_empty(), "promtool complained:\n{said}");
}
