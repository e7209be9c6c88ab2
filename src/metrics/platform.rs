//! Which platforms each target runs on, for `teewatch_target_platform_info{target, fmspc}`.
//!
//! The collateral gauges are keyed by platform (`fmspc`) alone, since one collateral serves
//! every target on a platform; an alert about a platform's collateral can name the targets it
//! affects only by joining on a series that maps targets to platforms. The platforms of a
//! target are those whose collateral its latest check used (the FMSPCs of its bundle's
//! `tdx_collateral`, [`super::collateral_expiries`]), so the join meets exactly the platforms the
//! collateral gauges were set from. That also bounds the family: the daemon fetches collateral
//! only for its targets' quotes, and a PCCS serves it only for real platforms, so a target has
//! one series per platform its nodes run on (one, or two for a NEAR gateway on another platform
//! than its models).

use std::collections::BTreeSet;

use super::{Metrics, labels};

impl Metrics {
    /// Sets the platforms the target's latest check used collateral of, replacing the previous
    /// set: a platform no longer among them loses its series, and a check that used no
    /// collateral (no quote arrived) leaves none. An FMSPC that is not exactly 12 hex digits is
    /// ignored; a target a reload removed is left alone.
    pub fn set_target_platforms<'a>(
        &self,
        target: &str,
        fmspcs: impl IntoIterator<Item = &'a str>,
    ) {
        let platforms: BTreeSet<String> = fmspcs.into_iter().filter_map(labels::fmspc).collect();
        if let Some(r) = self.reference() {
            r.set_target_platforms(target, platforms.iter().map(String::as_str));
        }
        self.update(target, |t| t.set_platforms(platforms));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The `teewatch_target_platform_info` lines of a scrape.
    fn platform_lines(m: &Metrics) -> Vec<String> {
        m.render()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("teewatch_target_platform_info{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn one_series_per_target_and_platform_in_lowercase() {
        let m = Metrics::new().unwrap();
        m.set_target_platforms("gw", ["B0C06F000000", "00a067110000", "b0c06f000000"]);
        m.set_target_platforms("model", ["b0c06f000000"]);
        assert_eq!(
            platform_lines(&m),
            [
                r#"teewatch_target_platform_info{fmspc="00a067110000",target="gw"} 1"#,
                r#"teewatch_target_platform_info{fmspc="b0c06f000000",target="gw"} 1"#,
                r#"teewatch_target_platform_info{fmspc="b0c06f000000",target="model"} 1"#,
            ]
        );
    }

    #[test]
    fn a_changed_platform_replaces_the_old_series_and_no_collateral_leaves_none() {
        let m = Metrics::new().unwrap();
        m.set_target_platforms("t", ["b0c06f000000"]);
        m.set_target_platforms("t", ["00a067110000"]);
        assert_eq!(
            platform_lines(&m),
            [r#"teewatch_target_platform_info{fmspc="00a067110000",target="t"} 1"#]
        );
        m.set_target_platforms("t", []);
        assert_eq!(platform_lines(&m), Vec::<String>::new());
    }

    #[test]
    fn a_malformed_fmspc_is_not_a_label() {
        let m = Metrics::new().unwrap();
        m.set_target_platforms(
            "t",
            [
                "B0C06F00000",
                "b0c06f000000\"",
                "zz0c06f00000",
                "00a067110000",
            ],
        );
        assert_eq!(
            platform_lines(&m),
            [r#"teewatch_target_platform_info{fmspc="00a067110000",target="t"} 1"#]
        );
    }

    #[test]
    fn a_dropped_target_loses_its_platforms_and_cannot_bring_them_back() {
        let m = Metrics::new().unwrap();
        m.set_target_platforms("kept", ["b0c06f000000"]);
        m.set_target_platforms("dropped", ["b0c06f000000", "00a067110000"]);
        m.retain_targets(&["kept".to_string()]);
        let kept = [r#"teewatch_target_platform_info{fmspc="b0c06f000000",target="kept"} 1"#];
        assert_eq!(platform_lines(&m), kept);
        // A check of the dropped target that was still running when the reload came.
        m.set_target_platforms("dropped", ["b0c06f000000"]);
        assert_eq!(platform_lines(&m), kept);
    }
}
