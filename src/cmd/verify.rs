//! `teewatch verify BUNDLE`: judge a stored evidence bundle offline and print the verdict, with
//! the bundle's own policy snapshot or a configuration's target. A bundle whose collateral chains
//! to another Intel root than the one in force (one the simulator made, under its test roots) is
//! still judged, and a note on standard error says so, since its certificate errors alone would
//! not.

use std::path::{Path, PathBuf};

use teewatch::exit;
use teewatch::render;
use teewatch::verify::{self, Bundle, Policy, TrustAnchors};

use super::{CmdError, output};

/// `teewatch verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The bundle (teewatch-bundle/1 JSON).
    pub bundle: PathBuf,
    /// Judge with this configuration's policy and trust anchors instead of the bundle's snapshot.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The target whose policy applies (defaults to the bundle's target); needs --config.
    #[arg(long, requires = "config")]
    pub target: Option<String>,
    /// Print the verdict as teewatch-verdict/1 JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn after_help() -> String {
    super::help::after_help(
        &[
            (
                "a real Phala sample under its own policy snapshot: report_data_binding fails (exit 1)",
                "teewatch verify tests/bundles/pmlsdk-dstack-sample.json",
            ),
            (
                "a check whose attestation could not be fetched: every check unknown (exit 2)",
                "teewatch verify --json tests/bundles/fetch-failed.json",
            ),
            (
                "a simulator bundle with the configuration that trusts its test roots (exit 0)",
                "teewatch verify --config tests/bundles/formats/near-gateway-ecdsa/sim.toml tests/bundles/formats/near-gateway-ecdsa/bundle.json",
            ),
        ],
        &[
            exit::PASS,
            exit::FAIL,
            exit::UNKNOWN,
            exit::USAGE,
            exit::DATA_ERR,
            exit::CONFIG,
        ],
    )
}

pub fn run(args: &Args) -> Result<u8, CmdError> {
    let bundle = super::read_bundle(&args.bundle)?;
    let (policy, policy_source, anchors) = match &args.config {
        Some(path) => {
            let config = super::load_config(path)?;
            let name = args.target.as_deref().unwrap_or(&bundle.target);
            let target = super::find_target(&config, path, name)?;
            (
                target.policy.clone(),
                super::configured_policy_source(name, path),
                config.trust_anchors(),
            )
        }
        None => {
            let (policy, source) = snapshot_policy(&bundle, &args.bundle)?;
            (policy, source, TrustAnchors::production())
        }
    };
    if args.config.is_none() {
        if let Some(roots) = foreign_intel_roots(&bundle, &anchors) {
            output::note(format!(
                "note: {}: made under test roots ({roots}), not Intel's; verify with the \
                 configuration that trusts them (--config FILE); judged against Intel's root, \
                 its quote signatures fail",
                args.bundle.display()
            ));
        }
    }
    let mut verdict = verify::verify(&bundle, &policy, &anchors);
    verdict.policy_source = Some(policy_source);
    if args.json {
        let text = serde_json::to_string_pretty(&verdict)
            .map_err(|e| CmdError::software(format!("serialising the verdict: {e}")))?;
        output::line(text)?;
    } else {
        output::print(&render::checklist(&verdict))?;
    }
    Ok(exit::for_state(verdict.state))
}

/// The bundle's own policy snapshot (or the defaults when it has none) and how the verdict
/// names it; 65 listing every problem when the snapshot is invalid.
fn snapshot_policy(bundle: &Bundle, path: &Path) -> Result<(Policy, String), CmdError> {
    match &bundle.policy {
        Some(snapshot) => match Policy::from_snapshot(snapshot) {
            Ok(p) => Ok((p, verify::policy::POLICY_FROM_BUNDLE.to_string())),
            Err(errors) => {
                let lines: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: policy.{e}", path.display()))
                    .collect();
                Err(CmdError::data(lines.join("\nteewatch: ")))
            }
        },
        None => Ok((
            Policy::default(),
            verify::policy::POLICY_DEFAULT.to_string(),
        )),
    }
}

/// The subjects of the self-signed roots that end the bundle's DCAP issuer chains when they are
/// not the Intel root in force, joined for a message; `None` when every chain ends at it (or
/// none can be read, which the verdict itself reports).
fn foreign_intel_roots(bundle: &Bundle, anchors: &TrustAnchors) -> Option<String> {
    let collateral = bundle.tdx_collateral.as_ref()?;
    let entries = verify::collateral::entries(collateral);
    let mut foreign: Vec<String> = Vec::new();
    for entry in entries {
        for key in [
            "pck_crl_issuer_chain",
            "tcb_info_issuer_chain",
            "qe_identity_issuer_chain",
        ] {
            let Some(chain) = entry.get(key).and_then(|v| v.as_str()) else {
                continue;
            };
            if let Some(subject) = foreign_root(chain, &anchors.intel_root_der) {
                if !foreign.contains(&subject) {
                    foreign.push(subject);
                }
            }
        }
    }
    (!foreign.is_empty()).then(|| foreign.join("; "))
}

/// The subject of the last certificate of a PEM chain when it is self-signed and not `root_der`.
fn foreign_root(chain: &str, root_der: &[u8]) -> Option<String> {
    let last = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
        .filter_map(Result::ok)
        .last()?;
    if last.contents == root_der {
        return None;
    }
    let cert = last.parse_x509().ok()?;
    (cert.subject() == cert.issuer()).then(|| cert.subject().to_string())
}
