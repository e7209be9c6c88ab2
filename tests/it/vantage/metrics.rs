//! The vantage families in a whole scrape pass `promtool check metrics`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use teewatch::metrics::Metrics;
use teewatch::vantage::{Comparison, Disagreement, MEASUREMENTS};
use teewatch::verify::State;

fn disagreement(check: &str) -> (String, Disagreement) {
    let d = Disagreement {
        check: check.to_string(),
        on: vec!["answer".to_string()],
        seen: BTreeMap::new(),
    };
    (check.to_string(), d)
}

#[test]
fn a_rendered_vantage_scrape_passes_promtool_check_metrics() {
    let metrics = Metrics::new().unwrap();
    metrics.set_vantage(
        "TEE/model \"a\"",
        &Comparison {
            counted: BTreeMap::from([
                ("eu-1".to_string(), State::Pass),
                ("us-1".to_string(), State::Fail),
                ("ap-1".to_string(), State::Unknown),
            ]),
            disagreements: [disagreement("tls_key_binding"), disagreement(MEASUREMENTS)]
                .into_iter()
                .collect(),
            ..Comparison::default()
        },
    );
    metrics.set_vantage(
        "model-b",
        &Comparison {
            counted: BTreeMap::from([("eu-1".to_string(), State::Pass)]),
            ..Comparison::default()
        },
    );
    let scrape = metrics.render().unwrap();
    for line in [
        "teewatch_vantage_disagreement{check=\"measurements\",target=\"TEE/model \\\"a\\\"\"} 1",
        "teewatch_vantage_disagreement{check=\"tls_key_binding\",target=\"TEE/model \\\"a\\\"\"} 1",
        "teewatch_vantage_state{target=\"TEE/model \\\"a\\\"\",vantage=\"us-1\"} 2",
        "teewatch_vantage_state{target=\"model-b\",vantage=\"eu-1\"} 0",
    ] {
        assert!(scrape.lines().any(|l| l == line), "{line}\n{scrape}");
    }
    crate::common::promtool::assert_clean(&scrape);
}
