//! A restart restores what the status page says of each target's last verdict, including the
//! test roots it was judged under: a daemon restarted without the `[dangerous]` roots a stored
//! verdict relied on must still tag that verdict as judged under them, as a reload does, rather
//! than show a plain pass beside "production trust roots in force".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use crate::common;
use common::daemon_run::{manual_schedule, start_daemon, status_page};
use common::sim_run::start;
use teewatch_sim::server::{SimOptions, model_name};

const TAG: &str = "judged under test roots: ";

/// The `<tr>` of `target` on a status page.
fn row<'a>(page: &'a str, target: &str) -> &'a str {
    let start = page
        .find(&format!("<tr data-target=\"{target}\""))
        .unwrap_or_else(|| panic!("no row of {target}:\n{page}"));
    let row = &page[start..];
    &row[..row.find("</tr>").unwrap()]
}

/// The configuration at `path` without its `[dangerous]` section.
fn drop_test_roots(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("[dangerous]\n").expect("a [dangerous] section");
    let end = start + text[start..].find("\n\n").unwrap() + 2;
    std::fs::write(path, format!("{}{}", &text[..start], &text[end..])).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_test_roots_a_stored_verdict_was_judged_under() {
    let run = start("crash-trust", SimOptions::default()).await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    let target = model_name(0);
    let daemon = start_daemon(&config, &run.dir).await;
    assert!(daemon.check_now(&target).await);
    // Judged under the roots in force: nothing to tag.
    let page = status_page(&daemon).await;
    assert!(!row(&page, &target).contains(TAG), "{page}");

    // A reload that drops the test roots tags the verdict made under them.
    let with_roots = std::fs::read_to_string(&config).unwrap();
    drop_test_roots(&config);
    daemon.reload().await.unwrap();
    let reloaded = status_page(&daemon).await;
    let tagged = row(&reloaded, &target);
    assert!(
        tagged.contains(&format!("{TAG}dangerous_intel_root_ca")),
        "{tagged}"
    );
    daemon.shutdown(Duration::from_secs(10)).await;

    // A restart under the same configuration says the same, from the store alone.
    let daemon = start_daemon(&config, &run.dir).await;
    let restarted = status_page(&daemon).await;
    assert!(
        restarted.contains("Production trust roots in force"),
        "{restarted}"
    );
    let row_after = row(&restarted, &target);
    let tag_of = |row: &str| {
        let at = row.find(TAG).map(|i| &row[i..])?;
        Some(at[..at.find("</small>").unwrap()].to_string())
    };
    assert_eq!(
        tag_of(row_after),
        tag_of(tagged),
        "the restarted page lost the test roots of the stored verdict:\n{row_after}"
    );
    daemon.shutdown(Duration::from_secs(10)).await;
    std::fs::write(&config, with_roots).unwrap();
}
