//! `teewatch sim --write-config FILE`: a ready teewatch configuration for the running simulator.
//!
//! The file monitors every simulated model through the simulator's own PCCS and NRAS, trusts the
//! simulator's test roots through `[dangerous]` options (which the configuration only accepts for
//! loopback targets), pins each model's app and OS identity so a healthy simulator is all-pass and
//! an injected drift fails its pin, and names an API key file written beside it: no key inline.
//!
//! The simulator's TLS certificate is always written beside the roots and trusted through
//! `dangerous_tls_root`, so the same file works whether the simulator serves HTTP or HTTPS. NEAR
//! models are pinned on their model nodes' identity (the gateway and compose manager are
//! infrastructure the verifier judges but a pin does not name); the Chutes and Tinfoil stand-ins
//! get no pins, since nothing in them can be proven, and a short signature wait, since their
//! chats are never signed.
//!
//! A simulator started with `provenance` also gets its test Fulcio chain and Rekor key written
//! and trusted (`dangerous_sigstore_fulcio_root`, `dangerous_rekor_key`), and each target a
//! `[target.provenance]` allowing the expected workflow for every simulated image, with the
//! simulator as its Rekor.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::format::SimFormat;
use super::server::SimState;
use teewatch_verify::hexutil;

/// The files written, for the command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenConfig {
    pub config: PathBuf,
    pub api_key: PathBuf,
    pub roots: Vec<PathBuf>,
}

/// Writes the configuration, the API key file, the three test roots and the TLS certificate
/// beside `path`.
pub fn write_config(state: &SimState, path: &Path) -> std::io::Result<WrittenConfig> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "teewatch-sim".into());
    let file = |suffix: &str| dir.join(format!("{stem}.{suffix}"));
    let key_path = file("api-key");
    let roots = [
        (file("intel-root.pem"), state.intel.root_pem()),
        (file("nvidia-root.pem"), state.nvidia.root_pem().to_string()),
        (
            file("nras-intermediate.pem"),
            state
                .nras
                .lock()
                .map(|n| n.intermediate_pem())
                .unwrap_or_default(),
        ),
        (
            file("tls-root.pem"),
            state.tls_certificate_pem().to_string(),
        ),
    ];
    let sigstore_roots = state.sigstore.as_ref().map(|sigstore| {
        (
            (file("fulcio-chain.pem"), sigstore.fulcio.chain_pem()),
            (
                file("rekor-key.pem"),
                sigstore.rekor.public_key_pem().to_string(),
            ),
        )
    });
    std::fs::write(&key_path, format!("{}\n", state.api_key))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    }
    for (root_path, text) in roots
        .iter()
        .chain(sigstore_roots.iter().flat_map(|(a, b)| [a, b]))
    {
        std::fs::write(root_path, text)?;
    }
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let base = &state.base_url;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `teewatch sim` for the simulator at {base}.\n\
         # TEST TRUST ROOTS: the [dangerous] options below make teewatch trust the simulator's own\n\
         # Intel, NVIDIA and NRAS test roots. Verdicts under them prove nothing about real hardware,\n\
         # say so in their `trust` field, and are accepted only for loopback targets.\n"
    );
    let _ = writeln!(
        out,
        "[daemon]\nlisten = \"127.0.0.1:9477\"\ndb = \"{stem}.db\"\n"
    );
    let _ = writeln!(
        out,
        "[intel]\npccs_url = \"{base}\"\nroot_crl_url = \"{base}{}\"\n",
        super::intel::ROOT_CA_CRL_PATH
    );
    let _ = writeln!(
        out,
        "[nvidia]\nnras_url = \"{base}\"\njwks_url = \"{base}/.well-known/jwks.json\"\n"
    );
    let _ = writeln!(
        out,
        "[dangerous]\ndangerous_intel_root_ca = \"{}\"\ndangerous_nvidia_device_root = \"{}\"\ndangerous_nras_intermediates = [\"{}\"]\ndangerous_tls_root = \"{}\"\n",
        name_of(&roots[0].0),
        name_of(&roots[1].0),
        name_of(&roots[2].0),
        name_of(&roots[3].0)
    );
    if let Some((fulcio, rekor)) = &sigstore_roots {
        // Appended to the [dangerous] table written just above.
        out.truncate(out.trim_end().len() + 1);
        let _ = writeln!(
            out,
            "dangerous_sigstore_fulcio_root = \"{}\"\ndangerous_rekor_key = \"{}\"\n",
            name_of(&fulcio.0),
            name_of(&rekor.0)
        );
    }
    for model in &state.models {
        let profile = if model.format.is_near() {
            "near"
        } else {
            "vllm-proxy"
        };
        let _ = writeln!(
            out,
            "[[target]]\nname = \"{}\"\nprofile = \"{profile}\"\nbase_url = \"{base}\"\nmodel = \"{}\"\napi_key_file = \"{}\"\ninterval = \"10s\"\n",
            model.name,
            model.name,
            name_of(&key_path)
        );
        if matches!(model.format, SimFormat::Chutes | SimFormat::Tinfoil) {
            let _ = writeln!(out, "[target.canary]\nsignature_wait_seconds = 1\n");
            continue;
        }
        let _ = write!(out, "[target.pins]\n{}", identity_pins(&model.td_for(0)));
        // NEAR nodes run what their compose manager deployed: pin the current compose file.
        if model.format.is_near() {
            let current = super::compose_manager::ComposeFile::of(
                &model.name,
                super::compose_manager::Generation::Current,
            );
            let _ = writeln!(
                out,
                "deployed_compose_sha256 = [\"{}\"]",
                hexutil::lower(&current.sha256())
            );
        }
        if let Some((index, value)) = super::nvidia::GpuState::default().blocks.first() {
            let _ = writeln!(out, "gpu_block_{index} = [\"{}\"]\n", hexutil::lower(value));
        }
        if state.sigstore.is_some() {
            let _ = writeln!(out, "{}", provenance_table(base));
        }
        // The gateway sees every prompt: its OS and application are pinned like the model's.
        if model.format == SimFormat::NearGateway {
            let _ = writeln!(
                out,
                "[target.gateway_pins]\n{}",
                identity_pins(&state.gateway.td)
            );
        }
    }
    std::fs::write(path, out)?;
    Ok(WrittenConfig {
        config: path.to_path_buf(),
        api_key: key_path,
        roots: roots
            .into_iter()
            .chain(sigstore_roots.into_iter().flat_map(|(a, b)| [a, b]))
            .map(|(p, _)| p)
            .collect(),
    })
}

