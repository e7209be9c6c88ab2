//! `teewatch check --config FILE`: one live check of one or every monitored target, each
//! verdict printed as it is made (a checklist each, or one JSON array at the end), optionally
//! with each target's bundle saved for `teewatch verify`.

use std::path::PathBuf;

use teewatch::config::TargetConfig;
use teewatch::exit;
use teewatch::fetch::check::bundle_file_name;
use teewatch::render;
use teewatch::verify::{self, Bundle};

use super::{CmdError, Ctx, output};

/// `teewatch check`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Check only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Print a JSON array of teewatch-verdict/1 verdicts.
    #[arg(long)]
    pub json: bool,
    /// Write each target's bundle to DIR/<target>.json.
    #[arg(long, value_name = "DIR")]
    pub save_bundle: Option<PathBuf>,
}

pub fn after_help() -> String {
    super::help::after_help(
        &[
            (
                "every target of the configuration `teewatch sim --write-config` wrote (exit 0)",
                "teewatch check --config sim.toml",
            ),
            (
                "one target as JSON, its evidence saved for `teewatch verify` (exit 0)",
                "teewatch check --config sim.toml --target TEE/sim-model-0 --json --save-bundle bundles",
            ),
        ],
        &[
            exit::PASS,
            exit::FAIL,
            exit::UNKNOWN,
            exit::USAGE,
            exit::SOFTWARE,
            exit::CONFIG,
        ],
    )
}

pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    let config = super::load_config(&args.config)?;
    let targets: Vec<&TargetConfig> = match &args.target {
        Some(name) => vec![super::find_target(&config, &args.config, name)?],
        // Policy-only targets have nothing to fetch.
        None => config.monitored().map(|(t, _)| t).collect(),
    };
    for warning in teewatch::fetch::check::key_file_warnings(&config) {
        output::note(format!("warning: {warning}"));
    }
    let anchors = config.trust_anchors();
    let runtime = ctx.runtime()?;
    let fetcher = super::fetcher(&config)?;
    let mut verdicts = Vec::new();
    let mut worst = verify::State::Pass;
    for target in targets {
        let bundle_json = match runtime.block_on(fetcher.check(&config, target)) {
            Ok(b) => b,
            // A key that cannot be read makes this target's checks unknown, not the whole run.
            Err(e) => match e.stand_in_bundle(&config, target) {
                Some(bundle) => {
                    output::note(format!("{e}; its checks are unknown"));
                    bundle
                }
                None => return Err(CmdError::config(e.to_string())),
            },
        };
        if let Some(dir) = &args.save_bundle {
            save(dir, &target.name, &bundle_json)?;
        }
        let bundle = Bundle::from_value(bundle_json)
            .map_err(|e| CmdError::software(format!("the fetched bundle is malformed: {e}")))?;
        let mut verdict = verify::verify(&bundle, &target.policy, &anchors);
        verdict.policy_source = Some(super::configured_policy_source(&target.name, &args.config));
        worst = worst.max(verdict.state);
        if !args.json {
            output::print(&format!("{}\n", render::checklist(&verdict)))?;
        }
        verdicts.push(verdict);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&verdicts)
            .map_err(|e| CmdError::software(format!("serialising the verdicts: {e}")))?;
        output::line(text)?;
    }
    Ok(exit::for_state(worst))
}

/// Writes a target's bundle to `dir/<target>.json`.
fn save(dir: &std::path::Path, target: &str, bundle: &serde_json::Value) -> Result<(), CmdError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CmdError::software(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(bundle_file_name(target));
    let text = serde_json::to_string_pretty(bundle)
        .map_err(|e| CmdError::software(format!("serialising the bundle: {e}")))?;
    std::fs::write(&path, text)
        .map_err(|e| CmdError::software(format!("writing {}: {e}", path.display())))
}
