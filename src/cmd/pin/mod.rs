//! `teewatch pin`: from nothing to `identity_pinned` in one command. One live check of a target
//! (the fetch `teewatch check` runs) or a saved bundle is verified with the target's policy and
//! the configuration's trust anchors; only when every signature and binding check passed
//! (`rule.rs`) are the verified values printed as `[target.pins]` (and `[target.gateway_pins]`
//! for a NEAR gateway) allowlists, and with `--write` set in the configuration file in place
//! (`edit.rs`). A refused verdict names the checks that did not pass and writes nothing.

mod edit;
mod rule;

use std::path::{Path, PathBuf};

use teewatch::config::{Config, TargetConfig};
use teewatch::exit;
use teewatch::verify::{self, Bundle, State};

use rule::{Problem, Produced};

use super::{CmdError, Ctx, output};

/// `teewatch pin`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// The target to pin.
    #[arg(long)]
    pub target: String,
    /// Take the evidence from this saved bundle instead of a live check.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Set the pins in the configuration file (comments and layout kept).
    #[arg(long)]
    pub write: bool,
}

pub fn after_help() -> String {
    super::help::after_help(
        &[
            (
                "the pins one live check of a simulator model proves, printed (exit 0)",
                "teewatch pin --config sim.toml --target TEE/sim-model-0",
            ),
            (
                "the same, set in sim.toml, comments and layout kept; each change is printed (exit 0)",
                "teewatch pin --config sim.toml --target TEE/sim-model-0 --write",
            ),
            (
                "pins from a saved bundle, judged with its configuration (exit 0)",
                "teewatch pin --config tests/bundles/formats/near-gateway-ecdsa/sim.toml --target TEE/sim-model-0 --bundle tests/bundles/formats/near-gateway-ecdsa/bundle.json",
            ),
        ],
        &[
            exit::PASS,
            exit::FAIL,
            exit::UNKNOWN,
            exit::USAGE,
            exit::DATA_ERR,
            exit::SOFTWARE,
            exit::CONFIG,
        ],
    )
}

/// `teewatch pin --config FILE --target NAME [--bundle FILE] [--write]`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    let (config_path, target) = (args.config.as_path(), args.target.as_str());
    let config = super::load_config(config_path)?;
    let target_config = super::find_target(&config, config_path, target)?;
    let (bundle, origin) = match &args.bundle {
        Some(path) => (
            super::read_bundle(path)?,
            format!("the bundle {}", path.display()),
        ),
        None => (
            live_bundle(&config, target_config, ctx)?,
            "a live check".to_string(),
        ),
    };
    let verdict = verify::verify(&bundle, &target_config.policy, &config.trust_anchors());
    let produced = rule::derive(&verdict).map_err(|problems| refuse(target, &problems))?;
    if produced.blocks.iter().any(|b| b.fields.is_empty()) {
        return Err(CmdError::new(
            exit::FAIL,
            format!("target \"{target}\": the evidence holds no value to pin"),
        ));
    }
    let date = bundle.observed_at.format("%Y-%m-%d").to_string();
    let mut text = header(target, &bundle, &verdict.trust, &origin, &produced);
    for (i, block) in produced.blocks.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&edit::block_text(block, &date));
    }
    output::print(&text)?;
    if !args.write {
        return Ok(exit::PASS);
    }
    write_pins(config_path, target, &produced, &date)
}

/// One live check of the target through the fetcher `teewatch check` uses (same client, same
/// collateral cache beside the database).
fn live_bundle(config: &Config, target: &TargetConfig, ctx: &Ctx) -> Result<Bundle, CmdError> {
    let fetcher = super::fetcher(config)?;
    let value = ctx
        .runtime()?
        .block_on(fetcher.check(config, target))
        .map_err(|e| CmdError::config(e.to_string()))?;
    Bundle::from_value(value)
        .map_err(|e| CmdError::software(format!("the fetched bundle is malformed: {e}")))
}

/// Names every check that kept the verdict from giving pins; 1 when one failed, else 2.
fn refuse(target: &str, problems: &[Problem]) -> CmdError {
    let mut message = format!(
        "target \"{target}\": not every signature and binding check passed, so nothing is pinned and nothing written:"
    );
    for p in problems {
        let scope = if p.scope.is_empty() {
            String::new()
        } else {
            format!(" [{}]", p.scope)
        };
        message.push_str(&format!(
            "\n  {}{scope} {}: {}",
            p.name,
            p.state.as_str(),
            p.reason
        ));
    }
    let worst = problems
        .iter()
        .map(|p| p.state)
        .max()
        .unwrap_or(State::Fail);
    CmdError::new(exit::for_state(worst).max(exit::FAIL), message)
}

