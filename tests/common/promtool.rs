//! Running the real `promtool check metrics` (Debian's `prometheus` package) on a scrape.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on the text; `None` when promtool is not installed.
fn promtool(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), said))
}

/// Asserts that promtool accepts the scrape without a word. Without promtool this fails under
/// `CI` (which installs it) and warns loudly elsewhere.
pub fn assert_clean(text: &str) {
    match promtool(text) {
        Some((ok, said)) => {
            assert!(ok, "promtool rejected the scrape:\n{said}");
            assert!(said.is_empty(), "promtool complained:\n{said}");
        }
        None if std::env::var_os("CI").is_some() => {
            panic!("promtool is not installed, but CI must install it (Debian: prometheus)")
        }
        None => eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! promtool not found: the scrape was NOT checked by promtool.        !!!\n\
             !!! Install it (Debian: apt-get install prometheus) to run this test. !!!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        ),
    }
}
