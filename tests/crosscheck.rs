#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod common;
use teewatch::config::Config;
use teewatch::sim::server::{SimOptions, Simulator, model_name};
use teewatch::verify::{self, Bundle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump() {
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimOptions {
            gpus: 2,
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let dir = std::path::PathBuf::from("/tmp/ccdump");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sim.toml");
    teewatch::sim::write_config::write_config(&sim.state, &path).unwrap();
    let config = Config::load(&path).unwrap();
    let model = model_name(0);
    let fetched = common::sim_fetch::fetch_bundle(&sim.base_url, &sim.state.api_key, &model).await;
    std::fs::write(
        dir.join("bundle.json"),
        serde_json::to_string_pretty(&fetched.bundle).unwrap(),
    )
    .unwrap();
    let roots = serde_json::json!({
        "intel_root_pem": sim.state.intel.root_pem(),
        "nvidia_root_pem": sim.state.nvidia.root_pem(),
        "nras_intermediate_pem": sim.state.nras.lock().unwrap().intermediate_pem(),
        "nras_issuer": sim.base_url,
    });
    std::fs::write(dir.join("roots.json"), roots.to_string()).unwrap();
    let bundle = Bundle::from_value(fetched.bundle).unwrap();
    let v = verify::verify(
        &bundle,
        &config.target(&model).unwrap().policy,
        &config.trust_anchors(),
    );
    for c in &v.checks {
        println!("CHECK {} [{}] {:?}: {}", c.name, c.scope, c.state, c.reason);
    }
    for o in &v.observed {
        println!(
            "OBS [{}] {} = {} ({})",
            o.scope,
            o.field,
            o.value,
            o.source.as_str()
        );
    }
}