/// The comment lines above the blocks: where the evidence came from, that the rule held, the
/// TCB status, the test roots, and whatever did not pass outside the rule.
fn header(
    target: &str,
    bundle: &Bundle,
    trust: &[String],
    origin: &str,
    produced: &Produced,
) -> String {
    let mut out = format!(
        "# teewatch pin: target \"{target}\", evidence observed at {} ({origin})\n",
        bundle.observed_at_text()
    );
    out.push_str(&format!(
        "# every {} check of every part passed\n",
        rule::REQUIRED_CHECKS.join(", ")
    ));
    let tcb: Vec<String> = produced
        .tcb
        .iter()
        .map(|(status, scopes)| {
            let scopes: Vec<&str> = scopes
                .iter()
                .map(|s| if s.is_empty() { "the node" } else { s.as_str() })
                .collect();
            format!("{status} ({})", scopes.join(" "))
        })
        .collect();
    out.push_str(&format!("# TCB status: {}\n", tcb.join(", ")));
    if bundle.target != target {
        out.push_str(&format!(
            "# the bundle was made for target \"{}\"; judged with the policy of \"{target}\"\n",
            bundle.target
        ));
    }
    if !trust.is_empty() {
        out.push_str(&format!(
            "# TEST TRUST ROOTS IN FORCE ({}): these values prove nothing about production hardware\n",
            trust.join(", ")
        ));
    }
    for note in &produced.notes {
        let scope = if note.scope.is_empty() {
            String::new()
        } else {
            format!(" [{}]", note.scope)
        };
        out.push_str(&format!(
            "# not required for pinning, did not pass: {}{scope} {}: {}\n",
            note.name,
            note.state.as_str(),
            note.reason
        ));
    }
    for module in &produced.modules {
        out.push_str(&format!(
            "# TDX module (mrseam, not written; see docs/pins.md#known-measurements): {module}\n"
        ));
    }
    for field in &produced.unpinnable {
        out.push_str(&format!(
            "# {field} is in the evidence, but this version cannot pin it\n"
        ));
    }
    out
}

/// `--write`: sets the blocks in the target (`set_pins`) and prints what changed.
fn write_pins(
    config_path: &Path,
    target: &str,
    produced: &Produced,
    date: &str,
) -> Result<u8, CmdError> {
    let changes = set_pins(config_path, target, produced, date)
        .map_err(|e| CmdError::new(e.exit_code(), e.to_string()))?;
    output::line("")?;
    if changes.iter().all(|c| !c.changed()) {
        output::line(format!(
            "{}: target \"{target}\" already pins exactly these values; nothing written",
            config_path.display()
        ))?;
        return Ok(exit::PASS);
    }
    let mut report = format!("wrote {} (target \"{target}\"):\n", config_path.display());
    for c in &changes {
        let old = match &c.old {
            None => "(not pinned)".to_string(),
            Some(values) => format!("{values:?}"),
        };
        if c.changed() {
            report.push_str(&format!("  {}.{}: {old} → {:?}\n", c.table, c.field, c.new));
        } else {
            report.push_str(&format!("  {}.{}: unchanged\n", c.table, c.field));
        }
    }
    output::print(&report)?;
    Ok(exit::PASS)
}

/// Sets the blocks in the target and replaces the file once the result validates with
/// `Config::load` and every changed pin reads back as written. Returns one change per field;
/// nothing is written when no field changes.
fn set_pins(
    config_path: &Path,
    target: &str,
    produced: &Produced,
    date: &str,
) -> Result<Vec<edit::Change>, edit::EditError> {
    let text = std::fs::read_to_string(config_path).map_err(|source| edit::EditError::Read {
        path: config_path.to_path_buf(),
        source,
    })?;
    let (edited, changes) = edit::apply(config_path, &text, target, &produced.blocks, date)?;
    if changes.iter().all(|c| !c.changed()) {
        return Ok(changes);
    }
    let validate = |temp: &Path| -> Result<(), String> {
        let config = Config::load(temp).map_err(|e| e.to_string())?;
        let pinned = config
            .target(target)
            .ok_or_else(|| format!("target \"{target}\" is gone"))?;
        // The pins landed in this target's policy, as the verifier will read them.
        for c in changes.iter().filter(|c| c.changed()) {
            let table = match c.table {
                "gateway_pins" => &pinned.policy.gateway_pins,
                _ => &pinned.policy.pins,
            };
            if !table
                .get(&c.field)
                .is_some_and(|read| edit::same_values(&c.field, read, &c.new))
            {
                return Err(format!(
                    "target \"{target}\": {}.{} reads back as {:?}, expected {:?}",
                    c.table,
                    c.field,
                    table.get(&c.field),
                    c.new
                ));
            }
        }
        Ok(())
    };
    edit::write_atomically(config_path, &edited, validate)?;
    Ok(changes)
}

/// `teewatch pin --bundle FILE --write` without its printing, for `teewatch demo`, which accepts
/// its drift through it: the bundle is judged under the target's policy and the configuration's
/// trust anchors, and only a verdict that passes the pin rule sets its values in the file.
#[cfg(feature = "sim")]
pub fn write_from_bundle(
    config_path: &Path,
    target: &str,
    bundle: &Bundle,
) -> Result<Vec<edit::Change>, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let target_config = config.target(target).ok_or_else(|| {
        format!(
            "{}: no [[target]] named \"{target}\"",
            config_path.display()
        )
    })?;
    let verdict = verify::verify(bundle, &target_config.policy, &config.trust_anchors());
    let produced = rule::derive(&verdict).map_err(|problems| {
        let checks: Vec<String> = problems
            .iter()
            .map(|p| format!("{} {}", p.name, p.state.as_str()))
            .collect();
        format!(
            "target \"{target}\": not every signature and binding check passed ({}), so nothing is pinned",
            checks.join(", ")
        )
    })?;
    if produced.blocks.iter().any(|b| b.fields.is_empty()) {
        return Err(format!(
            "target \"{target}\": the evidence holds no value to pin"
        ));
    }
    let date = bundle.observed_at.format("%Y-%m-%d").to_string();
    set_pins(config_path, target, &produced, &date).map_err(|e| e.to_string())
}
