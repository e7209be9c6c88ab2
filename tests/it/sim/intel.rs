//! The simulator's test Intel PKI: its quotes and collateral verify with dcap-qvl under the test
//! root (UpToDate, OutOfDate, Revoked as chosen), fail under Intel's real root, and read back
//! field for field; its PCCS answers carry the same bytes as its collateral.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use chrono::{DateTime, Duration, Utc};
use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;
use serde_json::Value;
use teewatch::verify::dcap::{CollateralCache, TcbOutcome, verify_quote};
use teewatch::verify::verdict::Outcome;
use teewatch_sim::intel::{
    IntelTestPki, OUT_OF_DATE_ADVISORY, TcbStatusChoice, TdBody, header_value,
};

fn secs(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap()
}

fn collateral(pki: &IntelTestPki, status: TcbStatusChoice) -> QuoteCollateralV3 {
    serde_json::from_value(pki.collateral(status).unwrap()).unwrap()
}

/// A body with every chosen field distinct, so a misplaced offset shows.
fn distinctive_body() -> TdBody {
    let mut body = TdBody {
        mrtd: [0x11; 48],
        ..TdBody::default()
    };
    body.mrconfigid[0] = 0x01;
    body.mrconfigid[1..33].copy_from_slice(&[0x22; 32]);
    for (i, rtmr) in body.rtmr.iter_mut().enumerate() {
        *rtmr = [0x30 + i as u8; 48];
    }
    for (i, b) in body.report_data.iter_mut().enumerate() {
        *b = i as u8;
    }
    body
}

#[test]
fn generated_quote_verifies_up_to_date() {
    let (pki, now) = common::intel_test_pki();
    let quote = pki.quote_v4(&distinctive_body()).unwrap();
    let report = QuoteVerifier::new(pki.root_der().to_vec())
        .verify(
            &quote,
            &collateral(pki, TcbStatusChoice::UpToDate),
            secs(*now),
        )
        .unwrap();
    assert_eq!(report.status, "UpToDate");
    assert!(report.advisory_ids.is_empty(), "{:?}", report.advisory_ids);
    let td = report.report.as_td10().unwrap();
    assert_eq!(td.report_data, distinctive_body().report_data);

    // The same through teewatch's own reading of dcap-qvl.
    let value = pki.collateral(TcbStatusChoice::UpToDate).unwrap();
    let result = verify_quote(
        &quote,
        Some(&value),
        pki.root_der(),
        now.timestamp(),
        &CollateralCache::default(),
    );
    assert!(matches!(result.signature, Outcome::Pass(_)), "{result:?}");
    assert_eq!(
        result.tcb,
        TcbOutcome::Evaluated {
            status: "UpToDate".into(),
            advisory_ids: vec![]
        }
    );
    assert_eq!(
        result.fmspc.as_deref(),
        Some(hex::encode(pki.fmspc()).as_str())
    );
}

#[test]
fn default_body_verifies_and_many_quotes_share_one_pki() {
    let (pki, now) = common::intel_test_pki();
    let collateral = collateral(pki, TcbStatusChoice::UpToDate);
    let verifier = QuoteVerifier::new(pki.root_der().to_vec());
    for nonce in 0..3u8 {
        let mut body = TdBody::default();
        body.report_data[32..].copy_from_slice(&[nonce; 32]);
        let quote = pki.quote_v4(&body).unwrap();
        let report = verifier.verify(&quote, &collateral, secs(*now)).unwrap();
        assert_eq!(report.status, "UpToDate");
    }
}

#[test]
fn out_of_date_collateral_gives_out_of_date_with_the_advisory() {
    let (pki, now) = common::intel_test_pki();
    let quote = pki.quote_v4(&TdBody::default()).unwrap();
    let report = QuoteVerifier::new(pki.root_der().to_vec())
        .verify(
            &quote,
            &collateral(pki, TcbStatusChoice::OutOfDate),
            secs(*now),
        )
        .unwrap();
    assert_eq!(report.status, "OutOfDate");
    assert_eq!(report.advisory_ids, vec![OUT_OF_DATE_ADVISORY.to_string()]);
    assert_eq!(OUT_OF_DATE_ADVISORY, "INTEL-SA-00999");
}

#[test]
fn revoked_collateral_gives_dcap_qvls_revoked_error_after_the_signatures() {
    let (pki, now) = common::intel_test_pki();
    let quote = pki.quote_v4(&TdBody::default()).unwrap();
    let error = QuoteVerifier::new(pki.root_der().to_vec())
        .verify(
            &quote,
            &collateral(pki, TcbStatusChoice::Revoked),
            secs(*now),
        )
        .unwrap_err();
    assert_eq!(error.to_string(), "TCB status is invalid: Revoked");

    let value = pki.collateral(TcbStatusChoice::Revoked).unwrap();
    let result = verify_quote(
        &quote,
        Some(&value),
        pki.root_der(),
        now.timestamp(),
        &CollateralCache::default(),
    );
    assert_eq!(result.tcb, TcbOutcome::Revoked);
    assert!(matches!(result.signature, Outcome::Pass(_)), "{result:?}");
}

