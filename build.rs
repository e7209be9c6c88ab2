//! Rebuilds the crate when a migration is added (`sqlx::migrate!` embeds `migrations/` at compile
//! time, and cargo only notices new files in a folder it was told to watch), and names the commit
//! and its date for `teewatch --version`.
//!
//! The date is `SOURCE_DATE_EPOCH` when set (reproducible builds set it), else the commit's own
//! date, never the build's clock: two builds of one commit print the same version. Outside a git
//! checkout, or without git, both read "unknown"; the build never fails over it.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit changes HEAD (a branch switch) or the branch's ref (a commit on it); packed
    // refs move when git packs them. Only files that exist are watched: a missing one would
    // make cargo rerun this script on every build.
    for name in ["HEAD", "packed-refs"] {
        watch_git_path(name);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch_git_path(&branch);
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(date_of_epoch)
        .or_else(|| git(&["log", "-1", "--format=%cs", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TEEWATCH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=TEEWATCH_BUILD_DATE={date}");
}

/// Runs git in the package's folder; its trimmed output, or `None` when git is missing, fails or
/// prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Tells cargo to rerun when the git file `name` (resolved for worktrees too) changes.
fn watch_git_path(name: &str) {
    if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", name]) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// `YYYY-MM-DD` of a Unix time, in UTC (the civil-from-days algorithm; no date crate needed).
fn date_of_epoch(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
