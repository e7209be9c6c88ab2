//! One live check of one target: fetch everything a verdict needs into an evidence bundle.
//!
//! Steps: a fresh 32-byte nonce; the attestation report; DCAP collateral for every quote's FMSPC
//! (from the cache while fresh, from the PCCS otherwise, from the cache again while the PCCS is
//! down); NRAS's answer for each node's GPU evidence and the JWKS; the canary chats with their
//! exact bytes and signatures. A failed fetch is recorded in `fetch_errors` and the bundle is
//! still built: the verifier turns missing parts into `unknown`, never `fail`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::assemble::{BundleParts, assemble, fresh_nonce_hex};
pub use super::assemble::{not_started_bundle, timed_out_bundle};
use super::canary::{failed_before_chats, judge_after_chats};
use super::collateral_cache::CollateralCache;
use super::http::{Auth, Endpoint, ErrorKind, FetchError, Http, host_of, with_retries};
use super::pccs::{self, PccsAnswers};
use crate::clock::Clock;
use crate::config::{Config, TargetConfig};
use crate::record::{Phase, PhaseDuration};
use crate::verify::canary::cadence::{CanaryNotRun, NotRunWhy};
use crate::verify::hexutil;
use crate::verify::report::{self, Part};
use crate::verify::{self, Bundle, Policy, TrustAnchors, Verdict};

/// How long a fetched JWKS is reused before it is fetched again, and how long an unknown key id
/// that already caused a refetch waits before it may cause another (so a bogus kid cannot make
/// teewatch hammer NRAS, while a rotated key is picked up at once).
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(60);

/// How long the attestation request is retried after 429/503 or a connection failure.
const ATTESTATION_RETRY_BUDGET: Duration = Duration::from_secs(3);

/// Long-lived fetch state shared by all checks: the HTTP client and the caches.
pub struct Fetcher {
    pub(super) http: Http,
    collateral: CollateralCache,
    jwks: Mutex<Option<(Value, Instant)>>,
    /// Unknown kids that triggered a refetch, and when.
    refetched_for: Mutex<BTreeMap<String, Instant>>,
    /// Rekor answers by digest (entries are immutable), in memory only.
    rekor: super::rekor::RekorCache,
    /// Where `observed_at` and the collateral cache's "now" come from.
    clock: Clock,
}

/// A warning for each API key file of the configuration's monitored targets that other users
/// than its owner can access (as ssh warns about a private key), each file once.
pub fn key_file_warnings(config: &Config) -> Vec<String> {
    let mut seen: Vec<&crate::config::ApiKeySource> = Vec::new();
    for (_, monitor) in config.monitored() {
        if !seen.contains(&&monitor.api_key) {
            seen.push(&monitor.api_key);
        }
    }
    seen.into_iter()
        .filter_map(crate::config::ApiKeySource::permission_warning)
        .collect()
}

/// A fetched bundle and the durations of the fetch phases that produced it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bundle: Value,
    pub phases: Vec<PhaseDuration>,
    /// The bundle as read and its verdict, when the plan judged the attestation before the
    /// chats (`verify(bundle)` exactly, see [`crate::verify::rejudge_canaries`]).
    pub judged: Option<(Bundle, Verdict)>,
}

/// Whether a check spends its canary chats.
#[derive(Debug, Clone, Default)]
pub struct CanaryPlan<'a> {
    /// `None`: the chats are due. `Some`: they are not (`[target.canary] every`), and this is
    /// the bundle's `canary_not_run`, carrying the last run's result.
    pub not_due: Option<CanaryNotRun>,
    /// The target's policy and the trust anchors: the attestation is verified before the chats,
    /// which are not run when a check failed, and the verdict comes back with the bundle.
    pub judge: Option<(&'a Policy, &'a TrustAnchors)>,
}

/// Why a check could not even start (not a fetch failure: a configuration problem).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("target \"{0}\" has no provider settings (profile, base_url, model, api key)")]
    NotMonitored(String),
    #[error("target \"{target}\": api key: {reason}")]
    ApiKey { target: String, reason: String },
}

