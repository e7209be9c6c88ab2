//! The status page at `/` as a browser renders it, the daemon in-process against the simulator.
//!
//! - Two models, one passing and one with a bad quote signature: the page as served and as
//!   headless Chromium renders it (`--dump-dom`), then a screenshot `target/status-page.png`.
//! - A realistic page at 1,280 pixels: long target names, two nodes and two GPUs per target,
//!   reasons full of 64-digit nonces, a drift, an unknown target. Every column of the targets
//!   table lies inside the window and nothing reaches past its right edge (Chromium measures
//!   the page's scroll width against its client width), long hex is shortened with the whole
//!   value on hover, and "failing since" is shown. Screenshot: `target/status-page-1280.png`.
//!
//! Chromium is Debian's `chromium` on `PATH` (or the path in `TEEWATCH_CHROMIUM`). Without it the
//! test fails at once naming the install command (`scripts/test` installs it); it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod chromium;
use crate::common;

use std::time::Duration;

use chrono::SecondsFormat;

use chromium::{chromium, measure, run_chromium, screenshot};
use common::daemon_run::{manual_schedule, sample, scrape, start_daemon, status_page};
use common::sim_run::start;

use teewatch::daemon::status_page::{LONG_HEX, MAX_LISTED_CHECKS, MAX_REASON_CHARS, reason_html};
use teewatch::verify::State;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

/// The serialized `<tr>` of `target` in a page.
fn row<'a>(dom: &'a str, target: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr data-target=\"{target}\""))
        .unwrap_or_else(|| panic!("no row for {target} in:\n{dom}"));
    let end = dom[start..].find("</tr>").unwrap() + start;
    &dom[start..end]
}

/// The element with `id` through the end of its first closing tag of the same name.
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<{tag} id=\"{id}\""))
        .unwrap_or_else(|| panic!("no <{tag} id=\"{id}\"> in:\n{dom}"));
    let end = dom[start..].find(&format!("</{tag}>")).unwrap() + start;
    &dom[start..end]
}

/// What the page must show for the run below, asserted on the raw page and the rendered DOM.
struct Expected {
    good: String,
    bad: String,
    tcb: String,
    /// The failing check's reason as the page writes it (escaped, long hex shortened).
    reason: String,
    /// When the failing target began failing, as a `<time datetime>` value.
    failing_since: String,
}

