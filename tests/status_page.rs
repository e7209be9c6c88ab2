//! The status page at `/` as a browser renders it: the daemon in-process against a simulator
//! with two models, one passing and one with a bad quote signature, the page loaded by headless
//! Chromium (`--dump-dom`) and asserted on, then a screenshot written to
//! `target/status-page.png` for humans.
//!
//! Chromium is Debian's `chromium` on `PATH` (or the path in `TEEWATCH_CHROMIUM`). Without it the
//! test fails at once naming the install command (`scripts/test` installs it); it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon_run::{manual_schedule, start_daemon};
use common::sim_run::start;

use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

/// How long one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The flags every Chromium run needs in a container: no sandbox (root, no user namespaces), no
/// GPU, no /dev/shm (often 64 MB in containers), a throwaway profile, nothing fetched in the
/// background.
fn chromium_flags(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-extensions".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--metrics-recording-only".into(),
        "--mute-audio".into(),
        "--hide-scrollbars".into(),
    ]
}

/// The Chromium binary: `TEEWATCH_CHROMIUM` when set, else `chromium` on `PATH`. Panics with the
/// install command when there is none.
fn chromium() -> PathBuf {
    let program = std::env::var("TEEWATCH_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    common::tool::tool(&program, "apt-get install -y chromium")
}

/// What one Chromium run printed.
struct Output {
    stdout: String,
    stderr: String,
}

/// Runs Chromium with `args` in its own process group, killing the whole group after
/// [`CHROMIUM_TIMEOUT`]. Blocking: call it from `spawn_blocking`.
fn run_chromium(binary: &Path, dir: &Path, tag: &str, args: &[String]) -> Output {
    use std::os::unix::process::CommandExt;
    let profile = dir.join(format!("chromium-profile-{tag}"));
    let stdout_path = dir.join(format!("chromium-{tag}.stdout"));
    let stderr_path = dir.join(format!("chromium-{tag}.stderr"));
    let mut command = Command::new(binary);
    command
        .args(chromium_flags(&profile))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            // The group is the browser and every helper process it started.
            common::process::signal_group(child.id(), "KILL");
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {args:?} did not finish within {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = Output {
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    };
    assert!(
        status.success(),
        "chromium {args:?} exited with {status}; stderr:\n{}",
        output.stderr
    );
    eprintln!(
        "chromium {} took {:.1} s",
        args.first().map(String::as_str).unwrap_or(""),
        started.elapsed().as_secs_f64()
    );
    output
}

/// Text as an HTML serializer writes it in element content (what `--dump-dom` prints).
fn serialized_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

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
    reason: String,
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
        bad.contains("data-check=\"tdx_quote_signature\" data-check-state=\"fail\"")
            && bad.contains("<code class=\"ck\">tdx_quote_signature</code>"),
        "{what}: {bad}"
    );
    assert!(
        bad.contains(&serialized_text(&expected.reason)),
        "{what}: reason {:?} in {bad}",
        expected.reason
    );
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
    // The page shortens long reasons; compare what it shows.
    let reason: String = reason
        .chars()
        .take(teewatch::daemon::status_page::MAX_REASON_CHARS)
        .collect();
    let expected = Expected {
        good: good.clone(),
        bad: bad.clone(),
        tcb,
        reason,
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

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_path("target"));
    std::fs::create_dir_all(&target_dir).unwrap();
    let png = target_dir.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = png.clone();
    let output = tokio::task::spawn_blocking(move || {
        run_chromium(
            &binary,
            &dir,
            "png",
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1280,800".into(),
                url,
            ],
        )
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}; stderr:\n{}",
            png.display(),
            output.stderr
        )
    });
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    assert!(
        bytes.len() > 10 * 1024,
        "{} is only {} bytes",
        png.display(),
        bytes.len()
    );
    println!(
        "status page screenshot: {} ({} bytes)",
        png.display(),
        bytes.len()
    );
    eprintln!("status page screenshot: {}", png.display());
    daemon.shutdown(Duration::from_secs(5)).await;
}
