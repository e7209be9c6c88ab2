//! The Debian package as a server gets it: built from this checkout with cargo-deb (Cargo.toml's
//! `[package.metadata.deb]`), installed with `dpkg -i`, its unit accepted by `systemd-analyze
//! verify` where dpkg put it, its example configuration in `/etc/teewatch` valid with no API key
//! anywhere, its binary the production build (no `sim`, no `demo`), then removed (configuration,
//! keys and history kept) and purged (all of them gone).
//!
//! It installs on this machine, so it needs root or password-less sudo, and it refuses to run
//! where teewatch is already installed or `/etc/teewatch` or `/var/lib/teewatch` exist: it purges
//! what it installs, and must not take an operator's keys or history with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common::tool;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CARGO_DEB_INSTALL: &str = "cargo install cargo-deb --locked";
/// dpkg and dpkg-deb are in every Debian system; their absence means another distribution.
const DPKG_INSTALL: &str = "apt-get install -y dpkg (this test needs a Debian-based system)";
const SYSTEMD_INSTALL: &str = "apt-get install -y systemd";

const PACKAGE: &str = "teewatch";
const CONFIG: &str = "/etc/teewatch/config.toml";
const CREDENTIALS: &str = "/etc/teewatch/credentials";
/// Where `StateDirectory=teewatch` with `DynamicUser=yes` keeps the state, and its link.
const PRIVATE_STATE: &str = "/var/lib/private/teewatch";
const STATE: &str = "/var/lib/teewatch";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shown(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs commands as root: directly when the test is root, else through `sudo -n`.
struct Root {
    sudo: Option<PathBuf>,
}

impl Root {
    fn get() -> Root {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return Root { sudo: None };
        }
        let sudo = tool::find("sudo").filter(|sudo| {
            Command::new(sudo)
                .args(["-n", "true"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        match sudo {
            Some(sudo) => Root { sudo: Some(sudo) },
            None => panic!(
                "this test installs a Debian package, so it needs root or password-less sudo, \
                 found neither: run `sudo -E cargo test --test package`, or `{}` as root",
                tool::SETUP
            ),
        }
    }

    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.sudo {
            None => Command::new(program),
            Some(sudo) => {
                let mut command = Command::new(sudo);
                command.arg("-n").arg(program);
                command
            }
        }
    }

    /// Runs `program args` as root and returns its output, whatever its exit status.
    fn output<S: AsRef<OsStr>>(&self, program: impl AsRef<OsStr>, args: &[S]) -> Output {
        let program = program.as_ref().to_owned();
        self.command(&program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program:?}: {e}"))
    }

    /// Runs `program args` as root; panics with its output unless it succeeds.
    fn run<S: AsRef<OsStr>>(&self, program: impl AsRef<OsStr>, args: &[S]) -> Output {
        let program = program.as_ref().to_owned();
        let out = self.output(&program, args);
        assert!(
            out.status.success(),
            "{program:?} {:?} failed: {}",
            args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
            shown(&out)
        );
        out
    }
}

/// Purges the package and the state the test made when the test ends, passing or not, so a
/// failure half-way leaves the machine as it found it.
struct PurgeOnDrop<'a> {
    root: &'a Root,
    dpkg: PathBuf,
}

impl Drop for PurgeOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.root.output(&self.dpkg, &["--purge", PACKAGE]);
        let _ = self
            .root
            .output("rm", &["-rf", PRIVATE_STATE, STATE, CREDENTIALS]);
        let _ = self.root.output("rmdir", &["/etc/teewatch"]);
    }
}

