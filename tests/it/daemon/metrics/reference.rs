//! The fast `/metrics` rendering against the prometheus crate's rendering of the same updates:
//! `Metrics::with_reference` feeds every update to the previous implementation too, which kept
//! every series in the crate's vectors, and after each step of a history (targets added,
//! restored, removed, renamed, values replaced, drift flags and pins changed, a target name
//! that needs escaping) both scrapes must hold the same families with the same HELP and TYPE
//! and the same series with the same values. The fast one must also write each family once,
//! with its samples contiguous, as the text format requires.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use teewatch::metrics::Metrics;
use teewatch::record::Phase;
use teewatch::verify::{AttestationFormat, Check, State};

use super::{at, bundle, snapshot};
use teewatch::metrics::collateral_expiries;

/// A series: its sample name and its labels, sorted by name.
type Series = (String, Vec<(String, String)>);

/// A scrape read back: HELP and TYPE per family, in the order written, and every sample.
#[derive(Debug, Default)]
struct Scrape {
    help: Vec<(String, String)>,
    kind: Vec<(String, String)>,
    samples: BTreeMap<Series, String>,
    /// The family each sample line was written under (the latest `# TYPE`), in order.
    under: Vec<(String, String)>,
}

fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    let mut family = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            scrape.help.push((name.to_string(), help.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            scrape.kind.push((name.to_string(), kind.to_string()));
            family = name.to_string();
        } else {
            let (series, value) = parse_sample(line);
            scrape.under.push((family.clone(), series.0.clone()));
            let old = scrape.samples.insert(series, value);
            assert!(old.is_none(), "a series written twice: {line}");
        }
    }
    scrape
}

/// `name{label="value",...} value`, with `\\`, `\"` and `\n` escapes in label values.
fn parse_sample(line: &str) -> (Series, String) {
    let name_end = line.find(['{', ' ']).unwrap();
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut label = String::new();
        loop {
            let (i, c) = chars.next().unwrap();
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().unwrap().1, '"', "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().unwrap().1 {
                            '"' => break,
                            '\\' => match chars.next().unwrap().1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            c => value.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut label), value));
                }
                c => label.push(c),
            }
        }
    }
    labels.sort();
    let value = rest.strip_prefix(' ').unwrap().to_string();
    ((name, labels), value)
}

/// Renders both ways and asserts they agree; returns the fast scrape.
fn assert_same(m: &Metrics) -> Scrape {
    let fast_text = m.render().unwrap();
    let fast = parse(&fast_text);
    let old = parse(&m.render_reference().unwrap().unwrap());
    let sorted = |v: &[(String, String)]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&fast.help), sorted(&old.help), "help texts differ");
    assert_eq!(sorted(&fast.kind), sorted(&old.kind), "types differ");
    // Each family once, in the order of names as the prometheus crate writes them.
    let names: Vec<&String> = fast.kind.iter().map(|(n, _)| n).collect();
    let mut expected = names.clone();
    expected.sort();
    expected.dedup();
    assert_eq!(names, expected, "families repeated or out of order");
    // Every sample under its own family's TYPE line, so a family's samples are contiguous.
    for (family, sample) in &fast.under {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| sample.strip_suffix(s).filter(|b| b == family))
            .unwrap_or(sample);
        assert_eq!(base, family, "sample {sample} written under {family}");
    }
    let keys = |s: &Scrape| s.samples.keys().cloned().collect::<BTreeSet<_>>();
    let (fast_keys, old_keys) = (keys(&fast), keys(&old));
    let only_fast: Vec<_> = fast_keys.difference(&old_keys).collect();
    let only_old: Vec<_> = old_keys.difference(&fast_keys).collect();
    assert!(
        only_fast.is_empty() && only_old.is_empty(),
        "series differ: expected {only_old:?} too, found {only_fast:?} in addition"
    );
    for (series, value) in &fast.samples {
        // The process collector reads CPU time and memory afresh at each scrape.
        if series.0.starts_with("process_") {
            continue;
        }
        assert_eq!(Some(value), old.samples.get(series), "value of {series:?}");
    }
    assert_eq!(m.series_count(), fast.samples.len(), "series_count");
    fast
}

