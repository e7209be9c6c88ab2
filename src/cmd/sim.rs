//! `teewatch sim`: the simulated provider, PCCS and NRAS on loopback until Ctrl-C. Only the
//! binary built with the `sim` feature has it; the simulator itself is crates/sim.

use std::net::SocketAddr;
use std::path::PathBuf;

use teewatch::exit;
use teewatch_sim::compose_manager::ActionsOrder;
use teewatch_sim::faults::{ALL_FAULTS, Fault};
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, Simulator, model_name};

use super::{CmdError, Ctx, output};

/// `teewatch sim`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (loopback only; port 0 picks a free one, which the banner names).
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// How many models to serve.
    #[arg(long, default_value_t = 1)]
    pub models: usize,
    /// Nodes per model (served round-robin, each with its own key).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// GPUs per node.
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// Faults on at start, as `NAME` or `MODEL=NAME` (repeatable; the names are listed below).
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// Milliseconds before a chat's signature becomes available.
    #[arg(long, default_value_t = 0)]
    pub signature_delay_ms: u64,
    /// Write a ready teewatch configuration (and the API key and test roots beside it).
    #[arg(long)]
    pub write_config: Option<PathBuf>,
    /// Attestation format of each model, in order: dstack, near-gateway, near-direct, chutes
    /// or tinfoil (repeatable; models beyond the list serve dstack).
    #[arg(long = "format", value_name = "NAME")]
    pub formats: Vec<String>,
    /// Member order of each NEAR model's compose-manager actions, in order: manager (hashed
    /// and served in the compose manager's order), sorted-view (hashed so, served sorted by
    /// key) or sorted (hashed and served sorted) (repeatable; models beyond the list: manager).
    #[arg(long = "actions-order", value_name = "ORDER")]
    pub actions_orders: Vec<String>,
    /// Serve everything over HTTPS with the simulator's self-signed certificate.
    #[arg(long)]
    pub tls: bool,
}

/// The examples, the faults (the simulator's own list, `ALL_FAULTS`) and the exit codes.
pub fn after_help() -> String {
    let (service, model): (Vec<Fault>, Vec<Fault>) =
        ALL_FAULTS.iter().partition(|f| f.is_service_wide());
    // The names wrapped at 80 columns, each line indented by four.
    let names = |faults: &[Fault]| -> String {
        let mut lines: Vec<String> = vec![String::from("   ")];
        for fault in faults {
            if lines
                .last()
                .is_some_and(|l| l.len() + fault.name().len() + 1 > 80)
            {
                lines.push(String::from("   "));
            }
            if let Some(line) = lines.last_mut() {
                line.push(' ');
                line.push_str(fault.name());
            }
        }
        lines.join("\n")
    };
    let help = super::help::after_help(
        &[(
            "two models on a free port, with the configuration for them in sim.toml (until Ctrl-C)",
            "teewatch sim --listen 127.0.0.1:0 --models 2 --write-config sim.toml",
        )],
        &[exit::PASS, exit::USAGE, exit::SOFTWARE],
    );
    format!(
        "Faults (--fault NAME for every model or MODEL=NAME for one; POST /admin/faults at run time):\n  \
         of one model:\n{}\n  of the shared PCCS, NRAS, JWKS and TLS connection:\n{}\n\n{help}",
        names(&model),
        names(&service)
    )
}

/// `teewatch sim`: serve until interrupted.
pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    let (listen, models) = (args.listen, args.models);
    if !listen.ip().is_loopback() {
        return Err(CmdError::usage(format!(
            "--listen {listen}: the simulator only listens on loopback addresses (127.0.0.0/8, ::1)"
        )));
    }
    let mut parsed = Vec::new();
    for spec in &args.faults {
        let (model, name) = match spec.split_once('=') {
            Some((m, f)) => (Some(m.to_string()), f),
            None => (None, spec.as_str()),
        };
        match name.parse::<Fault>() {
            Ok(fault) => parsed.push((model, fault)),
            Err(e) => {
                return Err(CmdError::usage(format!("--fault {spec}: {e}")));
            }
        }
        if let Some(m) = &parsed.last().and_then(|(m, _)| m.clone()) {
            if !(0..models.max(1)).any(|i| model_name(i) == *m) {
                return Err(CmdError::usage(format!(
                    "--fault {spec}: no model \"{m}\" (models are {})",
                    model_name(0)
                )));
            }
        }
    }
    let mut parsed_formats = Vec::new();
    for name in &args.formats {
        match name.parse::<SimFormat>() {
            Ok(format) => parsed_formats.push(format),
            Err(e) => {
                return Err(CmdError::usage(format!("--format {name}: {e}")));
            }
        }
    }
    if parsed_formats.len() > models.max(1) {
        return Err(CmdError::usage(format!(
            "{} --format given for {} model(s); pass one per model at most",
            parsed_formats.len(),
            models.max(1)
        )));
    }
    let mut parsed_orders = Vec::new();
    for name in &args.actions_orders {
        match name.parse::<ActionsOrder>() {
            Ok(order) => parsed_orders.push(order),
            Err(e) => {
                return Err(CmdError::usage(format!("--actions-order {name}: {e}")));
            }
        }
    }
    if parsed_orders.len() > models.max(1) {
        return Err(CmdError::usage(format!(
            "{} --actions-order given for {} model(s); pass one per model at most",
            parsed_orders.len(),
            models.max(1)
        )));
    }
    let options = SimOptions {
        models,
        nodes: args.nodes,
        gpus: args.gpus,
        signature_delay: std::time::Duration::from_millis(args.signature_delay_ms),
        faults: parsed,
        formats: parsed_formats,
        actions_orders: parsed_orders,
        tls: args.tls,
        ..SimOptions::default()
    };
    let write_config = args.write_config.as_deref();
    ctx.runtime()?.block_on(async move {
        let sim = Simulator::start(listen, options)
            .await
            .map_err(|e| CmdError::software(e.to_string()))?;
        let mut banner = format!(
            "teewatch simulator on {} (TEST trust roots; nothing here is real hardware)\n",
            sim.base_url
        );
        for model in &sim.state.models {
            banner.push_str(&format!(
                "  model {}: format {}, {} node(s), {} gpu(s) each\n",
                model.name,
                model.format,
                model.nodes.len(),
                model.gpus
            ));
            if model.format.is_near() {
                banner.push_str(&format!(
                    "    compose manager actions order: {}\n",
                    model.actions_order
                ));
            }
        }
        banner.push_str(&format!(
            "  admin: GET/POST {}/admin/faults, POST {}/admin/rotate-jwks\n",
            sim.base_url, sim.base_url
        ));
        output::print(&banner)?;
        if let Some(path) = write_config {
            let written = teewatch_sim::write_config::write_config(&sim.state, path)
                .map_err(|e| CmdError::software(format!("writing {}: {e}", path.display())))?;
            output::line(format!(
                "  wrote {} (api key in {})",
                written.config.display(),
                written.api_key.display()
            ))?;
        }
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| CmdError::software(format!("waiting for ctrl-c: {e}")))?;
        Ok(exit::PASS)
    })
}
