//! The known-measurements table at work: the real vectors' MRSEAM and MRTD carry the names the
//! table gives them; a simulated target with no pins of its own passes `pin:mrseam` and
//! `pin:mrtd` by name; an image or module outside the table fails as unknown; a target can opt
//! out, extend the table, and pin over it; and a stored bundle re-derives its verdict offline.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::common::sim_run::{self, Running};

use teewatch::daemon::status_page::known_names;
use teewatch::verify::known::{ExtraRow, KnownUse, shipped_name, table};
use teewatch::verify::policy::Policy;
use teewatch::verify::{self, Bundle, State, Verdict};
use teewatch_sim::faults::Fault;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

const MODULE_1_5_16: &str = "TDX module 1.5.16";
const MODEL_IMAGE: &str = "dstack-nvidia, os_image_hash 9b69bb16… (version not published)";
const GATEWAY_IMAGE: &str = "dstack-nvidia-0.5.5 (NEAR gateway)";

fn version() -> u32 {
    table().map(|t| t.version).unwrap()
}

/// The evidence values of `field` in a verdict, each with the table's name for it.
fn named(verdict: &Verdict, field: &str) -> Vec<(String, Option<&'static str>)> {
    let mut out: Vec<(String, Option<&'static str>)> = verdict
        .observed
        .iter()
        .filter(|o| o.field == field && o.source.is_evidence())
        .map(|o| (o.value.clone(), shipped_name(field, &o.value)))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_real_vectors_carry_the_names_the_table_gives_them() {
    // Which real vectors are known, and why the others are not: Intel's and Google's sample
    // quotes and dstack's lab fixture run other modules and images (test hosts, not dstack
    // production images), and module 1.5.06 of the 2025 samples is not in REFERENCE.md §2.
    let expected: [(&str, Option<&str>, Option<&str>); 17] = [
        ("automata-outofdate", None, None),
        ("dcapqvl-v4-collateral-expired", None, None),
        ("dcapqvl-v4-uptodate", None, None),
        ("dcapqvl-v5-td15ex-uptodate", None, None),
        (
            "dstack-quote-report",
            Some(MODULE_1_5_16),
            Some(MODEL_IMAGE),
        ),
        ("dstack-tdx-lite", None, None),
        ("gotdxguest-no-tcb-level", None, None),
        ("gpu-blackwell", Some(MODULE_1_5_16), Some(MODEL_IMAGE)),
        (
            "gpu-invalid-signature",
            Some(MODULE_1_5_16),
            Some(MODEL_IMAGE),
        ),
        ("gpu-nvtrust-hopper", Some(MODULE_1_5_16), Some(MODEL_IMAGE)),
        ("gpu-ppcie-8xh100", Some(MODULE_1_5_16), Some(MODEL_IMAGE)),
        (
            "gpu-trustee-trailing-byte",
            Some(MODULE_1_5_16),
            Some(MODEL_IMAGE),
        ),
        ("nearai-canary", Some(MODULE_1_5_16), Some(MODEL_IMAGE)),
        ("nearai-nanogpt-pins", None, None),
        ("pmlsdk-dstack-sample", None, Some(GATEWAY_IMAGE)),
        // No quote to read.
        ("fetch-failed", None, None),
        ("sgx-quote", None, None),
    ];
    for (name, module, image) in expected {
        let verdict = common::verdict(&common::bundle(name));
        let modules = named(&verdict, "mrseam");
        let images = named(&verdict, "mrtd");
        if name == "fetch-failed" || name == "sgx-quote" {
            assert!(modules.is_empty() && images.is_empty(), "{name}");
            continue;
        }
        assert_eq!(modules.len(), 1, "{name}: {modules:?}");
        assert_eq!(images.len(), 1, "{name}: {images:?}");
        assert_eq!(modules.first().and_then(|m| m.1), module, "{name} mrseam");
        assert_eq!(images.first().and_then(|m| m.1), image, "{name} mrtd");
    }
    // Every real bundle is listed above.
    let stored = std::fs::read_dir(common::repo_path("tests/bundles"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(stored, expected.len());
}

#[test]
fn a_real_quote_whose_signature_is_unproven_never_satisfies_the_table() {
    // dstack's fixture runs module 1.5.16 and the NanoGPT/NEAR image, but carries no collateral:
    // its signature is unproven, so the table neither passes nor fails it.
    let bundle = common::bundle("dstack-quote-report");
    let mut policy = common::own_policy(&bundle);
    policy.known = KnownUse::current();
    let verdict = common::verdict_with(&bundle, &policy);
    for field in ["mrseam", "mrtd"] {
        let (state, reason) = common::check(&verdict, &format!("pin:{field}"), "");
        assert_eq!(state, State::Unknown, "{field}: {reason}");
        assert!(
            reason.starts_with("quote not verified"),
            "{field}: {reason}"
        );
    }
}

/// One live check of `model` with the target's policy changed by `edit`, verified under it; the
/// bundle carries that policy.
async fn check_under(
    run: &Running,
    model: &str,
    edit: impl FnOnce(&mut Policy),
) -> (Verdict, Bundle) {
    let mut config = run.config.clone();
    let target = config.targets.iter_mut().find(|t| t.name == model).unwrap();
    edit(&mut target.policy);
    let target = config.target(model).unwrap();
    let value = run.fetcher.check(&config, target).await.unwrap();
    let bundle = Bundle::from_value(value).unwrap();
    let verdict = verify::verify(&bundle, &target.policy, &config.trust_anchors());
    (verdict, bundle)
}

fn no_pins(policy: &mut Policy) {
    policy.pins.clear();
    policy.gateway_pins.clear();
}

/// The `pin:<field>` checks of a verdict as (scope, state, reason).
fn pin_checks(verdict: &Verdict, field: &str) -> Vec<(String, State, String)> {
    verdict
        .checks
        .iter()
        .filter(|c| c.name == format!("pin:{field}"))
        .map(|c| (c.scope.clone(), c.state, c.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_target_with_no_pins_passes_from_the_table_by_name() {
    let run = sim_run::start("known-default", SimOptions::default()).await;
    let model = model_name(0);
    // The configuration the simulator writes uses the table: nothing to turn on.
    let configured = run.config.target(&model).unwrap();
    assert_eq!(
        configured.policy.known.as_ref().map(|k| k.version),
        Some(version())
    );
    let (verdict, bundle) = check_under(&run, &model, no_pins).await;
    let v = version();
    let mrseam = pin_checks(&verdict, "mrseam");
    let mrtd = pin_checks(&verdict, "mrtd");
    assert_eq!(mrseam.len(), 1, "{mrseam:?}");
    assert_eq!(mrtd.len(), 1, "{mrtd:?}");
    for (checks, name) in [(&mrseam, MODULE_1_5_16), (&mrtd, MODEL_IMAGE)] {
        let (_, state, reason) = checks.first().unwrap();
        assert_eq!(*state, State::Pass, "{reason}");
        assert!(
            reason.starts_with(&format!("{name} (known-measurements table v{v}): ")),
            "{reason}"
        );
        assert!(reason.ends_with(" (quote)"), "{reason}");
    }
    // What the status page shows for the target.
    assert_eq!(known_names(&verdict.checks), [MODULE_1_5_16, MODEL_IMAGE]);

    // The bundle records the table's use, and re-derives the same verdict offline from its own
    // snapshot.
    let snapshot = bundle.policy.clone().unwrap();
    assert_eq!(
        snapshot.known_measurements,
        Some(KnownUse {
            version: v,
            extra: Vec::new()
        })
    );
    let offline = verify::verify(
        &bundle,
        &Policy::from_snapshot(&snapshot).unwrap(),
        &run.config.trust_anchors(),
    );
    assert_eq!(
        serde_json::to_value(&offline).unwrap(),
        serde_json::to_value(&verdict).unwrap()
    );
    // Through the JSON the store keeps, too.
    let text = serde_json::to_string(&serde_json::to_value(&bundle).unwrap()).unwrap();
    let reread = Bundle::from_json(&text).unwrap();
    assert_eq!(reread.policy, Some(snapshot));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_outside_the_table_fails_until_the_target_adds_it_or_opts_out() {
    let run = sim_run::start("known-drift", SimOptions::default()).await;
    let model = model_name(0);
    run.sim
        .state
        .set_fault(Some(&model), Fault::DriftMrtd, true)
        .unwrap();
    let v = version();

    // The drifted image is no known one: pin:mrtd fails naming it, pin:mrseam still passes.
    let (verdict, _) = check_under(&run, &model, no_pins).await;
    let drifted = named(&verdict, "mrtd");
    let [(value, None)] = drifted.as_slice() else {
        panic!("expected one unknown mrtd, found {drifted:?}");
    };
    assert_eq!(
        pin_checks(&verdict, "mrtd"),
        [(
            String::new(),
            State::Fail,
            format!(
                "unknown os image: expected one of the 2 known (table v{v}), found {value} (quote)"
            )
        )]
    );
    assert_eq!(
        pin_checks(&verdict, "mrseam").first().map(|c| c.1),
        Some(State::Pass)
    );

    // An extra row names it, and it passes under that name.
    let extra = ExtraRow {
        field: "mrtd".into(),
        value: value.to_ascii_uppercase(),
        name: "our drifted build".into(),
    };
    let (verdict, bundle) = check_under(&run, &model, |p| {
        no_pins(p);
        if let Some(known) = p.known.as_mut() {
            known.extra.push(extra.clone());
        }
    })
    .await;
    let (_, state, reason) = pin_checks(&verdict, "mrtd").into_iter().next().unwrap();
    assert_eq!(state, State::Pass, "{reason}");
    assert!(
        reason.starts_with(&format!(
            "our drifted build (known-measurements table v{v}): "
        )),
        "{reason}"
    );
    // The extra row travels with the bundle.
    let snapshot = bundle.policy.unwrap().known_measurements.unwrap();
    assert_eq!(snapshot.extra, [extra]);

    // Opting out: no table-judged check at all.
    let (verdict, bundle) = check_under(&run, &model, |p| {
        no_pins(p);
        p.known = None;
    })
    .await;
    assert!(pin_checks(&verdict, "mrtd").is_empty());
    assert!(pin_checks(&verdict, "mrseam").is_empty());
    assert_eq!(bundle.policy.unwrap().known_measurements, None);

    // The target's own pin wins over the table: one pin:mrtd, judged by the pin.
    let (verdict, _) = check_under(&run, &model, |p| {
        no_pins(p);
        p.pins.insert("mrtd".into(), vec![value.clone()]);
    })
    .await;
    assert_eq!(
        pin_checks(&verdict, "mrtd"),
        [(
            String::new(),
            State::Pass,
            format!("{value} (quote) is allowed")
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_gateway_and_its_models_are_named_separately() {
    let options = SimOptions {
        formats: vec![SimFormat::NearGateway],
        ..SimOptions::default()
    };
    let run = sim_run::start("known-gateway", options).await;
    let model = model_name(0);
    let (verdict, _) = check_under(&run, &model, no_pins).await;
    let v = version();
    let mrtd = pin_checks(&verdict, "mrtd");
    let of = |scope: &str| {
        mrtd.iter().find(|c| c.0 == scope).map(|c| {
            (
                c.1,
                c.2.split(" (known-measurements")
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
    };
    assert_eq!(
        of("gateway"),
        Some((State::Pass, GATEWAY_IMAGE.to_string()))
    );
    assert_eq!(of("model:0"), Some((State::Pass, MODEL_IMAGE.to_string())));
    assert!(
        pin_checks(&verdict, "mrseam")
            .iter()
            .all(|c| c.1 == State::Pass
                && c.2
                    .starts_with(&format!("{MODULE_1_5_16} (known-measurements table v{v})"))),
        "{:?}",
        pin_checks(&verdict, "mrseam")
    );
}

#[test]
fn a_stored_bundle_of_a_module_outside_the_table_fails_as_unknown() {
    // Recorded when the simulator ran module 1.5.06 (verified under its test roots): with the
    // table on, every part's module is unknown, the gateway's included.
    let (value, config) = common::format_case("near-gateway-ecdsa");
    let bundle = Bundle::from_value(value).unwrap();
    let mut policy = config.target(&bundle.target).unwrap().policy.clone();
    assert_eq!(policy.known, None, "the stored configuration opts out");
    policy.known = KnownUse::current();
    let verdict = verify::verify(&bundle, &policy, &config.trust_anchors());
    let v = version();
    let mrseam = pin_checks(&verdict, "mrseam");
    let scopes: Vec<&str> = mrseam.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(scopes, ["model:0", "gateway"]);
    for (scope, state, reason) in &mrseam {
        assert_eq!(*state, State::Fail, "{scope}");
        assert_eq!(
            reason,
            &format!(
                "unknown tdx module: expected one of the 4 known (table v{v}), found 5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1 (quote)"
            )
        );
    }
    // The configuration pins mrtd itself: the table judges no image.
    assert!(
        pin_checks(&verdict, "mrtd")
            .iter()
            .all(|c| !c.2.contains("known")),
    );
    assert_eq!(verdict.state, State::Fail);
}