/// The series of one target in a scrape.
fn series_of(scrape: &Scrape, target: &str) -> usize {
    scrape
        .samples
        .keys()
        .filter(|(_, labels)| labels.iter().any(|(l, v)| l == "target" && v == target))
        .count()
}

#[test]
fn the_fast_scrape_equals_the_prometheus_crate_rendering_through_a_history() {
    let m = Metrics::with_reference().unwrap();
    assert_same(&m);
    m.set_targets(4);
    m.set_in_flight(2);
    let odd = "we\"ird\\name\nline";
    for (i, (name, state)) in [
        ("alpha", State::Pass),
        ("beta", State::Fail),
        ("gamma", State::Unknown),
        (odd, State::Pass),
    ]
    .into_iter()
    .enumerate()
    {
        let mut snap = snapshot(name, state, i, state == State::Fail);
        // A pin check failing in one scope and passing in another: exported once, worst.
        for s in [State::Fail, State::Pass] {
            snap.checks.push(Check {
                name: "pin:mrtd".to_string(),
                scope: "node:0xa".to_string(),
                state: s,
                reason: String::new(),
            });
        }
        m.set_target(&snap, true);
        m.check_finished(name, state);
        m.set_state_since(name, at("2026-01-01T00:05:00.250Z"));
        m.set_next_check(name, at("2026-01-01T00:10:00Z"));
        m.set_last_dispatched(name, at("2026-01-01T00:04:59.500Z"));
        m.drift_events(name, i as u64);
    }
    m.skipped("gamma");
    m.skipped("gamma");
    m.fetch_error("gamma", "attestation", "timeout");
    m.fetch_error("gamma", "somewhere", "dns");
    m.store_error();
    for phase in Phase::ALL {
        m.observe_phase(phase, Duration::from_millis(7));
    }
    let expiries = collateral_expiries(&bundle("dcapqvl-v4-uptodate.json"));
    for (fmspc, expiry) in &expiries {
        m.set_collateral_expiry(fmspc, *expiry);
        m.set_collateral_fetched(fmspc, None);
        m.set_target_platforms("alpha", [fmspc.as_str(), "00A067110000", "bad"]);
    }
    let first = assert_same(&m);
    assert!(series_of(&first, odd) > 30, "the oddly named target");

    // A restore after a restart: no TCB status, half the fields, another format, no success.
    let mut restored = snapshot("beta", State::Unknown, 9, false);
    restored.tcb_status = None;
    restored.attestation_format = Some(AttestationFormat::Chutes);
    restored.measurements.retain(|f, _| f.starts_with("rt"));
    restored.drift.retain(|f, _| f.starts_with("rt"));
    restored.checks.truncate(3);
    m.set_target(&restored, false);
    // Changed values count once; drift flags set between checks; fewer platforms.
    m.set_target(&snapshot("alpha", State::Pass, 11, false), true);
    m.set_drift("alpha", &[("mrtd".to_string(), true)].into());
    m.set_drift("never-checked", &[("mrtd".to_string(), true)].into());
    m.set_target_platforms("alpha", []);
    assert_same(&m);

    // A reload removes gamma and renames alpha to omega; a check of gamma still in flight
    // cannot bring its series back.
    let names = ["beta", odd, "omega"].map(String::from);
    m.retain_targets(&names);
    m.retain_collateral(&[]);
    m.set_targets(3);
    m.check_finished("gamma", State::Pass);
    m.fetch_error("alpha", "nras", "timeout");
    m.set_target(&snapshot("omega", State::Fail, 12, true), true);
    m.check_finished("omega", State::Fail);
    let after = assert_same(&m);
    assert_eq!(series_of(&after, "gamma"), 0, "a removed target's series");
    assert_eq!(
        series_of(&after, "alpha"),
        0,
        "a renamed target's old series"
    );
    assert!(
        series_of(&after, "omega") > 30,
        "a renamed target's new series"
    );

    m.retain_targets(&[]);
    let empty = assert_same(&m);
    assert!(!empty.kind.iter().any(|(n, _)| n == "teewatch_target_state"));
}