/// `[target.provenance]` allowing the simulator's expected workflow for each simulated image.
fn provenance_table(rekor_url: &str) -> String {
    // The simulator also serves GitHub's attestations API (the dsse cases' payloads).
    let mut out = format!(
        "[target.provenance]\nrekor_url = \"{rekor_url}\"\nattestations_url = \"{rekor_url}\"\n"
    );
    for case in super::sigstore::Case::ALL {
        let _ = writeln!(
            out,
            "\"{}\" = {{ issuer = \"{}\", subject = \"{}\" }}",
            case.repository(),
            super::sigstore::ISSUER,
            super::sigstore::EXPECTED_SUBJECT
        );
    }
    out
}

/// The pin lines of a TD's OS (MRTD, RTMR0–2) and application (compose hash, app id) identity,
/// with the event-log fields its log proves.
fn identity_pins(td: &super::dstack::DstackTd) -> String {
    let id = &td.identity;
    format!(
        "mrtd = [\"{}\"]\nrtmr0 = [\"{}\"]\nrtmr1 = [\"{}\"]\nrtmr2 = [\"{}\"]\ncompose_hash = [\"{}\"]\napp_id = [\"{}\"]\nos_image_hash = [\"{}\"]\nkey_provider = [\"{}\"]\n",
        hexutil::lower(&id.mrtd),
        hexutil::lower(&td.rtmr[0]),
        hexutil::lower(&td.rtmr[1]),
        hexutil::lower(&td.rtmr[2]),
        hexutil::lower(&id.compose_hash()),
        hexutil::lower(&id.app_id),
        hexutil::lower(&id.os_image_hash),
        id.key_provider
    )
}
