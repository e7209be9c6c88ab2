//! PCS answers become the same collateral the real vectors were assembled into, and it verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use teewatch::fetch::pccs::{PccsAnswers, PccsError, collateral_json};

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(common::repo_path(&format!(
        "tests/vectors/tdx/automata-dcap-rs/{name}"
    )))
    .unwrap()
}

fn header(pem: &[u8]) -> String {
    utf8_percent_encode(std::str::from_utf8(pem).unwrap(), NON_ALPHANUMERIC).to_string()
}

fn automata_answers() -> PccsAnswers {
    let chain = vector("tcb_signing_cert.pem");
    PccsAnswers {
        tcb_info_body: vector("tcbinfov3_00806f050000.json"),
        tcb_info_issuer_chain: header(&chain),
        qe_identity_body: vector("qeidentityv2_apiv4.json"),
        qe_identity_issuer_chain: header(&chain),
        pck_crl_body: vector("pck_platform_crl.der"),
        pck_crl_issuer_chain: header(&vector("pck_certchain.pem")),
        // A PCCS's /rootcacrl answers with hex text.
        root_ca_crl_body: hex::encode(vector("intel_root_ca_crl.der")).into_bytes(),
    }
}

#[test]
fn real_pcs_answers_assemble_into_collateral_that_verifies() {
    let collateral = collateral_json(&automata_answers()).unwrap();
    let assembled: Value =
        serde_json::from_slice(&vector("assembled_dcap_qvl_collateral.json")).unwrap();
    for key in [
        "tcb_info",
        "tcb_info_signature",
        "qe_identity",
        "qe_identity_signature",
        "pck_crl",
        "root_ca_crl",
    ] {
        assert_eq!(collateral[key], assembled[key], "{key}");
    }
    // The collateral judges the automata quote exactly as the assembled vector does.
    let mut bundle = common::bundle_json("automata-outofdate");
    bundle["tdx_collateral"] = collateral;
    let v = common::verdict(&common::from_json(bundle));
    assert_eq!(
        common::state(&v, "tdx_quote_signature"),
        teewatch::verify::State::Pass
    );
    assert!(common::reason(&v, "tdx_tcb_status").contains("found OutOfDate"));
}

#[test]
fn malformed_answers_name_the_part() {
    let mut answers = automata_answers();
    answers.tcb_info_body = b"{\"tcbInfo\": 1}".to_vec();
    assert_eq!(
        collateral_json(&answers),
        Err(PccsError::Shape {
            part: "tcb info",
            key: "tcbInfo"
        })
    );
    let mut answers = automata_answers();
    answers.pck_crl_body = b"not a crl".to_vec();
    assert!(matches!(
        collateral_json(&answers),
        Err(PccsError::Crl {
            part: "pck crl",
            ..
        })
    ));
    let mut answers = automata_answers();
    answers.qe_identity_body = b"<html>".to_vec();
    assert!(matches!(
        collateral_json(&answers),
        Err(PccsError::NotJson {
            part: "qe identity",
            ..
        })
    ));
}
