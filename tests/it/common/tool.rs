//! The programs tool-backed tests run for real (promtool, prometheus, amtool, alertmanager,
//! systemd-analyze, chromium, sqlite3, the cross-check's Python): found here or the test fails, naming the command that installs
//! them. No test passes by skipping its tool. Each lookup is also written to `TEEWATCH_TOOL_LOG`
//! when that is set, so `scripts/test` can count the tool-backed tests that ran. Shared through
//! `#[path]` by files that do not use the rest of `common`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The one command that installs everything the tests need.
pub const SETUP: &str = "scripts/test";

/// The requirements of the cross-check's Python, pinned, relative to the repository root.
pub const PYTHON_REQUIREMENTS: &str = "tests/crosscheck/requirements.txt";

/// The executable `program` on `PATH` (or at an absolute path); panics naming `install`, the
/// command that provides it, when there is none. Records the use in `TEEWATCH_TOOL_LOG`.
#[track_caller]
pub fn tool(program: &str, install: &str) -> PathBuf {
    let Some(found) = find(program) else {
        panic!(
            "{program} not found: this test runs it for real and does not skip. Run `{SETUP}` \
             (it installs what the tests need), or `{install}`"
        )
    };
    record(program);
    found
}

/// What provides `amtool` and Alertmanager on Debian.
pub const ALERTMANAGER_INSTALL: &str =
    "apt-get install -y --no-install-recommends prometheus-alertmanager";

/// `amtool`, Alertmanager's command-line tool, or the test fails naming the install command.
#[track_caller]
pub fn amtool() -> PathBuf {
    tool("amtool", ALERTMANAGER_INSTALL)
}

/// The Alertmanager server: upstream's `alertmanager`, or `prometheus-alertmanager`, the name
/// Debian's package gives it. The test fails naming the install command when neither is there.
/// Recorded as `alertmanager` in `TEEWATCH_TOOL_LOG`.
#[track_caller]
pub fn alertmanager() -> PathBuf {
    let Some(found) = find("alertmanager").or_else(|| find("prometheus-alertmanager")) else {
        panic!(
            "alertmanager not found (neither alertmanager nor prometheus-alertmanager): this test \
             runs it for real and does not skip. Run `{SETUP}` (it installs what the tests \
             need), or `{ALERTMANAGER_INSTALL}`"
        )
    };
    record("alertmanager");
    found
}

/// What provides the `sqlite3` command-line shell on Debian.
pub const SQLITE3_INSTALL: &str = "apt-get install -y --no-install-recommends sqlite3";

/// The `sqlite3` shell, with which tests edit a store as an attacker would, or the test fails
/// naming the install command.
#[track_caller]
pub fn sqlite3() -> PathBuf {
    tool("sqlite3", SQLITE3_INSTALL)
}

/// Where `program` is: itself when it names a path, else the first executable file of that name
/// in a `PATH` directory.
pub fn find(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The Python with the cross-check's pinned packages: `TEEWATCH_PYTHON` when set, else the
/// project's virtual environment `.venv/bin/python`. Panics with the commands that make it when
/// it is missing or lacks a pinned package. Records the use in `TEEWATCH_TOOL_LOG`.
#[track_caller]
pub fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let make = format!(
        "Run `{SETUP}` (it makes the virtual environment), or `python3 -m venv .venv && \
         .venv/bin/pip install -r {PYTHON_REQUIREMENTS}` in {}",
        root.display()
    );
    let python = match std::env::var_os("TEEWATCH_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => root.join(".venv/bin/python"),
    };
    if !is_executable(&python) {
        panic!(
            "no Python for the cross-check at {} (TEEWATCH_PYTHON, else .venv/bin/python): this \
             test runs it for real and does not skip. {make}",
            python.display()
        );
    }
    // Every pinned requirement must be installed at its pinned version.
    let out = Command::new(&python)
        .args(["-c", PROBE])
        .arg(root.join(PYTHON_REQUIREMENTS))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}. {make}", python.display()));
    if !out.status.success() {
        panic!(
            "{} lacks the cross-check's pinned packages: {}{}. {make}",
            python.display(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    record("python");
    python
}

/// Exits 1 listing every `name==version` line of the requirements file (argument 1) that is not
/// installed at that version.
const PROBE: &str = r#"
import sys, importlib.metadata as m
bad = []
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if not line:
        continue
    name, _, want = (part.strip() for part in line.partition("=="))
    try:
        have = m.version(name)
    except m.PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name}=={want} (installed: {have})")
print("; ".join(bad))
sys.exit(1 if bad else 0)
"#;

/// Appends `<test binary> <test> <program>` to `TEEWATCH_TOOL_LOG`, when set. The test is the
/// name of the current thread, which the test harness names after the test.
pub fn record(program: &str) {
    let Some(log) = std::env::var_os("TEEWATCH_TOOL_LOG") else {
        return;
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let line = format!("{} {test} {program}\n", env!("CARGO_CRATE_NAME"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap_or_else(|e| panic!("TEEWATCH_TOOL_LOG {log:?}: {e}"));
    file.write_all(line.as_bytes()).unwrap();
}
