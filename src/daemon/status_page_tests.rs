//! Unit tests of the status page: escaping, ordering, trust flags, ages and page weight.
use super::*;
use crate::config::Config;
use crate::drift::DriftEvent;

fn generation(names: &[&str]) -> Generation {
    let mut text = String::from("[daemon]\ndrift_window = \"24h\"\n");
    for name in names {
        let _ = write!(
            text,
            "[[target]]\nname = \"{name}\"\nprofile = \"nanogpt\"\nmodel = \"{name}\"\n\
             api_key_env = \"TEEWATCH_TEST_KEY\"\ninterval = \"5m\"\n\n"
        );
    }
    let config = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    Generation::new(config, 1)
}

fn check(name: &str, state: State, reason: &str) -> Check {
    Check {
        name: name.into(),
        scope: String::new(),
        state,
        reason: reason.into(),
    }
}

fn status(state: State, failing: Vec<Check>, at: DateTime<Utc>) -> TargetStatus {
    TargetStatus {
        state,
        state_since: at,
        check_id: Some(7),
        last_check: at,
        last_success: (state == State::Pass).then_some(at),
        failing,
        tcb_status: Some("UpToDate".into()),
        last_drift: None,
        trust: Vec::new(),
        known: Vec::new(),
        checked_by: None,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The `data-target` values of the rows, in page order.
fn row_order(page: &str) -> Vec<String> {
    page.split("<tr data-target=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn escapes_markup() {
    assert_eq!(
        escape("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
    assert_eq!(escape("plain ü ✔"), "plain ü ✔");
}

#[test]
fn provider_text_is_escaped_everywhere() {
    let evil = "<script>alert('x')</script>\"><img src=x onerror=y>&amp;";
    let generation = generation(&["t1"]);
    let mut failing = vec![check("tdx_quote_signature", State::Fail, evil)];
    if let Some(c) = failing.first_mut() {
        c.scope = evil.into();
    }
    let mut s = status(State::Fail, failing, now());
    s.tcb_status = Some(evil.into());
    s.last_drift = Some(DriftEvent {
        field: evil.into(),
        node: String::new(),
        old_values: Vec::new(),
        new_value: evil.into(),
        reasons: Vec::new(),
        at: now(),
    });
    s.trust = vec![evil.into()];
    s.known = vec![evil.into()];
    let statuses = BTreeMap::from([("t1".to_string(), s)]);
    let page = render(&generation, &statuses, &Notices::default(), |_| None, now());
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("'x'"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(page.contains("&amp;amp;"));
    // No attribute can be broken out of: every `"` in the page belongs to our markup.
    assert!(!page.contains("\"><img"));
}

#[test]
fn the_module_and_image_the_table_named_are_shown() {
    let checks = [
        check(
            "pin:mrseam",
            State::Pass,
            "TDX module 1.5.16 (known-measurements table v1): 7bf06328 (quote)",
        ),
        check(
            "pin:mrtd",
            State::Pass,
            "dstack-nvidia-0.5.5 (NEAR gateway) (known-measurements table v1): f06dfda6 (quote)",
        ),
        // The same module on another node is named once.
        check(
            "pin:mrseam",
            State::Pass,
            "TDX module 1.5.16 (known-measurements table v1): 7bf06328 (quote)",
        ),
        // A target's own pin and a failure name nothing.
        check("pin:rtmr0", State::Pass, "44c0 (quote) is allowed"),
        check(
            "pin:mrtd",
            State::Fail,
            "unknown os image: expected one of the 2 known (table v1), found 91eb (quote)",
        ),
    ];
    let names = known_names(&checks);
    assert_eq!(
        names,
        ["TDX module 1.5.16", "dstack-nvidia-0.5.5 (NEAR gateway)"]
    );
    let mut s = status(State::Pass, Vec::new(), now());
    s.known = names;
    let statuses = BTreeMap::from([("t1".to_string(), s)]);
    let page = render(
        &generation(&["t1"]),
        &statuses,
        &Notices::default(),
        |_| None,
        now(),
    );
    assert!(
        page.contains(
            "<small class=\"known\" title=\"named by the known-measurements table\">runs TDX module 1.5.16 · dstack-nvidia-0.5.5 (NEAR gateway)</small>"
        ),
        "{page}"
    );
    // Without names the row has no such line.
    let statuses = BTreeMap::from([("t1".to_string(), status(State::Pass, Vec::new(), now()))]);
    let page = render(
        &generation(&["t1"]),
        &statuses,
        &Notices::default(),
        |_| None,
        now(),
    );
    assert!(!page.contains("class=\"known\""));
}

#[test]
fn names_models_and_urls_are_escaped() {
    let mut generation = generation(&["a"]);
    for target in &mut generation.config.targets {
        target.name = "a<b>\"c".into();
        if let Some(m) = target.monitor.as_mut() {
            m.model = "m<i>".into();
            m.base_url = "http://127.0.0.1/<x>".into();
        }
    }
    let page = render(
        &generation,
        &BTreeMap::new(),
        &Notices::default(),
        |_| None,
        now(),
    );
    assert!(page.contains("data-target=\"a&lt;b&gt;&quot;c\""), "{page}");
    assert!(page.contains("m&lt;i&gt;"));
    assert!(page.contains("http://127.0.0.1/&lt;x&gt;"));
    assert!(!page.contains("<b>") && !page.contains("<i>") && !page.contains("<x>"));
}

#[test]
fn rows_are_ordered_fail_unknown_pass_not_checked_then_by_name() {
    let generation = generation(&["p2", "n1", "f2", "u1", "p1", "f1", "n0"]);
    let at = now();
    let statuses = BTreeMap::from([
        ("p1".to_string(), status(State::Pass, vec![], at)),
        ("p2".to_string(), status(State::Pass, vec![], at)),
        (
            "u1".to_string(),
            status(
                State::Unknown,
                vec![check("nras_token", State::Unknown, "NRAS down")],
                at,
            ),
        ),
        (
            "f1".to_string(),
            status(State::Fail, vec![check("x", State::Fail, "bad")], at),
        ),
        (
            "f2".to_string(),
            status(State::Fail, vec![check("x", State::Fail, "bad")], at),
        ),
    ]);
    let page = render(&generation, &statuses, &Notices::default(), |_| None, now());
    assert_eq!(row_order(&page), ["f1", "f2", "u1", "p1", "p2", "n0", "n1"]);
    assert!(page.contains("data-target=\"n0\" data-state=\"none\""));
    assert!(page.contains("data-target=\"u1\" data-state=\"unknown\""));
    assert!(page.contains(">7 targets: 2 pass, 1 unknown, 2 fail, 2 not checked yet</p>"));
    assert!(page.contains("id=\"summary\" class=\"fail\""));
}

#[test]
fn failures_are_listed_before_unknowns_and_the_list_is_capped() {
    let generation = generation(&["t"]);
    let mut failing: Vec<Check> = (0..10)
        .map(|i| check(&format!("u{i}"), State::Unknown, "earlier step failed"))
        .collect();
    failing.push(check("tdx_quote_signature", State::Fail, &"r".repeat(1000)));
    let statuses = BTreeMap::from([("t".to_string(), status(State::Fail, failing, now()))]);
    let page = render(&generation, &statuses, &Notices::default(), |_| None, now());
    let first = page.find("data-check=\"tdx_quote_signature\"");
    let unknown = page.find("data-check=\"u0\"");
    assert!(first.is_some() && unknown.is_some() && first < unknown);
    assert!(!page.contains("data-check=\"u5\""));
    assert!(page.contains("and 5 more not passing"));
    assert!(page.contains(&format!("{}…", "r".repeat(MAX_REASON_CHARS))));
    assert!(!page.contains(&"r".repeat(MAX_REASON_CHARS + 1)));
}

#[test]
fn trust_roots_are_flagged() {
    let mut generation = generation(&["t"]);
    let page = render(
        &generation,
        &BTreeMap::new(),
        &Notices::default(),
        |_| None,
        now(),
    );
    assert!(page.contains("data-trust=\"production\""));
    assert!(page.contains("Production trust roots in force"));
    assert!(!page.contains("TEST ROOT"));
    // The compiled-in Intel root's hash (crates/verify/anchors/README.md).
    assert!(page.contains("44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"));
    generation.anchors.dangerous = vec!["dangerous_intel_root_ca".into()];
    generation.anchors.intel_root_der = vec![1, 2, 3];
    let page = render(
        &generation,
        &BTreeMap::new(),
        &Notices::default(),
        |_| None,
        now(),
    );
    assert!(page.contains("data-trust=\"test\""));
    assert!(page.contains("Test trust roots in force"));
    assert!(page.contains("<code>[dangerous] dangerous_intel_root_ca</code>"));
    assert_eq!(page.matches("TEST ROOT").count(), 1);
}

#[test]
fn drift_ages_and_overdue_checks_are_shown() {
    let generation = generation(&["recent", "old"]);
    let value = "ab".repeat(48);
    let drift = |hours: i64| DriftEvent {
        field: "mrtd".into(),
        node: String::new(),
        old_values: Vec::new(),
        new_value: value.clone(),
        reasons: Vec::new(),
        at: now() - chrono::Duration::hours(hours),
    };
    let mut recent = status(State::Pass, vec![], now() - chrono::Duration::seconds(90));
    recent.last_drift = Some(drift(2));
    let mut old = status(State::Pass, vec![], now());
    old.last_drift = Some(drift(48));
    let statuses = BTreeMap::from([("recent".to_string(), recent), ("old".to_string(), old)]);
    let page = render(
        &generation,
        &statuses,
        &Notices::default(),
        |name| Some(now() + chrono::Duration::minutes(if name == "old" { 5 } else { -10 })),
        now(),
    );
    let row = |name: &str| {
        page.split(&format!("<tr data-target=\"{name}\""))
            .nth(1)
            .and_then(|rest| rest.split("</tr>").next())
            .unwrap_or_default()
            .to_string()
    };
    let (recent, old) = (row("recent"), row("old"));
    // Field, shortened value with the full one in its title, and when.
    assert!(recent.contains(&format!(
        "<code>mrtd</code> → <code title=\"{value}\">{}…</code>",
        "ab".repeat(8)
    )));
    assert!(recent.contains(">2 h ago</time> (within the drift window)"));
    assert!(recent.contains("<span class=\"warn\">"));
    assert!(old.contains(">2 d ago</time>") && !old.contains("drift window"));
    // Last success and next check as ages; a next check ten minutes late is overdue.
    assert!(recent.contains(">90 s ago</time>"));
    assert!(recent.contains(">10 min ago</time> <strong class=\"warn\">overdue</strong>"));
    assert!(old.contains(">in 5 min</time>") && !old.contains("overdue"));
    assert!(recent.contains("datetime=\"2026-01-02T03:02:35Z\""));
}

#[test]
fn a_page_of_two_thousand_targets_stays_light() {
    let names: Vec<String> = (0..2000).map(|i| format!("TEE/model-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let generation = generation(&refs);
    let at = now();
    let mut statuses = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let s = match i % 100 {
            0 => status(
                State::Fail,
                vec![check(
                    "tdx_quote_signature",
                    State::Fail,
                    "signature invalid",
                )],
                at,
            ),
            1 => status(
                State::Unknown,
                vec![check("nras_token", State::Unknown, "NRAS down")],
                at,
            ),
            99 => continue,
            _ => status(State::Pass, vec![], at),
        };
        statuses.insert(name.clone(), s);
    }
    let page = render(
        &generation,
        &statuses,
        &Notices::default(),
        |_| Some(at),
        at,
    );
    let order = row_order(&page);
    assert_eq!(order.len(), 2000);
    assert_eq!(order.first().map(String::as_str), Some("TEE/model-0000"));
    assert_eq!(order.get(20).map(String::as_str), Some("TEE/model-0001"));
    assert_eq!(order.last().map(String::as_str), Some("TEE/model-1999"));
    assert!(page.contains(">2000 targets: 1940 pass, 20 unknown, 20 fail, 20 not checked yet<"));
    // Passing rows carry no lists and no URLs.
    assert_eq!(page.matches("<ul>").count(), 40);
    // About 680 bytes per passing row (anchor, state since, ages with their exact times, the
    // chats a day).
    assert!(page.len() < 1_400_000, "{} bytes", page.len());
}

#[test]
fn a_refused_reload_and_a_failing_store_are_shown_above_the_targets() {
    let generation = generation(&["a"]);
    let quiet = render(
        &generation,
        &BTreeMap::new(),
        &Notices::default(),
        |_| None,
        now(),
    );
    assert!(!quiet.contains("reload-refused") && !quiet.contains("store-failure"));
    let notices = Notices {
        reload_refused: Some(super::super::runner::ReloadRefusal {
            at: now() - chrono::Duration::seconds(30),
            reason: "target \"a\": the cron expression \"0 0 30 2 *\" never fires".into(),
        }),
        store_failure: Some(super::super::runner::StoreFailure {
            at: now() - chrono::Duration::seconds(5),
            target: "<a>".into(),
            error: "store query failed: no such table: bundles".into(),
        }),
    };
    let page = render(&generation, &BTreeMap::new(), &notices, |_| None, now());
    let reload = page
        .split("<p id=\"reload-refused\"")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no refused reload:\n{page}"));
    assert!(
        reload.contains("the cron expression &quot;0 0 30 2 *&quot; never fires"),
        "{reload}"
    );
    assert!(reload.contains("(generation 1) stays in force"), "{reload}");
    let store = page
        .split("<p id=\"store-failure\"")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no store failure:\n{page}"));
    assert!(store.contains("of &lt;a&gt; failed"), "{store}");
    assert!(store.contains("no such table: bundles"), "{store}");
    assert!(page.find("store-failure") < page.find("id=\"targets\""));
}

#[test]
fn long_hex_in_reasons_is_shortened_with_the_whole_value_in_its_title() {
    let nonce = "0123456789abcdef".repeat(4);
    let other = "fedcba9876543210".repeat(4);
    let reason = format!(
        "REPORTDATA[32..64) is {other}, expected the nonce {nonce}; a short deadbeef stays & <b>"
    );
    let html = reason_html(&reason, MAX_REASON_CHARS);
    assert_eq!(
        html,
        format!(
            "REPORTDATA[32..64) is <span class=\"hex\" title=\"{other}\">fedcba98…76543210</span>, \
             expected the nonce <span class=\"hex\" title=\"{nonce}\">01234567…89abcdef</span>; \
             a short deadbeef stays &amp; &lt;b&gt;"
        )
    );
    // A run of exactly LONG_HEX digits is shortened, one digit fewer is not; 0x stays outside.
    let at_limit = "a".repeat(LONG_HEX);
    assert!(reason_html(&format!("0x{at_limit}"), 300).starts_with("0x<span class=\"hex\""));
    let below = "a".repeat(LONG_HEX - 1);
    assert_eq!(reason_html(&below, 300), below);
    // The cut counts shown characters: a shortened run is 17 of them.
    let many = format!("{nonce} ").repeat(40);
    let cut = reason_html(&many, 40);
    assert_eq!(cut.matches("class=\"hex\"").count(), 3, "{cut}");
    assert!(cut.ends_with('…'), "{cut}");
    assert_eq!(reason_html("héllo wörld", 5), "héllo…");
    assert_eq!(reason_html("", 5), "");
}

#[test]
fn rows_carry_an_anchor_and_the_time_their_state_began() {
    let generation = generation(&["TEE/a b", "never", "a&b<c>"]);
    let mut failing = status(
        State::Fail,
        vec![check("tdx_quote_signature", State::Fail, "bad")],
        now(),
    );
    failing.state_since = now() - chrono::Duration::hours(3);
    let statuses = BTreeMap::from([("TEE/a b".to_string(), failing)]);
    let page = render(&generation, &statuses, &Notices::default(), |_| None, now());
    assert!(
        page.contains(
            "<tr data-target=\"TEE/a b\" data-state=\"fail\" id=\"target-TEE/a b\"><th scope=\"row\">"
        ),
        "{page}"
    );
    assert!(page.contains(
        "<td class=\"since\"><time datetime=\"2026-01-02T00:04:05Z\" \
         title=\"2026-01-02T00:04:05Z\">3 h ago</time></td>"
    ));
    assert!(page.contains("id=\"target-never\""));
    assert!(page.contains("<td class=\"since\">—</td>"));
    assert!(page.contains("<th scope=\"col\">since</th>"));
    // The anchor is the name as it is; the attribute holds it escaped.
    assert_eq!(anchor("a&b<c>"), "target-a&b<c>");
    assert!(
        page.contains(" id=\"target-a&amp;b&lt;c&gt;\"><th"),
        "{page}"
    );
}