fn assert_page(dom: &str, expected: &Expected, what: &str) {
    assert!(dom.contains("<html lang=\"en\""), "{what}: lang");
    assert!(
        !dom.contains("<script") && !dom.contains("<link") && !dom.contains(" src="),
        "{what}: scripts or external assets"
    );
    let summary = element(dom, "p", "summary");
    assert!(
        summary.contains("2 targets: 1 pass, 0 unknown, 1 fail"),
        "{what}: {summary}"
    );
    let trust = element(dom, "section", "trust");
    assert!(
        trust.contains("Test trust roots in force") && trust.contains("data-trust=\"test\""),
        "{what}: {trust}"
    );
    for option in [
        "dangerous_intel_root_ca",
        "dangerous_nvidia_device_root",
        "dangerous_nras_intermediates",
    ] {
        assert!(trust.contains(option), "{what}: {option} in {trust}");
    }

    let table = element(dom, "table", "targets");
    assert_eq!(
        table.matches("<tr data-target=").count(),
        2,
        "{what}: {table}"
    );
    assert!(table.contains("<th scope=\"col\">"), "{what}: headers");
    // The failing target comes first.
    assert!(
        table.find(&format!("data-target=\"{}\"", expected.bad))
            < table.find(&format!("data-target=\"{}\"", expected.good)),
        "{what}: order"
    );

    let good = row(table, &expected.good);
    assert!(good.contains("data-state=\"pass\""), "{what}: {good}");
    assert!(good.contains(" pass</td>"), "{what}: {good}");
    assert!(
        good.contains(&format!("<td>{}</td>", expected.tcb)),
        "{what}: TCB status in {good}"
    );
    assert!(!good.contains("data-check="), "{what}: {good}");

    let bad = row(table, &expected.bad);
    assert!(bad.contains("data-state=\"fail\""), "{what}: {bad}");
    assert!(bad.contains(" fail</td>"), "{what}: {bad}");
    assert!(
        bad.contains(&format!(
            "<td class=\"since\"><time datetime=\"{}\"",
            expected.failing_since
        )),
        "{what}: failing since {} in {bad}",
        expected.failing_since
    );
    assert!(
        bad.contains("data-check=\"tdx_quote_signature\" data-check-state=\"fail\"")
            && bad.contains("<code class=\"ck\">tdx_quote_signature</code>"),
        "{what}: {bad}"
    );
    // The page escapes quotes in text, a serializer writes them as they are.
    let reason = if what == "served page" {
        expected.reason.clone()
    } else {
        expected
            .reason
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
    };
    assert!(bad.contains(&reason), "{what}: reason {reason:?} in {bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_a_pass_and_a_fail_in_headless_chromium() {
    let binary = chromium();
    let options = SimOptions {
        models: 2,
        ..SimOptions::default()
    };
    let run = start("status-page", options).await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    let daemon = start_daemon(&config, &run.dir).await;
    let (good, bad) = (model_name(0), model_name(1));

    run.sim
        .state
        .set_fault(Some(&bad), Fault::BadQuoteSignature, true)
        .unwrap();
    assert!(daemon.check_now(&good).await);
    assert!(daemon.check_now(&bad).await);

    let statuses = daemon.shared.statuses();
    let tcb = statuses[&good]
        .tcb_status
        .clone()
        .expect("the passing target has a TCB status");
    let failing = &statuses[&bad].failing;
    let reason = failing
        .iter()
        .find(|c| c.name == "tdx_quote_signature")
        .unwrap_or_else(|| panic!("tdx_quote_signature does not fail: {failing:?}"))
        .reason
        .clone();
    // The page shortens long reasons and long hex runs; compare what it shows.
    let reason = reason_html(&reason, MAX_REASON_CHARS);
    let failing_since = statuses[&bad]
        .state_since
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let expected = Expected {
        good: good.clone(),
        bad: bad.clone(),
        tcb,
        reason,
        failing_since,
    };

    // The page as served.
    let url = format!("http://{}/", daemon.addr());
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("<meta http-equiv=\"refresh\""), "{page}");
    assert_page(&page, &expected, "served page");

    // The page as Chromium renders it.
    let dir = run.dir.clone();
    let (dump_binary, dump_dir, dump_url) = (binary.clone(), dir.clone(), url.clone());
    let dom = tokio::task::spawn_blocking(move || {
        run_chromium(
            &dump_binary,
            &dump_dir,
            "dom",
            &["--dump-dom".into(), dump_url],
        )
    })
    .await
    .unwrap();
    assert_page(&dom.stdout, &expected, "rendered DOM");

    tokio::task::spawn_blocking(move || screenshot(&binary, &dir, &url, 1280, "status-page.png"))
        .await
        .unwrap();
    daemon.shutdown(Duration::from_secs(5)).await;
}

/// A target name as long as real ones get (a provider's host, the model, a replica), with no
/// space to break at.
fn long_name(i: usize, model: &str) -> String {
    format!("inference-eu-west-1.provider-example.net/{model}/production-replica-{i:02}")
}

