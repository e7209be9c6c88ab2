//! The simulator's two Intel platforms through its HTTP interface: the PCCS answers TCB info for
//! both FMSPCs and no other, and a NEAR response's gateway quote comes from the second platform
//! while its model quotes, and the compose managers' quotes made by those same TDs, come from the
//! first, each verifying with dcap-qvl under its own platform's collateral only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use chrono::Utc;
use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;
use serde_json::Value;

use super::Simulator;
use super::tests::{attest, client, start};
use crate::faults::Fault;
use crate::format::SimFormat;
use crate::intel::{Platform, TCB_INFO_ISSUER_CHAIN_HEADER, TCB_INFO_PATH, TcbStatusChoice};
use teewatch_verify::hexutil;

/// The FMSPCs written out, so the tests do not only compare the code with itself.
const FIRST_FMSPC: [u8; 6] = [0x7e, 0x57, 0x00, 0x00, 0x00, 0x00];
const SECOND_FMSPC: [u8; 6] = [0x7e, 0x57, 0x00, 0x00, 0x00, 0x01];

/// A part's quote: `intel_quote`, or `quote` for a compose manager.
fn quote_of(part: &Value) -> Vec<u8> {
    let field = part.get("intel_quote").unwrap_or(&part["quote"]);
    hexutil::decode(field.as_str().unwrap()).unwrap()
}

/// The PCK leaf certificate a quote embeds (the first PEM of its certification data), which
/// names the platform that made it.
fn pck_leaf(part: &Value) -> String {
    let quote = quote_of(part);
    let text = String::from_utf8_lossy(&quote).into_owned();
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap();
    text[start..start + end].to_string()
}

/// The FMSPC of the PCK certificate a part's quote embeds, as dcap-qvl reads it.
fn fmspc_of(part: &Value) -> [u8; 6] {
    let parsed = dcap_qvl::quote::Quote::parse(&quote_of(part)).unwrap();
    dcap_qvl::intel::quote_fmspc(&parsed).unwrap()
}

fn collateral(sim: &Simulator, platform: Platform) -> QuoteCollateralV3 {
    let value = sim
        .state
        .intel
        .collateral_on(platform, TcbStatusChoice::UpToDate)
        .unwrap();
    serde_json::from_value(value).unwrap()
}

/// Whether dcap-qvl accepts a part's quote under the test root with `platform`'s collateral.
fn verifies_on(sim: &Simulator, part: &Value, platform: Platform) -> bool {
    let now = u64::try_from(Utc::now().timestamp()).unwrap();
    QuoteVerifier::new(sim.state.intel.root_der().to_vec())
        .verify(&quote_of(part), &collateral(sim, platform), now)
        .is_ok()
}