#[test]
fn bad_signature_quote_fails() {
    let (pki, now) = common::intel_test_pki();
    let quote = pki.quote_v4_bad_signature(&TdBody::default()).unwrap();
    let error = QuoteVerifier::new(pki.root_der().to_vec())
        .verify(
            &quote,
            &collateral(pki, TcbStatusChoice::UpToDate),
            secs(*now),
        )
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("ISV enclave report signature is invalid"),
        "{error:#}"
    );

    let value = pki.collateral(TcbStatusChoice::UpToDate).unwrap();
    let result = verify_quote(
        &quote,
        Some(&value),
        pki.root_der(),
        now.timestamp(),
        &CollateralCache::default(),
    );
    assert!(matches!(result.signature, Outcome::Fail(_)), "{result:?}");

    // Only the signature differs from a good quote's layout.
    let good = pki.quote_v4(&TdBody::default()).unwrap();
    assert_eq!(good.len(), quote.len());
    assert_eq!(good[..632], quote[..632]);
    assert_eq!(good[632 + 4 + 64..], quote[632 + 4 + 64..]);
}

#[test]
fn intel_real_root_rejects_the_test_quote() {
    let (pki, now) = common::intel_test_pki();
    let quote = pki.quote_v4(&TdBody::default()).unwrap();
    let collateral_value = pki.collateral(TcbStatusChoice::UpToDate).unwrap();
    let real_root = teewatch::verify::policy::INTEL_SGX_ROOT_CA_DER;
    assert!(
        QuoteVerifier::new(real_root.to_vec())
            .verify(
                &quote,
                &collateral(pki, TcbStatusChoice::UpToDate),
                secs(*now)
            )
            .is_err()
    );
    assert!(
        dcap_qvl::verify::verify(
            &quote,
            &collateral(pki, TcbStatusChoice::UpToDate),
            secs(*now)
        )
        .is_err()
    );
    let result = verify_quote(
        &quote,
        Some(&collateral_value),
        real_root,
        now.timestamp(),
        &CollateralCache::default(),
    );
    assert!(matches!(result.signature, Outcome::Fail(_)), "{result:?}");
}

#[test]
fn tdx_quote_parse_reads_back_the_body() {
    let (pki, _) = common::intel_test_pki();
    let body = distinctive_body();
    let quote = pki.quote_v4(&body).unwrap();
    let parsed = teewatch::verify::tdx::TdxQuote::parse(&quote).unwrap();
    assert_eq!(parsed.version, 4);
    assert_eq!(parsed.body_type, 2);
    let b = &parsed.body;
    assert_eq!(b.tee_tcb_svn, body.tee_tcb_svn);
    assert_eq!(b.mrseam, body.mrseam);
    assert_eq!(b.td_attributes, body.td_attributes);
    assert_eq!(b.xfam, body.xfam);
    assert_eq!(b.mrtd, body.mrtd);
    assert_eq!(b.mrconfigid, body.mrconfigid);
    assert_eq!(b.rtmr, body.rtmr);
    assert_eq!(b.report_data, body.report_data);
    assert_eq!(b.mrsignerseam, [0; 48]);
    assert_eq!(b.seam_attributes, [0; 8]);
    assert_eq!(b.mrowner, [0; 48]);
    assert_eq!(b.mrownerconfig, [0; 48]);
    assert_eq!(b.mr_service_td, None);
    assert_eq!(&quote[48..48 + 584], body.to_bytes().as_slice());

    // The realistic defaults: SEPT_VE_DISABLE only, dstack's XFAM.
    let default = TdBody::default();
    assert_eq!(u64::from_le_bytes(default.td_attributes), 1 << 28);
    assert_eq!(u64::from_le_bytes(default.xfam), 0x0006_02e7);
}

