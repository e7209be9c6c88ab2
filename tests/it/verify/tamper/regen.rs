//! Writes the dstack simulator base of the tamper matrix, `tests/bundles/tamper/dstack-sim/`: no
//! dstack-format simulator bundle is stored elsewhere (`tests/bundles/formats/` holds the formats
//! beyond dstack), and a stored one keeps the matrix fast and its table stable. Run with
//! `TEEWATCH_REGENERATE=dstack-sim cargo test --test it verify::tamper -- --ignored` (or `=1`, which
//! regenerates the golden format bundles too when run over the whole suite); the keys, nonces and
//! roots change, so the matrix must then pass again before the new base is committed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/bundles/tamper; run with TEEWATCH_REGENERATE=1 and --ignored"]
async fn regenerate_the_dstack_simulator_base() {
    // As for the golden format bundles: `1` regenerates everything, a comma-separated list only
    // the cases it names (this one is `dstack-sim`).
    let Some(wanted) = std::env::var_os("TEEWATCH_REGENERATE") else {
        return;
    };
    let wanted = wanted.to_string_lossy().into_owned();
    if wanted != "1" && !wanted.split(',').any(|w| w.trim() == "dstack-sim") {
        return;
    }
    let options = SimOptions {
        formats: vec![SimFormat::Dstack],
        nodes: 1,
        tls: true,
        ..SimOptions::default()
    };
    let run = common::sim_run::start("tamper-dstack", options).await;
    let model = model_name(0);
    let (verdict, bundle) = common::sim_run::check_adjusted(&run, &model, |_| {}).await;
    assert_eq!(
        common::sim_run::unproven(&verdict),
        Vec::<String>::new(),
        "a healthy dstack simulator answer proves everything it can"
    );
    let dir = common::repo_path("tests/bundles/tamper/dstack-sim");
    common::sim_run::save_case(&run, &dir, &bundle);
}