/// `dpkg-query`'s status of the package, empty when dpkg knows nothing of it.
fn package_status(dpkg_query: &Path) -> String {
    let out = Command::new(dpkg_query)
        .args(["-W", "-f", "${Status}", PACKAGE])
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

/// Builds the package with cargo-deb into `out_dir` and returns the `.deb`.
fn build_package(cargo_deb_found: &Path, out_dir: &Path) -> PathBuf {
    assert!(cargo_deb_found.is_file());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // What `cargo test` sets for this test binary is not for the build: some dependencies' build
    // scripts rerun when OUT_DIR differs, which would rebuild the release tree on each run
    // instead of reusing what `cargo deb` in a shell built.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text == "OUT_DIR"
            || name_text == "CARGO_PRIMARY_PACKAGE"
            || name_text == "CARGO_TARGET_TMPDIR"
            || [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
            ]
            .iter()
            .any(|p| name_text.starts_with(p))
        {
            command.env_remove(&name);
        }
    }
    let out = command
        .args(["deb", "--locked", "--output"])
        .arg(out_dir)
        .current_dir(repo())
        .output()
        .expect("running cargo deb");
    assert!(out.status.success(), "cargo deb failed: {}", shown(&out));
    let debs: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "expected one .deb in {out_dir:?}, found {debs:?}"
    );
    debs[0].clone()
}