#[test]
fn quote_structure_matches_intels_layout() {
    let (pki, _) = common::intel_test_pki();
    let quote = pki.quote_v4(&TdBody::default()).unwrap();
    let parsed = dcap_qvl::quote::Quote::parse(&quote).unwrap();
    assert_eq!(parsed.header.version, 4);
    assert_eq!(parsed.header.attestation_key_type, 2);
    assert_eq!(parsed.header.tee_type, 0x81);
    assert_eq!(
        hex::encode(parsed.header.qe_vendor_id),
        "939a7233f79c4ca9940a0db3957f0607"
    );
    assert_eq!(parsed.inner_cert_type(), 5);
    let dcap_qvl::quote::AuthData::V4(auth) = &parsed.auth_data else {
        panic!("v4 quotes carry v4 auth data");
    };
    assert_eq!(auth.certification_data.cert_type, 6);
    assert_eq!(auth.ecdsa_attestation_key, pki.attestation_public_key());
    assert_eq!(
        String::from_utf8(parsed.inner_cert_data().to_vec()).unwrap(),
        pki.pck_chain_pem()
    );
    assert_eq!(dcap_qvl::intel::quote_fmspc(&parsed).unwrap(), pki.fmspc());
    let ext =
        dcap_qvl::intel::parse_pck_extension_from_pem(pki.pck_chain_pem().as_bytes()).unwrap();
    assert_eq!(ext.pce_svn, 11);
    assert_eq!(ext.sgx_type, 1);
    assert_eq!(ext.pce_id, vec![0, 0]);
    assert_eq!(ext.smt_enabled, Some(true));
    assert_eq!(
        dcap_qvl::intel::quote_ca(&parsed).unwrap(),
        dcap_qvl::config::PckCa::Platform
    );
    // Nothing declared runs past the end, and nothing trails it.
    let declared = u32::from_le_bytes(quote[632..636].try_into().unwrap()) as usize;
    assert_eq!(quote.len(), 636 + declared);
}

#[test]
fn collateral_after_next_update_is_unknown() {
    let (pki, _) = common::intel_test_pki();
    let quote = pki.quote_v4(&TdBody::default()).unwrap();
    let value = pki.collateral(TcbStatusChoice::UpToDate).unwrap();
    let late = pki.next_update() + Duration::days(1);
    let result = verify_quote(
        &quote,
        Some(&value),
        pki.root_der(),
        late.timestamp(),
        &CollateralCache::default(),
    );
    let Outcome::Unknown(why) = &result.signature else {
        panic!("expected unknown, got {result:?}");
    };
    assert!(why.contains("expired"), "{why}");

    // dcap-qvl itself refuses it too, and accepts it just before.
    let verifier = QuoteVerifier::new(pki.root_der().to_vec());
    let c = collateral(pki, TcbStatusChoice::UpToDate);
    assert!(verifier.verify(&quote, &c, secs(late)).is_err());
    let just_before = pki.next_update() - Duration::minutes(1);
    assert!(verifier.verify(&quote, &c, secs(just_before)).is_ok());
    // Before the collateral was issued it is not valid either.
    let early = pki.issued() - Duration::minutes(1);
    assert!(verifier.verify(&quote, &c, secs(early)).is_err());
}

#[test]
fn pccs_pieces_match_the_collateral() {
    let (pki, now) = common::intel_test_pki();
    for status in TcbStatusChoice::ALL {
        let value = pki.collateral(status).unwrap();
        let c: QuoteCollateralV3 = serde_json::from_value(value.clone()).unwrap();
        assert!(c.pck_certificate_chain.is_none());
        let p = pki.pccs(status).unwrap();

        // Parsed and printed again as a PCCS client does, the object is the signed string.
        let tcb: Value = serde_json::from_str(&p.tcb_info_body).unwrap();
        assert_eq!(tcb["tcbInfo"].to_string(), c.tcb_info);
        assert_eq!(
            hex::decode(tcb["signature"].as_str().unwrap()).unwrap(),
            c.tcb_info_signature
        );
        assert_eq!(tcb["tcbInfo"]["fmspc"], hex::encode_upper(pki.fmspc()));
        let qe: Value = serde_json::from_str(&p.qe_identity_body).unwrap();
        assert_eq!(qe["enclaveIdentity"].to_string(), c.qe_identity);
        assert_eq!(
            hex::decode(qe["signature"].as_str().unwrap()).unwrap(),
            c.qe_identity_signature
        );
        assert_eq!(p.tcb_info_issuer_chain, c.tcb_info_issuer_chain);
        assert_eq!(p.qe_identity_issuer_chain, c.qe_identity_issuer_chain);
        assert_eq!(p.pck_crl_issuer_chain, c.pck_crl_issuer_chain);
        assert_eq!(p.pck_crl_der, c.pck_crl);
        assert_eq!(p.root_ca_crl_der, c.root_ca_crl);
        assert_eq!(hex::decode(p.root_ca_crl_hex()).unwrap(), c.root_ca_crl);
        assert_eq!(
            p.tcb_info_issuer_chain,
            pki.tcb_signing_chain_pem(),
            "TCB signer then root"
        );

        // Collateral rebuilt from the PCCS pieces alone verifies the same way.
        let rebuilt = QuoteCollateralV3 {
            pck_crl_issuer_chain: p.pck_crl_issuer_chain.clone(),
            root_ca_crl: p.root_ca_crl_der.clone(),
            pck_crl: p.pck_crl_der.clone(),
            tcb_info_issuer_chain: p.tcb_info_issuer_chain.clone(),
            tcb_info: tcb["tcbInfo"].to_string(),
            tcb_info_signature: hex::decode(tcb["signature"].as_str().unwrap()).unwrap(),
            qe_identity_issuer_chain: p.qe_identity_issuer_chain.clone(),
            qe_identity: qe["enclaveIdentity"].to_string(),
            qe_identity_signature: hex::decode(qe["signature"].as_str().unwrap()).unwrap(),
            pck_certificate_chain: None,
        };
        assert_eq!(rebuilt, c);
        let quote = pki.quote_v4(&TdBody::default()).unwrap();
        let outcome =
            QuoteVerifier::new(pki.root_der().to_vec()).verify(&quote, &rebuilt, secs(*now));
        match status {
            TcbStatusChoice::Revoked => assert!(outcome.is_err()),
            other => assert_eq!(outcome.unwrap().status, other.as_str()),
        }
    }
    // Same collateral every call: signatures are made once at generation.
    assert_eq!(
        pki.collateral(TcbStatusChoice::UpToDate).unwrap(),
        pki.collateral(TcbStatusChoice::UpToDate).unwrap()
    );
}

