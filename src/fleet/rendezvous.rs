//! Rendezvous (highest-random-weight) hashing: which live instance owns a target in shard mode.
//!
//! Each (target, instance) pair gets a score from a hash; the instance with the highest score
//! owns the target. Every instance computes the same answer from the same list of live peers
//! with no coordination, the targets spread evenly, and when an instance dies only the targets
//! it owned move (each to the instance with the next-highest score), while when one joins it
//! takes only the targets it now scores highest on. Pure: no clock, no I/O.

use sha2::{Digest, Sha256};

/// The score of `instance` for `target`: the first 8 bytes of SHA-256 over both names,
/// separated by a NUL (which neither name can contain), so ("ab", "c") and ("a", "bc") differ.
pub fn score(target: &str, instance: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(target.as_bytes());
    h.update([0u8]);
    h.update(instance.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    for (slot, byte) in first.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    u64::from_be_bytes(first)
}

/// The owner of `target` among `instances` (the live ones): the highest score, ties (never seen
/// in practice) broken by the larger name so every instance still agrees. `None` when no
/// instance is live.
pub fn owner<'a, S: AsRef<str>>(target: &str, instances: &'a [S]) -> Option<&'a str> {
    instances.iter().map(AsRef::as_ref).max_by(|a, b| {
        score(target, a)
            .cmp(&score(target, b))
            .then_with(|| a.cmp(b))
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("target-{i:04}.example")).collect()
    }

    fn assignment<'a>(targets: &'a [String], live: &'a [&str]) -> BTreeMap<&'a str, &'a str> {
        targets
            .iter()
            .map(|t| {
                (
                    t.as_str(),
                    owner(t, live).unwrap_or_else(|| panic!("no owner")),
                )
            })
            .collect()
    }

    #[test]
    fn the_owner_is_stable_and_independent_of_the_peers_order() {
        let live = ["mon-a", "mon-b", "mon-c"];
        let reversed = ["mon-c", "mon-b", "mon-a"];
        for t in names(200) {
            let first = owner(&t, &live);
            assert_eq!(first, owner(&t, &live));
            assert_eq!(first, owner(&t, &reversed));
        }
        assert_eq!(owner::<&str>("x", &[]), None);
        assert_eq!(owner("x", &["only"]), Some("only"));
    }

    #[test]
    fn two_thousand_targets_spread_evenly_over_three_instances() {
        let targets = names(2000);
        let live = ["mon-a", "mon-b", "mon-c"];
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for owner in assignment(&targets, &live).values() {
            *counts.entry(owner).or_default() += 1;
        }
        // 666.7 expected each; a binomial's standard deviation here is 21, so 15 % (100) is
        // five deviations.
        assert_eq!(counts.len(), 3, "{counts:?}");
        for (peer, n) in &counts {
            assert!(
                (567..=767).contains(n),
                "{peer} owns {n} of 2000: {counts:?}"
            );
        }
    }

    #[test]
    fn only_a_dead_instances_targets_move() {
        let targets = names(2000);
        let before = assignment(&targets, &["mon-a", "mon-b", "mon-c"]);
        let after = assignment(&targets, &["mon-a", "mon-c"]);
        let mut moved = 0;
        for t in &targets {
            let (was, is) = (before[t.as_str()], after[t.as_str()]);
            if was == "mon-b" {
                assert_ne!(is, "mon-b");
                moved += 1;
            } else {
                assert_eq!(was, is, "{t} moved from a live instance");
            }
        }
        assert!(moved > 500, "mon-b owned {moved}");
        // And a joining instance takes targets only for itself.
        let joined = assignment(&targets, &["mon-a", "mon-b", "mon-c", "mon-d"]);
        for t in &targets {
            let (was, is) = (before[t.as_str()], joined[t.as_str()]);
            assert!(was == is || is == "mon-d", "{t}: {was} -> {is}");
        }
    }

    #[test]
    fn the_separator_keeps_name_pairs_apart() {
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }
}
