//! The vantage-point families, rendered from each target's latest [`Comparison`]
//! (`crate::vantage`): `teewatch_vantage_state{target, vantage}` and
//! `teewatch_vantage_disagreement{target, check}`.
//!
//! Cardinality: a state series per vantage point that counts (reported within the last two
//! intervals), so a retired vantage point leaves the scrape two intervals after its last check;
//! a disagreement series per (target, check) that has disagreed since the process started, 1
//! while it disagrees and 0 afterwards. Not one per check compared: that would be as many
//! series as `teewatch_check_state` again for every target, all 0 almost always, where a
//! disagreement is rare; an alert on `== 1` needs only the series that can be 1, and the 0
//! after a disagreement lets the alert resolve and a dashboard show when it ended. The
//! remembered pairs are bounded by the configured targets times the fixed check names (a name
//! outside them is `other`), and a target a reload removed leaves no series.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use super::labels::{self, INVALID};
use super::state_code;
use super::target::escape;
use crate::vantage::{Comparison, MEASUREMENTS};

pub(super) const STATE: &str = "teewatch_vantage_state";
pub(super) const DISAGREEMENT: &str = "teewatch_vantage_disagreement";

const STATE_HELP: &str = "State of the target's latest check from each vantage point that \
    reported within the last two intervals: 0 pass, 1 unknown, 2 fail.";
const DISAGREEMENT_HELP: &str = "1 while the latest checks of the target from the vantage \
    points that reported within the last two intervals disagree on the check (a verdict check, \
    or measurements), 0 after; a series exists once the pair has disagreed since the start.";

/// The longest vantage label exported (the configuration allows no longer).
const MAX_VANTAGE: usize = 64;

/// The vantage families of every target.
#[derive(Default)]
pub(super) struct VantageMetrics {
    inner: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    /// The configured targets, once known: comparisons for other targets are ignored.
    configured: Option<BTreeSet<String>>,
    targets: BTreeMap<String, TargetVantage>,
}

#[derive(Default)]
struct TargetVantage {
    /// Vantage label → state code.
    states: BTreeMap<String, i64>,
    /// Check label → disagreeing now.
    disagreement: BTreeMap<Cow<'static, str>, bool>,
}

/// The `vantage` label: `[A-Za-z0-9._-]{1,64}` as `[daemon] vantage` allows, else `invalid`
/// (a label read back from a shared store is not trusted to be one).
pub fn vantage_label(raw: &str) -> Cow<'_, str> {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_VANTAGE
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Cow::Borrowed(raw)
    } else {
        Cow::Borrowed(INVALID)
    }
}

/// The `check` label: a fixed check name, `pin:<field>`, `measurements`, or `other`.
fn check_label(raw: &str) -> Cow<'static, str> {
    if raw == MEASUREMENTS {
        Cow::Borrowed(MEASUREMENTS)
    } else {
        labels::check_name(raw)
    }
}

impl VantageMetrics {
    /// Sets the target's series from its latest comparison: the states of the vantage points
    /// that count, and every remembered disagreement to whether it holds now.
    pub(super) fn set(&self, target: &str, comparison: &Comparison) {
        let mut tracked = crate::sync::lock(&self.inner);
        if tracked
            .configured
            .as_ref()
            .is_some_and(|c| !c.contains(target))
        {
            return;
        }
        let entry = tracked.targets.entry(target.to_string()).or_default();
        entry.states.clear();
        for (vantage, state) in &comparison.counted {
            let code = state_code(*state);
            let slot = entry
                .states
                .entry(vantage_label(vantage).into_owned())
                .or_insert(code);
            // Two labels that both read `invalid` show the worse state.
            *slot = (*slot).max(code);
        }
        entry.disagreement.values_mut().for_each(|now| *now = false);
        for check in comparison.disagreements.keys() {
            entry.disagreement.insert(check_label(check), true);
        }
    }

    /// Removes the series of every target not in `names`; later comparisons of those targets
    /// are ignored.
    pub(super) fn retain_targets(&self, names: &BTreeSet<String>) {
        let mut tracked = crate::sync::lock(&self.inner);
        tracked.targets.retain(|name, _| names.contains(name));
        tracked.configured = Some(names.clone());
    }

    /// The number of samples.
    pub(super) fn samples(&self) -> usize {
        crate::sync::lock(&self.inner)
            .targets
            .values()
            .map(|t| t.states.len() + t.disagreement.len())
            .sum()
    }

