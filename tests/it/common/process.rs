//! Child processes of tests and the load bench: killed however the test ends, and signalled by
//! name through kill(2), never by running kill(1) (shared through `#[path]` by files that do not
//! use the rest of `common`).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// Runs the teewatch binary with `args` and waits for it.
pub fn teewatch<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BIN).args(args).output().unwrap()
}

/// `teewatch run` with `config` and the database `db`, listening on `127.0.0.1:<port>`, its JSON
/// log on a pipe (read it with `KillOnDrop::read_stderr` once it has exited) and its standard
/// output discarded; the caller sets the environment and spawns it.
pub fn run_with_json_log(port: u16, config: &Path, db: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(config)
        .arg("--db")
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Asserts that a run exited 0, showing its output when it did not.
pub fn assert_success(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills (SIGKILL, which also ends a stopped process) and reaps the child when dropped, unless
/// the test took it back with `take` to end it its own way.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// The child, while the guard holds it.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// The child, no longer killed on drop.
    pub fn take(&mut self) -> Child {
        self.0.take().unwrap()
    }

    /// Sends the signal `name` and waits up to `within` for the child to exit: its exit status,
    /// or `None` if it still runs (the guard kills it when dropped). Blocks the thread: from
    /// async code call it in `tokio::task::block_in_place`.
    pub fn signal_and_wait(&mut self, name: &str, within: Duration) -> Option<ExitStatus> {
        signal(self.id(), name);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// All the child wrote on its standard error (a pipe), once it has exited.
    pub fn read_stderr(&mut self) -> String {
        let mut stderr = String::new();
        self.child()
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        stderr
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The signal named `name` as kill(1) spells it (`TERM`, `HUP`, `INT`, `KILL`, `STOP`, `CONT`).
fn signal_number(name: &str) -> libc::c_int {
    match name {
        "TERM" => libc::SIGTERM,
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "KILL" => libc::SIGKILL,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        _ => panic!("no signal named {name}"),
    }
}

/// Sends the signal `name` (such as `TERM`, `HUP`, `STOP`) to process `pid`, with kill(2).
pub fn signal(pid: u32, name: &str) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    assert!(pid > 0, "not a process id: {pid}");
    kill(pid, name);
}

/// Sends the signal `name` to every process of the process group `pgid` (a child started with
/// `process_group(0)` leads the group of its own id).
pub fn signal_group(pgid: u32, name: &str) {
    let pgid = libc::pid_t::try_from(pgid).unwrap();
    assert!(pgid > 1, "not a process group: {pgid}");
    kill(-pgid, name);
}

fn kill(target: libc::pid_t, name: &str) {
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    let result = unsafe { libc::kill(target, signal_number(name)) };
    assert_eq!(
        result,
        0,
        "kill({target}, SIG{name}): {}",
        std::io::Error::last_os_error()
    );
}
