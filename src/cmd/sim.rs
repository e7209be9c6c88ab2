//! `teewatch sim`: the simulated provider, PCCS and NRAS on loopback until Ctrl-C. Only the
//! binary built with the `sim` feature has it; the simulator itself is crates/sim.

use anyhow::Context;

use teewatch::exit;
use teewatch_sim::compose_manager::ActionsOrder;
use teewatch_sim::faults::Fault;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, Simulator, model_name};

/// `teewatch sim`: serve until interrupted.
// One argument per `teewatch sim` flag, passed straight from the parsed command line.
#[allow(clippy::too_many_arguments)]
pub fn run_sim(
    listen: std::net::SocketAddr,
    models: usize,
    nodes: usize,
    gpus: usize,
    faults: &[String],
    signature_delay_ms: u64,
    write_config: Option<&std::path::Path>,
    formats: &[String],
    actions_orders: &[String],
    tls: bool,
) -> anyhow::Result<u8> {
    if !listen.ip().is_loopback() {
        eprintln!(
            "teewatch: --listen {listen}: the simulator only listens on loopback addresses (127.0.0.0/8, ::1)"
        );
        return Ok(exit::USAGE);
    }
    let mut parsed = Vec::new();
    for spec in faults {
        let (model, name) = match spec.split_once('=') {
            Some((m, f)) => (Some(m.to_string()), f),
            None => (None, spec.as_str()),
        };
        match name.parse::<Fault>() {
            Ok(fault) => parsed.push((model, fault)),
            Err(e) => {
                eprintln!("teewatch: --fault {spec}: {e}");
                return Ok(exit::USAGE);
            }
        }
        if let Some(m) = &parsed.last().and_then(|(m, _)| m.clone()) {
            if !(0..models.max(1)).any(|i| model_name(i) == *m) {
                eprintln!(
                    "teewatch: --fault {spec}: no model \"{m}\" (models are {})",
                    model_name(0)
                );
                return Ok(exit::USAGE);
            }
        }
    }
    let mut parsed_formats = Vec::new();
    for name in formats {
        match name.parse::<SimFormat>() {
            Ok(format) => parsed_formats.push(format),
            Err(e) => {
                eprintln!("teewatch: --format {name}: {e}");
                return Ok(exit::USAGE);
            }
        }
    }
    if parsed_formats.len() > models.max(1) {
        eprintln!(
            "teewatch: {} --format given for {} model(s); pass one per model at most",
            parsed_formats.len(),
            models.max(1)
        );
        return Ok(exit::USAGE);
    }
    let mut parsed_orders = Vec::new();
    for name in actions_orders {
        match name.parse::<ActionsOrder>() {
            Ok(order) => parsed_orders.push(order),
            Err(e) => {
                eprintln!("teewatch: --actions-order {name}: {e}");
                return Ok(exit::USAGE);
            }
        }
    }
    if parsed_orders.len() > models.max(1) {
        eprintln!(
            "teewatch: {} --actions-order given for {} model(s); pass one per model at most",
            parsed_orders.len(),
            models.max(1)
        );
        return Ok(exit::USAGE);
    }
    let options = SimOptions {
        models,
        nodes,
        gpus,
        signature_delay: std::time::Duration::from_millis(signature_delay_ms),
        faults: parsed,
        formats: parsed_formats,
        actions_orders: parsed_orders,
        tls,
        ..SimOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let sim = match Simulator::start(listen, options).await {
            Ok(sim) => sim,
            Err(e) => {
                eprintln!("teewatch: {e}");
                return Ok(exit::SOFTWARE);
            }
        };
        println!(
            "teewatch simulator on {} (TEST trust roots; nothing here is real hardware)",
            sim.base_url
        );
        for model in &sim.state.models {
            println!(
                "  model {}: format {}, {} node(s), {} gpu(s) each",
                model.name,
                model.format,
                model.nodes.len(),
                model.gpus
            );
            if model.format.is_near() {
                println!("    compose manager actions order: {}", model.actions_order);
            }
        }
        println!(
            "  admin: GET/POST {}/admin/faults, POST {}/admin/rotate-jwks",
            sim.base_url, sim.base_url
        );
        if let Some(path) = write_config {
            let written = teewatch_sim::write_config::write_config(&sim.state, path)
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "  wrote {} (api key in {})",
                written.config.display(),
                written.api_key.display()
            );
        }
        tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?;
        Ok(exit::PASS)
    })
}