impl CheckError {
    /// Why the check could not start, without the target's name (which the log line or the
    /// record already carries).
    pub fn reason(&self) -> String {
        match self {
            CheckError::NotMonitored(_) => {
                "the target has no provider settings (profile, base_url, model, api key)".into()
            }
            CheckError::ApiKey { reason, .. } => format!("the api key could not be read: {reason}"),
        }
    }

    /// The bundle to record for a target whose check could not start, so that the target is
    /// checked as `unknown` with the reason rather than not at all. `None` for a target that is
    /// not monitored: it has nothing to check.
    pub fn stand_in_bundle(&self, config: &Config, target: &TargetConfig) -> Option<Value> {
        match self {
            CheckError::NotMonitored(_) => None,
            CheckError::ApiKey { .. } => Some(not_started_bundle(config, target, &self.reason())),
        }
    }
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.get("kid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The key ids the JWTs of an NRAS answer name.
fn token_kids(response: &Value) -> Vec<String> {
    let mut tokens: Vec<&str> = Vec::new();
    if let Some(overall) = response.pointer("/0/1").and_then(Value::as_str) {
        tokens.push(overall);
    }
    if let Some(map) = response.get(1).and_then(Value::as_object) {
        tokens.extend(map.values().filter_map(Value::as_str));
    }
    tokens
        .iter()
        .filter_map(|t| t.split('.').next())
        .filter_map(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .filter_map(|h| serde_json::from_slice::<Value>(&h).ok())
        .filter_map(|h| h.get("kid").and_then(Value::as_str).map(str::to_string))
        .collect()
}

impl Fetcher {
    /// A fetcher whose collateral cache lives in `cache_dir` (or memory only).
    pub fn new(http: Http, cache_dir: Option<&std::path::Path>) -> Fetcher {
        Fetcher {
            http,
            collateral: CollateralCache::new(cache_dir),
            jwks: Mutex::new(None),
            refetched_for: Mutex::new(BTreeMap::new()),
            rekor: Default::default(),
            clock: Clock::system(),
        }
    }

    /// The fetcher reading "now" from `clock` (a test's adjustable clock) instead of the system.
    pub fn with_clock(mut self, clock: Clock) -> Fetcher {
        self.clock = clock;
        self
    }

    /// The collateral cache, for the fetch time of each platform's copy
    /// (`teewatch_collateral_fetched_timestamp_seconds`).
    pub fn collateral_cache(&self) -> &CollateralCache {
        &self.collateral
    }

    /// Runs one check of `target` and returns the bundle as JSON.
    pub async fn check(&self, config: &Config, target: &TargetConfig) -> Result<Value, CheckError> {
        self.check_timed(config, target).await.map(|f| f.bundle)
    }

    /// Runs one check of `target` with its chats and returns the bundle with how long each
    /// fetch phase took.
    pub async fn check_timed(
        &self,
        config: &Config,
        target: &TargetConfig,
    ) -> Result<Fetched, CheckError> {
        self.check_planned(config, target, CanaryPlan::default())
            .await
    }

    /// Runs one check of `target`, spending its canary chats only when `plan` says they are due
    /// and the attestation did not already fail, and never when the report could not be read.
    pub async fn check_planned(
        &self,
        config: &Config,
        target: &TargetConfig,
        plan: CanaryPlan<'_>,
    ) -> Result<Fetched, CheckError> {
        let mut phases: Vec<PhaseDuration> = Vec::with_capacity(4);
        let mut phase_start = Instant::now();
        let mut lap = |phase: Phase, phases: &mut Vec<PhaseDuration>| {
            let now = Instant::now();
            phases.push(PhaseDuration {
                phase,
                duration: now.saturating_duration_since(phase_start),
            });
            phase_start = now;
        };
        let monitor = target
            .monitor
            .as_ref()
            .ok_or_else(|| CheckError::NotMonitored(target.name.clone()))?;
        let key = monitor.api_key.resolve().map_err(|e| CheckError::ApiKey {
            target: target.name.clone(),
            reason: e.to_string(),
        })?;
        let key_host = host_of(&monitor.base_url).unwrap_or_default();
        let auth = Auth {
            key: &key,
            key_host: &key_host,
        };
        let mut errors: Vec<FetchError> = Vec::new();
        let nonce_hex = fresh_nonce_hex();

        // 1. The attestation report for this nonce.
        let mut url = format!(
            "{}?model={}&nonce={nonce_hex}",
            monitor.url(&monitor.paths.attestation),
            percent_encoding::utf8_percent_encode(
                &monitor.model,
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        // The same algorithm on the attestation and the signature request, for every profile: a
        // backend that defaults to ed25519 (NEAR AI, behind NanoGPT too) would otherwise attest
        // one key and sign the canary with another.
        url.push_str("&signing_algo=");
        url.push_str(monitor.signing_algo.as_str());
        // Each request of the check, to the provider and to the services (PCCS, NRAS, JWKS), is
        // limited by the target's `timeout_seconds` (or the client's own deadline when that is
        // shorter): the check's deadline is three of them, so one slow service cannot hold the
        // check past it and lose everything already gathered.
        let limited = self.http.with_total_timeout(monitor.timeout);
        let fetched = with_retries(ATTESTATION_RETRY_BUDGET, || {
            let url = url.clone();
            let auth = &auth;
            let limited = &limited;
            async move { limited.get(Endpoint::Attestation, &url, Some(auth)).await }
        })
        .await;
        let (attestation, peer) = match fetched {
            Ok(response) => match response.json(Endpoint::Attestation) {
                Ok(v) => (v, response.peer_spki_der),
                Err(e) => {
                    errors.push(e);
                    (Value::Null, None)
                }
            },
            Err(e) => {
                errors.push(e);
                (Value::Null, None)
            }
        };
        let observed_at = self.clock.now();
        lap(Phase::Attestation, &mut phases);
        // The TLS peer is the attested service only when teewatch talks to it directly.
        let tls_peer_spki = match peer {
            Some(spki) if monitor.profile.connects_directly() => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(spki))
            }
            _ => Value::Null,
        };

        // The verifier's own list of attested parts, read once for both steps below, so that
        // each NRAS answer carries exactly the scope the verifier will judge.
        let parts = report::parts(&attestation, report::detect_format(&attestation));

        // 2. Collateral for each platform the report's quotes come from.
        let collateral = self
            .collateral_for(&limited, config, &parts, &mut errors)
            .await;
        lap(Phase::Collateral, &mut phases);

        // 3. NRAS, per part with GPU evidence, and the JWKS its tokens name.
        let nras = self.nras_for(&limited, config, &parts, &mut errors).await;
        // 3b. Rekor, per pinned image of the composes whose repository the target's
        // provenance names (counted in the services phase with NRAS).
        let rekor = self.rekor_for(&limited, target, &parts, &mut errors).await;
        lap(Phase::Nras, &mut phases);

        // 4. The attestation's verdict before any chat is spent: a failed check makes the
        // target fail whatever the chats show, so they would only cost the user money.
        let verify_start = Instant::now();
        let before_chats = plan.judge.and_then(|(policy, anchors)| {
            let json = assemble(
                config,
                target,
                BundleParts {
                    observed_at,
                    nonce_hex: nonce_hex.clone(),
                    attestation: attestation.clone(),
                    errors: &errors,
                    collateral: collateral.clone(),
                    nras: nras.clone(),
                    canary: Value::Null,
                    tls_peer_spki: tls_peer_spki.clone(),
                    rekor: rekor.clone(),
                },
            );
            let bundle = Bundle::from_value(json).ok()?;
            let verdict = verify::verify(&bundle, policy, anchors);
            Some((bundle, verdict))
        });
        let mut verify_time = verify_start.elapsed();
        let attestation_failed = before_chats
            .as_ref()
            .is_some_and(|(_, verdict)| failed_before_chats(verdict));

        // 5. The canary chats, when due, the report was read and the attestation did not fail.
        let mut not_run = plan.not_due;
        if not_run.is_none() && attestation_failed {
            not_run = Some(CanaryNotRun {
                why: NotRunWhy::AttestationFailed,
                every: Some(monitor.canary.every),
                last_run: None,
            });
        }
        let canary = if not_run.is_none() && !attestation.is_null() {
            let chats = self.canaries(monitor, &auth, &nonce_hex, &mut errors).await;
            lap(Phase::Canary, &mut phases);
            chats
        } else {
            Value::Null
        };

        // The verdict of the whole bundle from the one before the chats: the chats, their
        // errors and why none ran are all that changed.
        let verify_start = Instant::now();
        let judged =
            before_chats.map(|before| judge_after_chats(before, &canary, &not_run, &errors));
        verify_time += verify_start.elapsed();
        if judged.is_some() {
            phases.push(PhaseDuration {
                phase: Phase::Verify,
                duration: verify_time,
            });
        }

        let mut bundle = assemble(
            config,
            target,
            BundleParts {
                observed_at,
                nonce_hex,
                attestation,
                errors: &errors,
                collateral,
                nras,
                canary,
                tls_peer_spki,
                rekor,
            },
        );
        if let (Some(not_run), Some(fields)) = (&not_run, bundle.as_object_mut()) {
            if let Ok(value) = serde_json::to_value(not_run) {
                fields.insert("canary_not_run".into(), value);
            }
        }
        Ok(Fetched {
            bundle,
            phases,
            judged,
        })
    }

    async fn collateral_for(
        &self,
        http: &Http,
        config: &Config,
        parts: &[Part<'_>],
        errors: &mut Vec<FetchError>,
    ) -> Value {
        let mut fmspcs: Vec<String> = Vec::new();
        // Every attested part's quote, each platform once: a gateway and its models may sit on
        // different platforms.
        for node in parts {
            let quote = node.quote_hex().ok().and_then(|q| hexutil::decode(q).ok());
            let fmspc = quote
                .and_then(|q| dcap_qvl::quote::Quote::parse(&q).ok())
                .and_then(|q| dcap_qvl::intel::quote_fmspc(&q).ok())
                .map(|f| hexutil::lower(&f));
            if let Some(f) = fmspc {
                if !fmspcs.contains(&f) {
                    fmspcs.push(f);
                }
            }
        }
        let mut found = Vec::new();
        for fmspc in &fmspcs {
            let refresh = config.intel.collateral_refresh;
            if self
                .collateral
                .needs_refresh(fmspc, self.clock.now(), refresh)
            {
                match self.fetch_collateral(http, config, fmspc).await {
                    Ok(fresh) => {
                        // A refused answer leaves the cached copy serving; the log says why.
                        if let Err(e) = self.collateral.put(fmspc, fresh, self.clock.now()) {
                            tracing::warn!(fmspc = %fmspc, error = %e, "collateral not stored");
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            if let Some(cached) = self.collateral.get(fmspc) {
                found.push(cached.collateral);
            }
        }
        match found.len() {
            0 => Value::Null,
            1 => found.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(found),
        }
    }

    async fn fetch_collateral(
        &self,
        http: &Http,
        config: &Config,
        fmspc: &str,
    ) -> Result<Value, FetchError> {
        let base = config.intel.pccs_url.trim_end_matches('/');
        let tcb = http
            .get(
                Endpoint::Pccs,
                &format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}"),
                None,
            )
            .await?;
        let qe = http
            .get(
                Endpoint::Pccs,
                &format!("{base}/tdx/certification/v4/qe/identity"),
                None,
            )
            .await?;
        let crl = http
            .get(
                Endpoint::Pccs,
                &format!("{base}/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
                None,
            )
            .await?;
        let root = http
            .get(Endpoint::RootCrl, &config.intel.root_crl_url, None)
            .await?;
        let answers = PccsAnswers {
            tcb_info_issuer_chain: pccs::TCB_INFO_ISSUER_CHAIN
                .iter()
                .find_map(|h| tcb.header(h))
                .unwrap_or_default(),
            tcb_info_body: tcb.body,
            qe_identity_issuer_chain: qe
                .header(pccs::QE_IDENTITY_ISSUER_CHAIN)
                .unwrap_or_default(),
            qe_identity_body: qe.body,
            pck_crl_issuer_chain: crl.header(pccs::PCK_CRL_ISSUER_CHAIN).unwrap_or_default(),
            pck_crl_body: crl.body,
            root_ca_crl_body: root.body,
        };
        pccs::collateral_json(&answers)
            .map_err(|e| FetchError::new(Endpoint::Pccs, ErrorKind::InvalidJson, e.to_string()))
    }

    /// The Rekor answers for the pinned images of the report's composes that the target's
    /// `[target.provenance]` names; `None` when it has none (the bundle then has no `rekor`).
    async fn rekor_for(
        &self,
        http: &Http,
        target: &TargetConfig,
        parts: &[Part<'_>],
        errors: &mut Vec<FetchError>,
    ) -> Option<Vec<crate::verify::image_provenance::RekorLookup>> {
        let provenance = target.policy.provenance.as_ref()?;
        let images: Vec<(String, String)> = crate::verify::image_provenance::pinned_images(parts)
            .into_iter()
            .filter(|image| provenance.images.contains_key(&image.repository))
            .filter_map(|image| Some((image.repository, image.digest?)))
            .collect();
        Some(super::rekor::lookups(http, &self.rekor, provenance, &images, errors).await)
    }

    /// How many image digests' Rekor answers are cached.
    pub fn rekor_cached(&self) -> usize {
        self.rekor.len()
    }

    async fn nras_for(
        &self,
        http: &Http,
        config: &Config,
        parts: &[Part<'_>],
        errors: &mut Vec<FetchError>,
    ) -> Value {
        let several = parts.iter().any(|n| !n.scope.is_empty());
        let mut answers = Vec::new();
        // CPU-only parts (the NEAR gateway, the compose manager) are never sent to NRAS.
        for node in parts.iter().filter(|n| n.role.serves_inference()) {
            let Some(payload) = node.fields.get("nvidia_payload").filter(|p| !p.is_null()) else {
                continue;
            };
            // NRAS takes the payload verbatim: the string as served, or the object as JSON.
            let body = match payload {
                Value::String(text) => text.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            let scope = node.scope.clone();
            let url = format!(
                "{}/v3/attest/gpu",
                config.nvidia.nras_url.trim_end_matches('/')
            );
            let response = match http.post_json(Endpoint::Nras, &url, body, None).await {
                Ok(r) => match r.json(Endpoint::Nras) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let jwks = match self
                .jwks_covering(http, config, &token_kids(&response))
                .await
            {
                Ok(j) => j,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            answers.push((scope, response, jwks));
        }
        match answers.len() {
            0 => Value::Null,
            1 if !several => answers
                .into_iter()
                .next()
                .map(|(_, response, jwks)| json!({"response": response, "jwks": jwks}))
                .unwrap_or(Value::Null),
            _ => Value::Array(
                answers
                    .into_iter()
                    .map(|(scope, response, jwks)| json!({"scope": scope, "response": response, "jwks": jwks}))
                    .collect(),
            ),
        }
    }

    /// The cached JWKS, refetched when it is old or lacks one of `needed` (at most once a minute
    /// for unknown kids, so a bogus kid cannot make teewatch hammer NRAS).
    async fn jwks_covering(
        &self,
        http: &Http,
        config: &Config,
        needed: &[String],
    ) -> Result<Value, FetchError> {
        let cached = self.jwks.lock().ok().and_then(|c| c.clone());
        if let Some((jwks, fetched)) = &cached {
            let known = kids(jwks);
            let missing: Vec<&String> = needed.iter().filter(|k| !known.contains(k)).collect();
            let young = fetched.elapsed() < JWKS_MAX_AGE;
            let recently_tried = |kid: &String| {
                self.refetched_for
                    .lock()
                    .ok()
                    .and_then(|m| m.get(kid).copied())
                    .is_some_and(|at| at.elapsed() < JWKS_MIN_REFETCH)
            };
            if young && missing.iter().all(|k| recently_tried(k)) {
                return Ok(jwks.clone());
            }
            if let Ok(mut tried) = self.refetched_for.lock() {
                tried.retain(|_, at| at.elapsed() < JWKS_MIN_REFETCH);
                for kid in missing {
                    tried.insert(kid.clone(), Instant::now());
                }
            }
        }
        let response = http
            .get(Endpoint::Jwks, &config.nvidia.jwks_url, None)
            .await?;
        let jwks = response.json(Endpoint::Jwks)?;
        if let Ok(mut slot) = self.jwks.lock() {
            *slot = Some((jwks.clone(), Instant::now()));
        }
        Ok(jwks)
    }
}

/// `DIR/<target>.json` with characters outside `[A-Za-z0-9._-]` replaced by `_`.
pub fn bundle_file_name(target: &str) -> String {
    let safe: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.json")
}