/// The longest run of hex digits in `text` outside `title="…"` attributes (where the page keeps
/// the whole values it shortens).
fn longest_shown_hex_run(text: &str) -> usize {
    let mut shown = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(" title=\"") {
        shown.push_str(&rest[..at]);
        let after = &rest[at + " title=\"".len()..];
        rest = &after[after.find('"').unwrap() + 1..];
    }
    shown.push_str(rest);
    shown
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_fits_1280_pixels_with_long_names_hex_reasons_and_many_checks() {
    let binary = chromium();
    let options = SimOptions {
        models: 4,
        nodes: 2,
        gpus: 2,
        ..SimOptions::default()
    };
    let run = start("status-page-1280", options).await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    let models: Vec<String> = (0..4).map(model_name).collect();
    let names: Vec<String> = models
        .iter()
        .enumerate()
        .map(|(i, model)| long_name(i, model))
        .collect();
    let mut text = std::fs::read_to_string(&config).unwrap();
    for (model, name) in models.iter().zip(&names) {
        let renamed = text.replacen(
            &format!("name = \"{model}\""),
            &format!("name = \"{name}\""),
            1,
        );
        assert_ne!(renamed, text, "no target named {model}");
        text = renamed;
    }
    std::fs::write(&config, text).unwrap();
    let daemon = start_daemon(&config, &run.dir).await;

    // Target 1 passes first, so that its next check's new MRTD is a drift.
    assert!(daemon.check_now(&names[1]).await);
    let faults: [(usize, &[Fault]); 3] = [
        // Nonces bound elsewhere (64-digit expected and found values), a GPU signature and an
        // old TCB: many failing checks on both nodes.
        (
            0,
            &[
                Fault::UnboundNonce,
                Fault::BadGpuSignature,
                Fault::TcbOutdated,
            ],
        ),
        // Another OS image and another signing address in REPORTDATA: a drift and hex reasons.
        (1, &[Fault::DriftMrtd, Fault::WrongAddress]),
        // Nothing could be fetched: every check unknown.
        (2, &[Fault::Http503]),
    ];
    for (i, list) in faults {
        for fault in list {
            run.sim
                .state
                .set_fault(Some(&models[i]), *fault, true)
                .unwrap();
        }
    }
    for name in &names {
        assert!(daemon.check_now(name).await, "{name}");
    }
    let statuses = daemon.shared.statuses();
    let states: Vec<State> = names.iter().map(|n| statuses[n].state).collect();
    assert_eq!(
        states,
        [State::Fail, State::Fail, State::Unknown, State::Pass],
        "{names:?}"
    );
    let metrics = scrape(&daemon).await;
    let page = status_page(&daemon).await;
    daemon.shutdown(Duration::from_secs(5)).await;

    // What the page holds: the long hex only in titles, many checks, failing since.
    let table = element(&page, "table", "targets");
    let nonce_title = table
        .split("<span class=\"hex\" title=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|run| run.len() == 64);
    assert!(
        nonce_title.is_some(),
        "no 64-digit value kept whole in a title: {table}"
    );
    let shown = longest_shown_hex_run(table);
    assert!(
        shown < LONG_HEX,
        "a hex run of {shown} digits is shown unshortened: {table}"
    );
    let many = row(table, &names[0]);
    assert!(
        many.matches(" data-check=").count() == MAX_LISTED_CHECKS
            && many.contains("more not passing"),
        "expected {MAX_LISTED_CHECKS} listed checks and more counted, found {many}"
    );
    for (i, word) in [(0, "fail"), (1, "fail"), (2, "unknown")] {
        let since = statuses[&names[i]].state_since;
        let cell = format!(
            "<td class=\"since\"><time datetime=\"{}\"",
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let row = row(table, &names[i]);
        assert!(
            row.contains(&cell),
            "{word} since: expected {cell} in {row}"
        );
        // The page and the gauge tell the same time.
        let gauge = sample(
            &metrics,
            "teewatch_target_state_since_timestamp_seconds",
            &[("target", names[i].as_str())],
        );
        assert_eq!(
            gauge,
            Some(since.timestamp_millis() as f64 / 1000.0),
            "{}",
            names[i]
        );
    }

    // The page laid out at 1,280 pixels.
    let dir = run.dir.clone();
    let (b, d, p) = (binary.clone(), dir.clone(), page.clone());
    let layout = tokio::task::spawn_blocking(move || measure(&b, &d, &p, 1280, "1280"))
        .await
        .unwrap();
    eprintln!("layout at 1280 px: {layout:?}");
    assert_eq!(
        (layout.client_width, layout.inner_width),
        (1280.0, 1280.0),
        "the window is not 1280 px wide"
    );
    assert!(
        !layout.overflows() && layout.past.is_empty(),
        "the page is wider than 1280 px: scroll width {} (body {}), client width {}; past the \
         edge: {:?}",
        layout.scroll_width,
        layout.body_scroll_width,
        layout.client_width,
        layout.past
    );
    let headers: Vec<&str> = layout.columns.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        headers,
        [
            "target",
            "state",
            "since",
            "last success",
            "failing checks",
            "TCB status",
            "last drift",
            "last check",
            "next check"
        ]
    );
    for (name, left, right) in &layout.columns {
        assert!(
            *left >= 0.0 && *right <= layout.client_width && right - left >= 48.0,
            "column {name:?} spans {left}..{right} px of {}",
            layout.client_width
        );
    }

    // The control: the same page with one element wider than the window is measured as
    // overflowing, so the measurement above can see an overflow.
    let wide = page.replacen(
        "<main>",
        "<main><div id=\"too-wide\" style=\"width:1400px\">wide</div>",
        1,
    );
    let (b, d) = (binary.clone(), dir.clone());
    let control = tokio::task::spawn_blocking(move || measure(&b, &d, &wide, 1280, "control"))
        .await
        .unwrap();
    assert!(
        control.overflows() && control.past.iter().any(|p| p.starts_with("div#too-wide")),
        "the control did not overflow: {control:?}"
    );

    let file = dir.join("measure-1280.html");
    let url = format!("file://{}", file.display());
    tokio::task::spawn_blocking(move || {
        screenshot(&binary, &dir, &url, 1280, "status-page-1280.png")
    })
    .await
    .unwrap();
}
