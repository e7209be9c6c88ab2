//! `teewatch pin`: from nothing to `identity_pinned` in one command. One live check of a target
//! (the fetch `teewatch check` runs) or a saved bundle is verified with the target's policy and
//! the configuration's trust anchors; only when every signature and binding check passed
//! (`rule.rs`) are the verified values printed as `[target.pins]` (and `[target.gateway_pins]`
//! for a NEAR gateway) allowlists, and with `--write` set in the configuration file in place
//! (`edit.rs`). A refused verdict names the checks that did not pass and writes nothing.

mod edit;
mod rule;

use std::path::Path;

use anyhow::Context;

use teewatch::config::{Config, TargetConfig};
use teewatch::exit;
use teewatch::verify::{self, Bundle, State};

use rule::{Problem, Produced};

/// `teewatch pin --config FILE --target NAME [--bundle FILE] [--write]`.
pub fn run_pin(
    config_path: &Path,
    target: &str,
    bundle_path: Option<&Path>,
    write: bool,
) -> anyhow::Result<u8> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return Ok(exit::CONFIG);
        }
    };
    let Some(target_config) = config.target(target) else {
        eprintln!(
            "teewatch: {}: no [[target]] named \"{target}\"",
            config_path.display()
        );
        return Ok(exit::CONFIG);
    };
    let (bundle, origin) = match bundle_path {
        Some(path) => match read_bundle(path) {
            Ok(bundle) => (bundle, format!("the bundle {}", path.display())),
            Err(code) => return Ok(code),
        },
        None => match live_bundle(&config, target_config)? {
            Ok(bundle) => (bundle, "a live check".to_string()),
            Err(code) => return Ok(code),
        },
    };
    let verdict = verify::verify(&bundle, &target_config.policy, &config.trust_anchors());
    let produced = match rule::derive(&verdict) {
        Ok(p) => p,
        Err(problems) => return Ok(refuse(target, &problems)),
    };
    if produced.blocks.iter().any(|b| b.fields.is_empty()) {
        eprintln!("teewatch: target \"{target}\": the evidence holds no value to pin");
        return Ok(exit::FAIL);
    }
    let date = bundle.observed_at.format("%Y-%m-%d").to_string();
    print!(
        "{}",
        header(target, &bundle, &verdict.trust, &origin, &produced)
    );
    for (i, block) in produced.blocks.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", edit::block_text(block, &date));
    }
    if !write {
        return Ok(exit::PASS);
    }
    write_pins(config_path, target, &produced, &date)
}

/// Reads a saved bundle; 65 when it cannot be read.
fn read_bundle(path: &Path) -> Result<Bundle, u8> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("teewatch: {}: cannot read: {e}", path.display());
        exit::DATA_ERR
    })?;
    Bundle::from_json(&text).map_err(|e| {
        eprintln!("teewatch: {}: not a teewatch bundle: {e}", path.display());
        exit::DATA_ERR
    })
}

/// One live check of the target through the fetcher `teewatch check` uses (same client, same
/// collateral cache beside the database).
fn live_bundle(config: &Config, target: &TargetConfig) -> anyhow::Result<Result<Bundle, u8>> {
    use teewatch::fetch::check::Fetcher;
    use teewatch::fetch::http::{Http, HttpOptions};

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let http = Http::new(HttpOptions::for_config(config))
        .map_err(|e| anyhow::anyhow!("http client: {e}"))?;
    let cache_dir = config.daemon.db.parent().map(|d| d.join("collateral"));
    let fetcher = Fetcher::new(http, cache_dir.as_deref());
    let value = match runtime.block_on(fetcher.check(config, target)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("teewatch: {e}");
            return Ok(Err(exit::CONFIG));
        }
    };
    let bundle = Bundle::from_value(value).context("the fetched bundle is malformed")?;
    Ok(Ok(bundle))
}

/// Names every check that kept the verdict from giving pins; 1 when one failed, else 2.
fn refuse(target: &str, problems: &[Problem]) -> u8 {
    eprintln!(
        "teewatch: target \"{target}\": not every signature and binding check passed, so nothing is pinned and nothing written:"
    );
    for p in problems {
        let scope = if p.scope.is_empty() {
            String::new()
        } else {
            format!(" [{}]", p.scope)
        };
        eprintln!("  {}{scope} {}: {}", p.name, p.state.as_str(), p.reason);
    }
    let worst = problems
        .iter()
        .map(|p| p.state)
        .max()
        .unwrap_or(State::Fail);
    exit::for_state(worst).max(exit::FAIL)
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
) -> anyhow::Result<u8> {
    let changes = match set_pins(config_path, target, produced, date) {
        Ok(changes) => changes,
        Err(e) => {
            eprintln!("teewatch: {e}");
            return Ok(e.exit_code());
        }
    };
    println!();
    if changes.iter().all(|c| !c.changed()) {
        println!(
            "{}: target \"{target}\" already pins exactly these values; nothing written",
            config_path.display()
        );
        return Ok(exit::PASS);
    }
    println!("wrote {} (target \"{target}\"):", config_path.display());
    for c in &changes {
        let old = match &c.old {
            None => "(not pinned)".to_string(),
            Some(values) => format!("{values:?}"),
        };
        if c.changed() {
            println!("  {}.{}: {old} → {:?}", c.table, c.field, c.new);
        } else {
            println!("  {}.{}: unchanged", c.table, c.field);
        }
    }
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