async fn tcb_info(sim: &Simulator, query: &str) -> reqwest::Response {
    client(sim)
        .get(format!("{}{TCB_INFO_PATH}{query}", sim.base_url))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pccs_serves_tcb_info_for_both_fmspcs_and_404_for_others() {
    let sim = start(Vec::new(), 1, false).await;
    assert_eq!(sim.state.intel.fmspcs(), [FIRST_FMSPC, SECOND_FMSPC]);
    for (query, platform, fmspc) in [
        ("?fmspc=7e5700000000", Platform::First, "7E5700000000"),
        (
            "?fmspc=7E5700000001&update=standard",
            Platform::Second,
            "7E5700000001",
        ),
    ] {
        let response = tcb_info(&sim, query).await;
        assert_eq!(response.status(), 200, "{query}");
        assert!(
            response
                .headers()
                .contains_key(TCB_INFO_ISSUER_CHAIN_HEADER)
        );
        let body = response.text().await.unwrap();
        let served = sim
            .state
            .intel
            .pccs_on(platform, TcbStatusChoice::UpToDate)
            .unwrap();
        assert_eq!(body, served.tcb_info_body);
        let tcb: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(tcb["tcbInfo"]["fmspc"], fmspc);
    }

    // The TCB status faults change every platform's TCB info alike.
    for (fault, status) in [
        (Fault::TcbOutdated, TcbStatusChoice::OutOfDate),
        (Fault::TcbRevoked, TcbStatusChoice::Revoked),
    ] {
        sim.state.set_fault(None, fault, true).unwrap();
        for platform in Platform::ALL {
            let query = format!("?fmspc={}", hex::encode_upper(platform.fmspc()));
            let body = tcb_info(&sim, &query).await.text().await.unwrap();
            let expected = sim.state.intel.pccs_on(platform, status).unwrap();
            assert_eq!(body, expected.tcb_info_body, "{query} {status:?}");
        }
        sim.state.set_fault(None, fault, false).unwrap();
    }

    for unknown in ["?fmspc=7E5700000002", "?fmspc=b0c06f000000"] {
        assert_eq!(tcb_info(&sim, unknown).await.status(), 404, "{unknown}");
    }
    for malformed in ["", "?fmspc=7E57", "?fmspc=zz5700000000", "?update=standard"] {
        assert_eq!(tcb_info(&sim, malformed).await.status(), 400, "{malformed}");
    }
}

#[tokio::test]
async fn near_gateway_quotes_on_the_second_platform_and_compose_managers_on_their_nodes() {
    let formats = vec![
        SimFormat::NearGateway,
        SimFormat::NearDirect,
        SimFormat::Dstack,
    ];
    let sim = start(formats, 2, false).await;
    let nonce = [0x3c; 32];

    let report = attest(&sim, 0, &nonce, None).await;
    let gateway = &report["gateway_attestation"];
    assert_eq!(fmspc_of(gateway), SECOND_FMSPC);
    assert!(verifies_on(&sim, gateway, Platform::Second));
    assert!(!verifies_on(&sim, gateway, Platform::First));
    let models = report["model_attestations"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for model in models {
        assert_eq!(fmspc_of(model), FIRST_FMSPC);
        assert!(verifies_on(&sim, model, Platform::First));
        assert!(!verifies_on(&sim, model, Platform::Second));
        // The model's compose manager is quoted by the same TD, so on the same platform and PCK.
        let manager = &model["compose_manager_attestation"];
        assert_eq!(fmspc_of(manager), FIRST_FMSPC);
        assert!(verifies_on(&sim, manager, Platform::First));
        assert!(!verifies_on(&sim, manager, Platform::Second));
        assert_eq!(pck_leaf(manager), pck_leaf(model));
    }
    assert_ne!(pck_leaf(gateway), pck_leaf(&models[0]));

    let direct = attest(&sim, 1, &nonce, None).await;
    assert_eq!(fmspc_of(&direct), FIRST_FMSPC);
    let manager = &direct["compose_manager_attestation"];
    assert_eq!(fmspc_of(manager), FIRST_FMSPC);
    assert!(verifies_on(&sim, manager, Platform::First));
    assert!(!verifies_on(&sim, manager, Platform::Second));
    assert_eq!(pck_leaf(manager), pck_leaf(&direct));
    for part in direct["all_attestations"].as_array().unwrap() {
        assert_eq!(fmspc_of(part), FIRST_FMSPC);
    }

    let dstack = attest(&sim, 2, &nonce, None).await;
    assert_eq!(fmspc_of(&dstack), FIRST_FMSPC);
    for part in dstack["all_attestations"].as_array().unwrap() {
        assert_eq!(fmspc_of(part), FIRST_FMSPC);
    }

    // The bad-quote-signature fault reaches the gateway on its own platform: the quote still
    // names the second FMSPC but no longer verifies with that platform's collateral.
    sim.state
        .set_fault(None, Fault::BadQuoteSignature, true)
        .unwrap();
    let report = attest(&sim, 0, &nonce, None).await;
    let gateway = &report["gateway_attestation"];
    assert_eq!(fmspc_of(gateway), SECOND_FMSPC);
    assert!(!verifies_on(&sim, gateway, Platform::Second));
}
