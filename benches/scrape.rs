//! `/metrics` rendering at fleet scale: 2,000 targets with every check, every fleet-wide
//! measurement, drift flags, a TCB status, a skip and a fetch error each (about 65 series per
//! target, 130,000 in all). Run with `cargo bench --bench scrape`.
//!
//! The same updates also feed the previous implementation (`Metrics::with_reference`), so the
//! old scrape (`previous-*`) is timed in the same run as the new one, on the same noisy machine.
//! `floor-copy` is a copy of the rendered bytes: no scrape can hand over its text faster.
//! The `*-while-checking` cases render while another thread records a check every 30 ms, the
//! rate of 2,000 targets on a 60 s interval.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use teewatch::drift::FLEET_FIELDS;
use teewatch::metrics::{Metrics, TargetSnapshot};
use teewatch::verify::checks::all_checks;
use teewatch::verify::{Check, State};

/// The daemon's allocator (see `src/main.rs`), so the numbers are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `targets` targets after one check each; with the previous implementation fed too when
/// `reference`.
fn populated(targets: usize, reference: bool) -> Metrics {
    let m = if reference {
        Metrics::with_reference().unwrap()
    } else {
        Metrics::new().unwrap()
    };
    m.set_targets(targets);
    for i in 0..targets {
        record(&m, i);
        let name = format!("provider-{i:04}-model");
        m.skipped(&name);
        m.fetch_error(&name, "nras", "timeout");
    }
    m
}

/// One check of target `i`, as the runner records it.
fn record(m: &Metrics, i: usize) {
    {
        let name = format!("provider-{i:04}-model");
        let checks = all_checks()
            .map(|c| Check {
                name: c.to_string(),
                scope: String::new(),
                state: if i % 7 == 0 { State::Fail } else { State::Pass },
                reason: String::new(),
            })
            .collect();
        let measurements: BTreeMap<String, String> = FLEET_FIELDS
            .iter()
            .map(|f| (f.to_string(), format!("{:096x}", i * 31 + f.len())))
            .collect();
        let drift = FLEET_FIELDS
            .iter()
            .map(|f| (f.to_string(), false))
            .collect();
        m.set_target(
            &TargetSnapshot {
                target: name.clone(),
                state: State::Pass,
                checks,
                last_check: at("2026-01-01T00:05:00Z"),
                last_success: Some(at("2026-01-01T00:05:00Z")),
                last_duration: Duration::from_millis(2_345),
                tcb_status: Some("UpToDate".to_string()),
                attestation_format: Some(teewatch::verify::AttestationFormat::Dstack),
                measurements,
                drift,
            },
            true,
        );
        m.check_finished(&name, State::Pass);
        m.set_next_check(&name, at("2026-01-01T00:10:00Z"));
    }
}

fn scrape(c: &mut Criterion) {
    let m = populated(2_000, true);
    let mut group = c.benchmark_group("scrape");
    group.sample_size(10);
    let text = m.render().unwrap();
    assert_eq!(
        m.series_count(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
    eprintln!("scrape: {} bytes, {} samples", text.len(), m.series_count());
    group.bench_function("render-2000-targets", |b| b.iter(|| m.render().unwrap()));
    group.bench_function("previous-render-2000-targets", |b| {
        b.iter(|| m.render_reference().unwrap().unwrap())
    });
    group.bench_function("floor-copy-2000-targets", |b| b.iter(|| text.clone()));

    // Checks recorded by another thread while scraping.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (m, stop) = (m.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                record(&m, i % 2_000);
                i += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    group.bench_function("render-2000-targets-while-checking", |b| {
        b.iter(|| m.render().unwrap())
    });
    group.bench_function("previous-render-2000-targets-while-checking", |b| {
        b.iter(|| m.render_reference().unwrap().unwrap())
    });
    stop.store(true, Ordering::Relaxed);
    checker.join().unwrap();

    // What recording one check costs: both implementations, then the new one alone (the
    // previous one's share is the difference).
    let mut i = 0;
    group.bench_function("record-check-both", |b| {
        b.iter(|| {
            record(&m, i % 2_000);
            i += 1;
        })
    });
    drop(m);
    let m = populated(2_000, false);
    group.bench_function("record-check-new", |b| {
        b.iter(|| {
            record(&m, i % 2_000);
            i += 1;
        })
    });
    drop(m);

    // The growth with targets, new rendering only (the old one is not kept for these).
    for targets in [1_000, 5_000] {
        let m = populated(targets, false);
        group.bench_function(format!("render-{targets}-targets"), |b| {
            b.iter(|| m.render().unwrap())
        });
        let text = m.render().unwrap();
        group.bench_function(format!("floor-copy-{targets}-targets"), |b| {
            b.iter(|| text.clone())
        });
    }
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
