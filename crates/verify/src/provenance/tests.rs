//! Unit tests of the pure pieces: the identity judgement, the RFC 9162 inclusion walk against
//! a tree built here, the signed-entry-timestamp payload's exact bytes and the DSSE encoding.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

fn id(issuer: &str, subject: &str) -> SignerIdentity {
    SignerIdentity {
        issuer: issuer.into(),
        subject: subject.into(),
    }
}

fn allow(issuer: &str, subject: &str) -> AllowedIdentity {
    AllowedIdentity {
        issuer: issuer.into(),
        subject: subject.into(),
    }
}

const GH: &str = "https://token.actions.githubusercontent.com";
const WF: &str = "https://github.com/org/repo/.github/workflows/build.yml@refs/tags/v1.2.3";

#[test]
fn identity_exact_and_prefix_forms() {
    let found = id(GH, WF);
    assert_eq!(judge_identity(&found, &[allow(GH, WF)]), Ok(()));
    assert_eq!(
        judge_identity(
            &found,
            &[allow(
                GH,
                "https://github.com/org/repo/.github/workflows/build.yml@refs/tags/*"
            )]
        ),
        Ok(())
    );
    // Another workflow of the same repository.
    let other = id(
        GH,
        "https://github.com/org/repo/.github/workflows/evil.yml@refs/tags/v1.2.3",
    );
    let Err(ProvenanceError::IdentityNotAllowed(m)) = judge_identity(&other, &[allow(GH, WF)])
    else {
        panic!("another workflow must not be allowed");
    };
    assert!(
        m.starts_with("expected https://github.com/org/repo/.github/workflows/build.yml"),
        "{m}"
    );
    assert!(
        m.contains("found https://github.com/org/repo/.github/workflows/evil.yml"),
        "{m}"
    );
    // The same subject from another issuer.
    assert!(matches!(
        judge_identity(&id("https://accounts.google.com", WF), &[allow(GH, WF)]),
        Err(ProvenanceError::IdentityNotAllowed(_))
    ));
    // A bare `*` allows nobody; an empty list allows nobody.
    assert!(judge_identity(&found, &[allow(GH, "*")]).is_err());
    assert!(judge_identity(&found, &[]).is_err());
}

/// The RFC 9162 tree hash of `leaves` (the definition, recursively), to check the walk.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [one] => *one,
        _ => {
            let mut k = 1;
            while k * 2 < leaves.len() {
                k *= 2;
            }
            let (l, r) = leaves.split_at(k);
            node_hash(&mth(l), &mth(r))
        }
    }
}

/// The audit path of leaf `m` (RFC 9162 §2.1.3.1, the definition).
fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let mut k = 1;
    while k * 2 < leaves.len() {
        k *= 2;
    }
    let (l, r) = leaves.split_at(k);
    if m < k {
        let mut p = path(m, l);
        p.push(mth(r));
        p
    } else {
        let mut p = path(m - k, r);
        p.push(mth(l));
        p
    }
}

#[test]
fn inclusion_walk_matches_the_definition_for_every_leaf_of_small_trees() {
    for n in 1..=33usize {
        let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let root = mth(&leaves);
        for (m, leaf) in leaves.iter().enumerate() {
            let p = path(m, &leaves);
            assert_eq!(
                root_from_inclusion_proof(m as u64, n as u64, leaf, &p),
                Ok(root),
                "leaf {m} of {n}"
            );
            // One hash too many and one too few are refused, never walked.
            let mut long = p.clone();
            long.push([7; 32]);
            assert!(root_from_inclusion_proof(m as u64, n as u64, leaf, &long).is_err());
            if let Some((_, short)) = p.split_last() {
                let e = root_from_inclusion_proof(m as u64, n as u64, leaf, short).unwrap_err();
                assert!(e.contains(&format!("a path of {} hashes", p.len())), "{e}");
            }
        }
    }
    assert!(root_from_inclusion_proof(5, 5, &[0; 32], &[]).is_err());
}

#[test]
fn set_payload_is_the_canonical_json_rekor_signs() {
    assert_eq!(
        String::from_utf8(set_payload("eyJh", 1700000000, "c0d2", 42)).unwrap(),
        r#"{"body":"eyJh","integratedTime":1700000000,"logID":"c0d2","logIndex":42}"#
    );
}

#[test]
fn dsse_pae_counts_bytes() {
    assert_eq!(dsse_pae("a/b", b"hi"), b"DSSEv1 3 a/b 2 hi".to_vec());
}
