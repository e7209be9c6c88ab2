//! Starting the simulator in-process for a test, with the configuration it writes loaded, and
//! reading what failed in a verdict.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use teewatch::config::Config;
use teewatch::fetch::check::Fetcher;
use teewatch::fetch::http::{Http, HttpOptions};
use teewatch::verify::{State, Verdict};
use teewatch_sim::server::{SimOptions, Simulator};

/// A running simulator, the configuration it wrote, and the folder that holds it.
pub struct Running {
    pub sim: Simulator,
    pub config: Config,
    pub dir: PathBuf,
    /// teewatch's own fetcher, with short timeouts so slow faults end quickly.
    pub fetcher: Fetcher,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Rewrites the configuration at `config` with `target`'s key source line (`api_key_file = …`
/// or `api_key_env = …`) replaced by `line`; panics if no `[[target]]` is named `target`.
pub fn set_key_source(config: &Path, target: &str, line: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let sections: Vec<String> = text
        .split("[[target]]\n")
        .map(|section| {
            if section.starts_with(&format!("name = \"{target}\"\n")) {
                let old = section
                    .lines()
                    .find(|l| l.starts_with("api_key_file = ") || l.starts_with("api_key_env = "))
                    .unwrap()
                    .to_string();
                section.replacen(&old, line, 1)
            } else {
                section.to_string()
            }
        })
        .collect();
    let edited = sections.join("[[target]]\n");
    assert_ne!(edited, text, "no [[target]] named {target}");
    std::fs::write(config, edited).unwrap();
}

/// Starts a simulator on a free loopback port and loads the configuration it writes.
pub async fn start(name: &str, options: SimOptions) -> Running {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    // Every test shares the one test process, so a counter keeps two runs of the same name (in
    // different modules) from sharing a directory.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("teewatch-sim-{}-{n}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sim.toml");
    teewatch_sim::write_config::write_config(&sim.state, &path).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let fetcher = Fetcher::new(short_http(&config), Some(&dir.join("collateral")));
    Running {
        sim,
        config,
        dir,
        fetcher,
    }
}

/// The configuration's client (trusting an HTTPS simulator's certificate), with a 5 s limit.
fn short_http(config: &Config) -> Http {
    Http::new(HttpOptions {
        total_timeout: std::time::Duration::from_secs(5),
        ..HttpOptions::for_config(config)
    })
    .unwrap()
}

/// One live check of `model` through the run's fetcher (warm caches), verified under the
/// written config.
pub async fn check(run: &Running, model: &str) -> Verdict {
    check_with(run, &run.fetcher, model).await
}

/// One live check with a fresh fetcher: no cached collateral or JWKS, as a first check after a
/// restart with an empty cache would see.
pub async fn cold_check(run: &Running, model: &str, tag: &str) -> Verdict {
    let fetcher = Fetcher::new(
        short_http(&run.config),
        Some(&run.dir.join(format!("collateral-{tag}"))),
    );
    check_with(run, &fetcher, model).await
}

/// The bundle teewatch's fetcher gathers for `model` (warm caches), as JSON.
pub async fn fetch(run: &Running, model: &str) -> serde_json::Value {
    let target = run.config.target(model).unwrap();
    run.fetcher.check(&run.config, target).await.unwrap()
}

/// One live check of `model` with the target's configuration changed by `adjust` first (another
/// profile, signing algorithm or paths), verified under the written config.
pub async fn check_adjusted(
    run: &Running,
    model: &str,
    adjust: impl FnOnce(&mut teewatch::config::MonitorConfig),
) -> (Verdict, teewatch::verify::Bundle) {
    let mut config = run.config.clone();
    let target = config.targets.iter_mut().find(|t| t.name == model).unwrap();
    adjust(target.monitor.as_mut().unwrap());
    fetch_and_verify(&config, &run.fetcher, model).await
}

async fn check_with(run: &Running, fetcher: &Fetcher, model: &str) -> Verdict {
    fetch_and_verify(&run.config, fetcher, model).await.0
}

/// One live check of `model` under `config`, and the bundle it gathered.
async fn fetch_and_verify(
    config: &Config,
    fetcher: &Fetcher,
    model: &str,
) -> (Verdict, teewatch::verify::Bundle) {
    let target = config.target(model).unwrap();
    let bundle = fetcher.check(config, target).await.unwrap();
    let bundle = teewatch::verify::Bundle::from_value(bundle).unwrap();
    let verdict = teewatch::verify::verify(&bundle, &target.policy, &config.trust_anchors());
    (verdict, bundle)
}

/// What keeps a healthy verdict from passing, beyond what the format rules out: every check that
/// did not pass, except `tls_key_binding` on a part whose TLS key teewatch cannot have seen (a
/// model behind the NEAR gateway, a node beside the one that answered), which is `unknown` by
/// design. Empty for a verdict that proves everything it can.
pub fn unproven(v: &Verdict) -> Vec<String> {
    v.checks
        .iter()
        .filter(|c| c.state != State::Pass)
        .filter(|c| {
            !(c.name == "tls_key_binding"
                && c.state == State::Unknown
                && (c.reason.starts_with("behind ") || c.reason.starts_with("listed beside")))
        })
        .map(|c| format!("{} [{}] {:?}: {}", c.name, c.scope, c.state, c.reason))
        .collect()
}

/// Every check that did not pass, one line each, for assertion messages.
pub fn failing(v: &Verdict) -> Vec<String> {
    v.checks
        .iter()
        .filter(|c| c.state != State::Pass)
        .map(|c| format!("{} [{}] {:?}: {}", c.name, c.scope, c.state, c.reason))
        .collect()
}

/// Writes a simulator case as the stored bundles keep it: `bundle.json` beside the run's
/// configuration and test roots (`sim.toml`, the `.pem` files; not the API key, the database or
/// caches), in a `dir` emptied first.
pub fn save_case(run: &Running, dir: &Path, bundle: &teewatch::verify::Bundle) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(&run.dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "sim.toml" || name.ends_with(".pem") {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    std::fs::write(dir.join("bundle.json"), bundle.to_json_pretty() + "\n").unwrap();
}