#[test]
fn certificates_and_crls_have_the_promised_dates_and_names() {
    use x509_parser::prelude::*;
    let (pki, now) = common::intel_test_pki();
    let (_, root) = parse_x509_certificate(pki.root_der()).unwrap();
    let cn = root.subject().iter_common_name().next().unwrap();
    assert_eq!(
        cn.as_str().unwrap(),
        "teewatch TEST Intel SGX Root CA — not Intel"
    );
    assert_eq!(root.subject(), root.issuer());
    let from = root.validity().not_before.timestamp();
    let to = root.validity().not_after.timestamp();
    assert_eq!(from, (*now - Duration::days(1)).timestamp());
    assert_eq!(to, (*now + Duration::days(5 * 365)).timestamp());
    let dp = root
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => Some(format!("{points:?}")),
            _ => None,
        })
        .unwrap();
    assert!(
        dp.contains("http://127.0.0.1:9/sgx/certification/v4/rootcacrl"),
        "{dp}"
    );

    let p = pki.pccs(TcbStatusChoice::UpToDate).unwrap();
    for der in [&p.root_ca_crl_der, &p.pck_crl_der] {
        let (_, crl) = parse_x509_crl(der).unwrap();
        assert_eq!(
            crl.last_update().timestamp(),
            (*now - Duration::hours(1)).timestamp()
        );
        assert_eq!(
            crl.next_update().unwrap().timestamp(),
            (*now + Duration::days(30)).timestamp()
        );
    }
    assert_eq!(pki.next_update(), *now + Duration::days(30));
    assert_eq!(pki.issued(), *now - Duration::hours(1));
    assert!(pki.root_pem().starts_with("-----BEGIN CERTIFICATE-----"));

    // The header form of an issuer chain decodes back to the chain.
    let encoded = header_value(&p.tcb_info_issuer_chain);
    assert!(!encoded.contains('\n') && !encoded.contains(' '));
}

#[test]
fn two_pkis_do_not_trust_each_other() {
    let (pki, now) = common::intel_test_pki();
    let other = IntelTestPki::generate("http://127.0.0.1:9", *now).unwrap();
    let quote = other.quote_v4(&TdBody::default()).unwrap();
    assert!(
        QuoteVerifier::new(pki.root_der().to_vec())
            .verify(
                &quote,
                &collateral(&other, TcbStatusChoice::UpToDate),
                secs(*now)
            )
            .is_err()
    );
    assert!(
        QuoteVerifier::new(other.root_der().to_vec())
            .verify(
                &quote,
                &collateral(&other, TcbStatusChoice::UpToDate),
                secs(*now)
            )
            .is_ok()
    );
}

#[test]
fn generate_is_fast_and_the_pki_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<IntelTestPki>();
    let start = std::time::Instant::now();
    let pki = IntelTestPki::generate("http://127.0.0.1:9", Utc::now()).unwrap();
    let took = start.elapsed();
    eprintln!("IntelTestPki::generate took {took:?}");
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    let start = std::time::Instant::now();
    for _ in 0..100 {
        pki.quote_v4(&TdBody::default()).unwrap();
    }
    eprintln!("100 quotes took {:?}", start.elapsed());
}
