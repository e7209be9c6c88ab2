//! Starting the simulator in-process for a test, with the configuration it writes loaded, and
//! reading what failed in a verdict.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use teewatch::config::Config;
use teewatch::sim::server::{SimOptions, Simulator};
use teewatch::verify::{State, Verdict};

/// A running simulator, the configuration it wrote, and the folder that holds it.
pub struct Running {
    pub sim: Simulator,
    pub config: Config,
    pub dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a simulator on a free loopback port and loads the configuration it writes.
pub async fn start(name: &str, options: SimOptions) -> Running {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("teewatch-sim-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sim.toml");
    teewatch::sim::write_config::write_config(&sim.state, &path).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    Running { sim, config, dir }
}

/// Every check that did not pass, one line each, for assertion messages.
pub fn failing(v: &Verdict) -> Vec<String> {
    v.checks
        .iter()
        .filter(|c| c.state != State::Pass)
        .map(|c| format!("{} [{}] {:?}: {}", c.name, c.scope, c.state, c.reason))
        .collect()
}