    /// Appends both families in the text format (each left out while it has no series).
    pub(super) fn render(&self, out: &mut String) {
        let tracked = crate::sync::lock(&self.inner);
        let mut lines = String::new();
        for (target, series) in &tracked.targets {
            let target = escape(target);
            for (check, now) in &series.disagreement {
                let check = escape(check);
                let _ = writeln!(
                    lines,
                    "{DISAGREEMENT}{{check=\"{check}\",target=\"{target}\"}} {}",
                    u8::from(*now)
                );
            }
        }
        family(out, DISAGREEMENT, DISAGREEMENT_HELP, &lines);
        lines.clear();
        for (target, series) in &tracked.targets {
            let target = escape(target);
            for (vantage, code) in &series.states {
                let vantage = escape(vantage);
                let _ = writeln!(
                    lines,
                    "{STATE}{{target=\"{target}\",vantage=\"{vantage}\"}} {code}"
                );
            }
        }
        family(out, STATE, STATE_HELP, &lines);
    }
}

fn family(out: &mut String, name: &str, help: &str, lines: &str) {
    if lines.is_empty() {
        return;
    }
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    out.push_str(lines);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vantage::Disagreement;
    use crate::verify::State;

    fn comparison(states: &[(&str, State)], disagreeing: &[&str]) -> Comparison {
        Comparison {
            counted: states.iter().map(|(v, s)| (v.to_string(), *s)).collect(),
            disagreements: disagreeing
                .iter()
                .map(|c| {
                    let d = Disagreement {
                        check: c.to_string(),
                        on: Vec::new(),
                        seen: BTreeMap::new(),
                    };
                    (c.to_string(), d)
                })
                .collect(),
            ..Comparison::default()
        }
    }

    fn rendered(m: &VantageMetrics) -> String {
        let mut out = String::new();
        m.render(&mut out);
        out
    }

    #[test]
    fn a_disagreement_is_one_while_it_holds_and_zero_after() {
        let m = VantageMetrics::default();
        m.set("t", &comparison(&[("eu-1", State::Pass)], &[]));
        assert_eq!(
            rendered(&m),
            format!(
                "# HELP {STATE} {STATE_HELP}\n# TYPE {STATE} gauge\n\
                 {STATE}{{target=\"t\",vantage=\"eu-1\"}} 0\n"
            )
        );
        m.set(
            "t",
            &comparison(
                &[("eu-1", State::Pass), ("us-1", State::Fail)],
                &["tls_key_binding", MEASUREMENTS],
            ),
        );
        let text = rendered(&m);
        assert!(text.contains(&format!(
            "{DISAGREEMENT}{{check=\"measurements\",target=\"t\"}} 1\n\
             {DISAGREEMENT}{{check=\"tls_key_binding\",target=\"t\"}} 1\n"
        )));
        assert!(text.contains(&format!("{STATE}{{target=\"t\",vantage=\"us-1\"}} 2\n")));
        // Agreement again: the pairs stay, at 0; a vantage point that stopped counting leaves.
        m.set("t", &comparison(&[("eu-1", State::Pass)], &[]));
        let text = rendered(&m);
        assert!(text.contains(&format!(
            "{DISAGREEMENT}{{check=\"tls_key_binding\",target=\"t\"}} 0\n"
        )));
        assert!(!text.contains("us-1"), "{text}");
        assert_eq!(m.samples(), 3);
    }

    #[test]
    fn labels_outside_their_shapes_are_bounded() {
        let m = VantageMetrics::default();
        m.set(
            "t\"x",
            &comparison(
                &[("bad label\n", State::Fail), ("", State::Pass)],
                &["made_up_check", "pin:mrtd"],
            ),
        );
        let text = rendered(&m);
        assert!(
            text.contains("check=\"other\",target=\"t\\\"x\"} 1"),
            "{text}"
        );
        assert!(text.contains("check=\"pin:mrtd\""), "{text}");
        assert!(text.contains("vantage=\"invalid\"} 2"), "{text}");
        assert_eq!(text.matches("vantage=").count(), 1, "{text}");
    }

    #[test]
    fn a_target_a_reload_removed_leaves_no_series_and_stays_out() {
        let m = VantageMetrics::default();
        m.set(
            "gone",
            &comparison(&[("eu-1", State::Pass)], &["tls_key_binding"]),
        );
        m.retain_targets(&BTreeSet::from(["kept".to_string()]));
        assert_eq!(rendered(&m), "");
        m.set("gone", &comparison(&[("eu-1", State::Pass)], &[]));
        m.set("kept", &comparison(&[("eu-1", State::Pass)], &[]));
        let text = rendered(&m);
        assert!(!text.contains("gone") && text.contains("kept"), "{text}");
    }
}
