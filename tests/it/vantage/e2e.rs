//! Two vantage points on one host: fetchers whose connections leave from 127.0.0.1 and
//! 127.0.0.2 check the same simulator, which answers 127.0.0.2 through a fault scoped to it;
//! the comparison of their verdicts names exactly what the fault changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;

use crate::common::sim_run::{Running, failing, start, unproven};
use teewatch::config::Schedule;
use teewatch::fetch::check::Fetcher;
use teewatch::fetch::http::{Http, HttpOptions};
use teewatch::vantage::{Comparison, MEASUREMENTS, VantageCheck, compare};
use teewatch::verify::{State, Verdict, hexutil};
use teewatch_sim::faults::{ClientFault, Fault};
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

const HEALTHY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const SCOPED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// One check of model 0 from `source` under the run's configuration with `[daemon]
/// source_address` set to it (a fetcher of its own, cold caches), as the vantage point
/// `vantage`.
async fn check_from(run: &Running, source: IpAddr, vantage: &str) -> (Verdict, VantageCheck) {
    let mut config = run.config.clone();
    config.daemon.source_address = Some(source);
    let http = Http::new(HttpOptions {
        total_timeout: Duration::from_secs(5),
        ..HttpOptions::for_config(&config)
    })
    .unwrap();
    let fetcher = Fetcher::new(http, Some(&run.dir.join(format!("collateral-{vantage}"))));
    let target = config.target(&model_name(0)).unwrap();
    let bundle = fetcher.check(&config, target).await.unwrap();
    let bundle = teewatch::verify::Bundle::from_value(bundle).unwrap();
    let verdict = teewatch::verify::verify(&bundle, &target.policy, &config.trust_anchors());
    let measurements = teewatch::drift::measurements(&verdict);
    let check = VantageCheck::from_verdict(vantage, Utc::now(), &verdict, &measurements);
    (verdict, check)
}

/// The healthy and the scoped vantage point's verdicts, and their comparison.
async fn both(run: &Running) -> (Verdict, Verdict, Comparison) {
    let (healthy, a) = check_from(run, HEALTHY, "eu-1").await;
    let (scoped, b) = check_from(run, SCOPED, "us-1").await;
    let target = run.config.target(&model_name(0)).unwrap();
    let Schedule::Interval(interval) = target.monitor.as_ref().unwrap().schedule else {
        panic!("the simulator's configuration checks on an interval");
    };
    let comparison = compare(&[a, b], interval, Utc::now());
    (healthy, scoped, comparison)
}

fn names(comparison: &Comparison) -> BTreeSet<&str> {
    comparison
        .disagreements
        .keys()
        .map(String::as_str)
        .collect()
}

fn failing_names(v: &Verdict) -> BTreeSet<&str> {
    v.checks
        .iter()
        .filter(|c| c.state == State::Fail)
        .map(|c| c.name.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interception_on_one_path_fails_tls_key_binding_there_and_is_a_disagreement() {
    let options = SimOptions {
        formats: vec![SimFormat::NearGateway],
        tls: true,
        client_faults: vec![ClientFault {
            client: SCOPED,
            model: None,
            fault: Fault::TlsIntercept,
        }],
        ..SimOptions::default()
    };
    let run = start("vantage-intercept", options).await;
    let (healthy, scoped, comparison) = both(&run).await;
    assert_eq!(unproven(&healthy), Vec::<String>::new());
    let binding = |v: &Verdict| v.checks_named("tls_key_binding").next().cloned().unwrap();
    assert_eq!(
        binding(&healthy).state,
        State::Pass,
        "{:#?}",
        failing(&healthy)
    );
    // From 127.0.0.2 the connection ended at the terminator; the evidence behind it is genuine,
    // so nothing else fails.
    let rogue = hexutil::lower(&run.sim.state.interceptor_spki_fingerprint());
    let intercepted = binding(&scoped);
    assert_eq!(intercepted.state, State::Fail);
    assert!(
        intercepted.reason.starts_with(
            "tls peer spki sha256: expected the tls_cert_fingerprint of the gateway (gateway "
        ) && intercepted.reason.ends_with(&format!(
            "found {rogue}: the connection did not end in an attested td"
        )),
        "{}",
        intercepted.reason
    );
    assert_eq!(failing_names(&scoped), BTreeSet::from(["tls_key_binding"]));
    // The comparison names exactly that check, and which vantage point saw what.
    assert_eq!(names(&comparison), BTreeSet::from(["tls_key_binding"]));
    assert_eq!(
        comparison.disagreements["tls_key_binding"].reason(),
        "tls_key_binding (answer): pass from eu-1; fail from us-1"
    );
    assert_eq!(comparison.counted["eu-1"], State::Pass);
    assert_eq!(comparison.counted["us-1"], State::Fail);
    assert!(comparison.compared.contains(MEASUREMENTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_image_served_on_one_path_is_a_disagreement_on_measurements() {
    let options = SimOptions {
        client_faults: vec![ClientFault {
            client: SCOPED,
            model: Some(model_name(0)),
            fault: Fault::DriftMrtd,
        }],
        ..SimOptions::default()
    };
    let run = start("vantage-image", options).await;
    let (healthy, scoped, comparison) = both(&run).await;
    assert_eq!(healthy.state, State::Pass, "{:#?}", failing(&healthy));
    // From 127.0.0.2 the node runs another OS image: new MRTD and boot registers, each outside
    // its pin, every proof intact.
    let pins = BTreeSet::from(["pin:mrtd", "pin:rtmr0", "pin:rtmr1", "pin:rtmr2"]);
    assert_eq!(failing_names(&scoped), pins, "{:#?}", failing(&scoped));
    let mut expected = pins.clone();
    expected.insert(MEASUREMENTS);
    assert_eq!(names(&comparison), expected);
    assert_eq!(
        comparison.disagreements[MEASUREMENTS].on,
        ["mrtd", "rtmr0", "rtmr1", "rtmr2"]
    );
    // The healthy vantage point saw the genuine image.
    let genuine = hexutil::lower(&run.sim.state.models[0].identity.mrtd);
    assert!(
        comparison.disagreements[MEASUREMENTS].seen["eu-1"].contains(&format!("mrtd={genuine}")),
        "{:?}",
        comparison.disagreements[MEASUREMENTS]
    );
}
