//! The binary's allocator, mimalloc, and the two options a short command starts it with. The
//! daemon (`run`, and `sim` and `demo`, which run as long) keeps mimalloc's defaults; every other
//! command is one short process, for which two of those defaults cost more than they return: the
//! 1 GiB arena reserved at the first allocation, whose bitmaps alone touch about 40 pages, and
//! transparent huge pages, for which the kernel zeroes a whole 2 MiB page under the first small
//! allocations (together about 15 % of a whole `teewatch verify`, BENCHMARKS.md "Start-up").
//!
//! The options are set from a constructor, before the Rust runtime's first allocation reserves
//! the arena: `main` is too late. glibc passes `argc` and `argv` to constructors, which is how it
//! knows the command; elsewhere (musl, other systems) nothing is set and mimalloc keeps its
//! defaults.

// Elsewhere the options are never set, and what sets them is unused.
#![cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]

use std::ffi::{c_int, c_long};

/// mimalloc instead of glibc malloc: the daemon allocates many small short-lived buffers per check
/// (JSON, hex, HTTP), and glibc's allocator spent 12 % of the CPU on them at 2,000 targets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mimalloc release whose `mi_option_e` the two indices below were read from
/// (`MI_MALLOC_VERSION` in libmimalloc-sys's `c_src/mimalloc/v3/include/mimalloc.h`); a test fails
/// when the linked library is another, whose indices may differ.
const MIMALLOC_VERSION: c_int = 30302;
/// `mi_option_arena_reserve`, in KiB.
const OPTION_ARENA_RESERVE: c_int = 23;
/// `mi_option_allow_thp`.
const OPTION_ALLOW_THP: c_int = 43;

/// The arena a short command reserves first, in KiB: 64 MiB, several times what `verify` of the
/// largest stored bundle uses (12 MB peak RSS for near-direct-3-nodes, binary included); mimalloc
/// reserves another when it runs out.
const SHORT_ARENA_RESERVE_KIB: c_long = 64 * 1024;

/// The commands that run for hours and keep mimalloc's defaults.
const LONG_RUNNING: [&[u8]; 3] = [b"run", b"sim", b"demo"];

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_version() -> c_int;
}

/// Whether a process whose first argument is `command` is short (anything but the daemon's
/// commands: no argument, a flag, a short command or a typo clap will reject).
fn is_short(command: Option<&[u8]>) -> bool {
    command.is_none_or(|c| !LONG_RUNNING.contains(&c))
}

/// Runs before every constructor without a priority (mimalloc's own included) and before `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
#[unsafe(link_section = ".init_array.00200")]
static SHORT_PROCESS_OPTIONS: extern "C" fn(
    c_int,
    *const *const std::ffi::c_char,
    *const *const std::ffi::c_char,
) = short_process_options;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn short_process_options(
    argc: c_int,
    argv: *const *const std::ffi::c_char,
    _envp: *const *const std::ffi::c_char,
) {
    let first = if argc >= 2 && !argv.is_null() {
        // SAFETY: glibc calls .init_array functions with the process's own argc and argv, whose
        // first `argc` entries are NUL-terminated strings.
        let arg = unsafe { *argv.add(1) };
        // SAFETY: as above; a null entry is not read.
        (!arg.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(arg) }.to_bytes())
    } else {
        None
    };
    // SAFETY: a different mimalloc would read these indices as other options; the test below
    // checks the version, and the version check here keeps a mismatched build at the defaults.
    if is_short(first) && unsafe { mi_version() } == MIMALLOC_VERSION {
        // SAFETY: mi_option_set only writes mimalloc's static option table, which it reads at
        // its first use; no allocation has happened yet.
        unsafe {
            mi_option_set(OPTION_ARENA_RESERVE, SHORT_ARENA_RESERVE_KIB);
            mi_option_set(OPTION_ALLOW_THP, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_indices_belong_to_the_linked_mimalloc() {
        // SAFETY: mi_version has no preconditions.
        let found = unsafe { mi_version() };
        assert_eq!(
            found, MIMALLOC_VERSION,
            "mimalloc changed: expected version {MIMALLOC_VERSION}, found {found}; read \
             mi_option_arena_reserve and mi_option_allow_thp from its mimalloc.h again"
        );
    }

    /// This test process is short too (unless its first argument is a filter named like a
    /// daemon command): the constructor ran before mimalloc started, and mimalloc, told not to
    /// use transparent huge pages, turned them off for the process, which the kernel reports.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_constructor_set_the_options_before_mimalloc_started() {
        let first = std::env::args_os().nth(1);
        let short = is_short(first.as_ref().map(|a| a.as_encoded_bytes()));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) else {
            panic!("expected a THP_enabled line in /proc/self/status (Linux 5.0 or later)");
        };
        let expected = if short { "0" } else { "1" };
        assert_eq!(line.split_whitespace().nth(1), Some(expected), "{line}");
    }

    #[test]
    fn only_the_daemon_commands_keep_the_defaults() {
        for long in ["run", "sim", "demo"] {
            assert!(!is_short(Some(long.as_bytes())), "{long}");
        }
        for short in [
            "verify",
            "check",
            "--version",
            "--help",
            "runs",
            "",
            "history",
        ] {
            assert!(is_short(Some(short.as_bytes())), "{short}");
        }
        assert!(is_short(None));
    }
}