/// The production binary's subcommands, from the `Commands:` section of `--help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_installs_verifies_and_purges_cleanly() {
    let cargo_deb = tool::tool("cargo-deb", CARGO_DEB_INSTALL);
    let dpkg = tool::tool("dpkg", DPKG_INSTALL);
    let dpkg_deb = tool::tool("dpkg-deb", DPKG_INSTALL);
    let dpkg_query = tool::tool("dpkg-query", DPKG_INSTALL);
    let systemd_analyze = tool::tool("systemd-analyze", SYSTEMD_INSTALL);
    let root = Root::get();

    // Never on a machine whose teewatch (or its keys and history) the purge would remove.
    let before = package_status(&dpkg_query);
    assert!(
        before.is_empty() || before.ends_with("not-installed"),
        "teewatch is already known to dpkg on this machine ({before}); this test installs and \
         purges its own build. Run it in a throwaway machine or container, or remove it first: \
         dpkg --purge teewatch"
    );
    for path in ["/etc/teewatch", STATE, PRIVATE_STATE] {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} exists on this machine; this test's purge would remove it. Run it in a \
             throwaway machine or container"
        );
    }

    let scratch = std::env::temp_dir().join(format!("teewatch-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let deb = build_package(&cargo_deb, &scratch);

    // What is in it, before anything is installed.
    let field = |name: &str| {
        let out = Command::new(&dpkg_deb)
            .arg("-f")
            .arg(&deb)
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg-deb -f {name}: {}", shown(&out));
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), PACKAGE);
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    let conffiles = Command::new(&dpkg_deb)
        .arg("-I")
        .arg(&deb)
        .arg("conffiles")
        .output()
        .unwrap();
    assert_eq!(
        text(&conffiles.stdout).trim(),
        CONFIG,
        "{}",
        shown(&conffiles)
    );

    let _purge = PurgeOnDrop {
        root: &root,
        dpkg: dpkg.clone(),
    };
    root.run(&dpkg, &[OsStr::new("-i"), deb.as_os_str()]);
    assert_eq!(package_status(&dpkg_query), "install ok installed");

    // Where dpkg put the binary and the unit.
    let listed = text(&root.run(&dpkg, &["-L", PACKAGE]).stdout);
    let installed = |suffix: &str| -> PathBuf {
        listed
            .lines()
            .find(|l| l.ends_with(suffix))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("dpkg -L teewatch lists no {suffix}:\n{listed}"))
    };
    let binary = installed("/bin/teewatch");
    assert_eq!(binary, Path::new("/usr/bin/teewatch"));
    let unit = installed("/systemd/system/teewatch.service");
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        std::fs::read_to_string(repo().join("systemd/teewatch.service")).unwrap(),
        "the installed unit {unit:?} is not systemd/teewatch.service"
    );

    // systemd's own check of the installed unit, which finds ExecStart='s binary where dpkg put
    // it: any output is a failure, as in systemd/check.sh.
    let verify = |unit: &Path| {
        Command::new(&systemd_analyze)
            .args(["verify", "--man=no"])
            .arg(unit)
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap()
    };
    let out = verify(&unit);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {unit:?}: {}",
        shown(&out)
    );
    // The same unit with ExecStart= naming a binary that is not there is refused, so the silence
    // above is about the installed binary.
    let elsewhere = scratch.join("teewatch.service");
    std::fs::write(
        &elsewhere,
        std::fs::read_to_string(&unit).unwrap().replace(
            "ExecStart=/usr/bin/teewatch ",
            "ExecStart=/usr/bin/teewatch-absent ",
        ),
    )
    .unwrap();
    let out = verify(&elsewhere);
    assert!(
        !out.status.success()
            && text(&out.stderr)
                .contains("Command /usr/bin/teewatch-absent is not executable: No such file"),
        "expected systemd-analyze verify to refuse a missing ExecStart binary, found: {}",
        shown(&out)
    );

    // The example configuration is valid as installed, with no API key present: its target
    // reads a credential that only the unit provides, at start.
    let credentials = std::fs::metadata(CREDENTIALS).unwrap();
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        assert!(credentials.is_dir());
        assert_eq!(credentials.permissions().mode() & 0o7777, 0o700);
        assert_eq!((credentials.uid(), credentials.gid()), (0, 0));
    }
    let keys = root.run("ls", &["-A", CREDENTIALS]);
    assert_eq!(text(&keys.stdout).trim(), "", "no key is shipped");
    let check = Command::new(&binary)
        .args(["config", "check", CONFIG])
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NANOGPT_API_KEY")
        .output()
        .unwrap();
    assert!(check.status.success(), "config check: {}", shown(&check));
    assert!(
        text(&check.stdout).starts_with(&format!("{CONFIG}: valid")),
        "{}",
        shown(&check)
    );

    // The production build: the simulator's commands are not there at all.
    let help = Command::new(&binary).arg("--help").output().unwrap();
    assert!(help.status.success(), "{}", shown(&help));
    let commands = subcommands(&text(&help.stdout));
    assert!(
        commands.contains(&"run".to_string()) && commands.contains(&"check".to_string()),
        "{commands:?}"
    );
    for absent in ["sim", "demo"] {
        assert!(
            !commands.iter().any(|c| c == absent),
            "expected no `{absent}` in the production binary, found commands {commands:?}"
        );
        let out = Command::new(&binary).arg(absent).output().unwrap();
        assert!(
            !out.status.success()
                && text(&out.stderr).contains(&format!("unrecognized subcommand '{absent}'")),
            "{}",
            shown(&out)
        );
    }

    // A key and a history, as an operator and the unit's StateDirectory= would leave them.
    let key = format!("{CREDENTIALS}/nanogpt_api_key");
    root.run("sh", &["-c", &format!("umask 077; echo sk-test > {key}")]);
    root.run("install", &["-d", "-m", "0700", PRIVATE_STATE]);
    root.run("ln", &["-s", "private/teewatch", STATE]);
    root.run("touch", &[&format!("{PRIVATE_STATE}/teewatch.db")]);

    // Remove: the program goes, the configuration, keys and history stay.
    root.run(&dpkg, &["-r", PACKAGE]);
    assert_eq!(package_status(&dpkg_query), "deinstall ok config-files");
    assert!(!binary.exists() && !unit.exists(), "{binary:?} {unit:?}");
    for kept in [CONFIG, CREDENTIALS, &key, STATE, PRIVATE_STATE] {
        assert!(
            root.output("test", &["-e", kept]).status.success(),
            "{kept} removed by dpkg -r"
        );
    }

    // Purge: nothing of teewatch is left.
    root.run(&dpkg, &["--purge", PACKAGE]);
    let after = package_status(&dpkg_query);
    assert!(
        after.is_empty() || after.ends_with("not-installed"),
        "after dpkg --purge: {after}"
    );
    for gone in ["/etc/teewatch", STATE, PRIVATE_STATE] {
        assert!(
            std::fs::symlink_metadata(gone).is_err(),
            "{gone} left after dpkg --purge"
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
