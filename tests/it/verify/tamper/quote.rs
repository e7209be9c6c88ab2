//! Rows on the TDX quote and Intel's collateral: the header, each body field, each REPORTDATA
//! half, the QE report and its signature, the quote's signature and attestation key, a PCK
//! chain of another platform, and every collateral member.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::edit::*;
use super::{Base, DSTACK, ECDSA, Row, fail, same, unknown};

const UPTODATE: Base = Base::Real("dcapqvl-v4-uptodate");
const CANARY: Base = Base::Real("nearai-canary");
const SIG: &str = "tdx_quote_signature";

pub fn rows() -> Vec<Row> {
    vec![
        // ---- header --------------------------------------------------------------------------
        fail(
            "quote header: version 4 made 3",
            ECDSA,
            |v| quote_edit(v, GW, |q| q[VERSION] = 3),
            "tdx_quote_parse",
            "gateway",
            "quote version: expected 4 or 5, found 3",
        ),
        fail(
            "quote header: attestation key type 2 (p-256) made 3",
            ECDSA,
            |v| quote_edit(v, GW, |q| q[ATT_KEY_TYPE] = 3),
            "tdx_quote_parse",
            "gateway",
            "attestation key type: expected 2 (ecdsa p-256), found 3",
        ),
        fail(
            "quote header: tee type 0x81 (tdx) made 0x00 (sgx)",
            ECDSA,
            |v| quote_edit(v, GW, |q| q[TEE_TYPE] = 0),
            "tdx_quote_parse",
            "gateway",
            "tee type: expected 0x81 (tdx), found 0x00",
        ),
        fail(
            "quote header: a bit of the qe vendor id",
            ECDSA,
            |v| quote_flip(v, GW, QE_VENDOR),
            SIG,
            "gateway",
            "unknown qe vendor id",
        ),
        fail(
            "quote header: a bit of the user data",
            ECDSA,
            |v| quote_flip(v, GW, USER_DATA),
            SIG,
            "gateway",
            "isv enclave report signature is invalid",
        ),
        // ---- body ----------------------------------------------------------------------------
        fail(
            "td report: a bit of tee_tcb_svn",
            ECDSA,
            |v| quote_flip(v, GW, TEE_TCB_SVN),
            SIG,
            "gateway",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: a bit of mrseam",
            ECDSA,
            |v| quote_flip(v, GW, MRSEAM),
            SIG,
            "gateway",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: a bit of mrsignerseam",
            ECDSA,
            |v| quote_flip(v, M0, MRSIGNERSEAM),
            SIG,
            "model:0",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: a bit of seam_attributes",
            ECDSA,
            |v| quote_flip(v, M0, SEAM_ATTRIBUTES),
            SIG,
            "model:0",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: td_attributes debug bit set",
            ECDSA,
            |v| quote_edit(v, GW, |q| q[TD_ATTRIBUTES] |= 0x01),
            "tdx_debug_disabled",
            "gateway",
            "tdattributes.debug: expected 0, found 1",
        ),
        fail(
            "td report: td_attributes sept_ve_disable cleared",
            ECDSA,
            |v| quote_edit(v, M0, |q| q[TD_ATTRIBUTES + 3] &= !0x10),
            "tdx_td_attributes",
            "model:0",
            "sept_ve_disable not set",
        ),
        fail(
            "td report: a bit of xfam",
            ECDSA,
            |v| quote_flip(v, M0, XFAM),
            SIG,
            "model:0",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: a bit of mrtd",
            ECDSA,
            |v| quote_flip(v, M0, MRTD + 47),
            SIG,
            "model:0",
            "isv enclave report signature is invalid",
        ),
        unknown(
            "td report: a bit of mrtd, judged by its pin",
            ECDSA,
            |v| quote_flip(v, M0, MRTD + 47),
            "pin:mrtd",
            "model:0",
            "quote not verified",
            "a register read from a quote whose signature failed is neither allowed nor refused",
        ),
        fail(
            "td report: a bit of mrconfigid",
            ECDSA,
            |v| quote_flip(v, M0, MRCONFIGID + 1),
            "compose_binding",
            "model:0",
            "(0x01 ‖ sha256(app_compose)), found",
        ),
        fail(
            "td report: a bit of mrowner",
            ECDSA,
            |v| quote_flip(v, M0, MROWNER),
            SIG,
            "model:0",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: a bit of mrownerconfig",
            ECDSA,
            |v| quote_flip(v, M0, MROWNERCONFIG),
            SIG,
            "model:0",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: a bit of rtmr0",
            ECDSA,
            |v| quote_flip(v, M0, RTMR0),
            "event_log_replay",
            "model:0",
            "rtmr0: replayed",
        ),
        fail(
            "td report: a bit of rtmr1",
            ECDSA,
            |v| quote_flip(v, M0, RTMR0 + 48),
            "event_log_replay",
            "model:0",
            "rtmr1: replayed",
        ),
        fail(
            "td report: a bit of rtmr2",
            ECDSA,
            |v| quote_flip(v, GW, RTMR0 + 96),
            "event_log_replay",
            "gateway",
            "rtmr2: replayed",
        ),
        fail(
            "td report: a bit of rtmr3",
            ECDSA,
            |v| quote_flip(v, GW, RTMR3),
            "event_log_replay",
            "gateway",
            "rtmr3: replayed",
        ),
        fail(
            "td report: a bit of mrtd",
            UPTODATE,
            |v| quote_flip(v, TOP, MRTD),
            SIG,
            "",
            "isv enclave report signature is invalid",
        ),
        fail(
            "td report: a bit of rtmr3",
            DSTACK,
            |v| quote_flip(v, TOP, RTMR3 + 5),
            "event_log_replay",
            "",
            "rtmr3: replayed",
        ),
        // ---- REPORTDATA ----------------------------------------------------------------------
        fail(
            "reportdata first half (key and tls binding): one bit",
            ECDSA,
            |v| quote_flip(v, M0, REPORTDATA),
            "report_data_binding",
            "model:0",
            "first half (sha256(signing address",
        ),
        fail(
            "reportdata second half (nonce): one bit",
            ECDSA,
            |v| quote_flip(v, GW, REPORTDATA + 63),
            "report_data_binding",
            "gateway",
            "the quote is bound to another nonce",
        ),
        fail(
            "reportdata first half (signing address): one bit",
            CANARY,
            |v| quote_flip(v, TOP, REPORTDATA + 3),
            "report_data_binding",
            "",
            "first half (signing address)",
        ),
        fail(
            "reportdata second half (nonce): one bit",
            CANARY,
            |v| quote_flip(v, TOP, REPORTDATA + 40),
            "report_data_binding",
            "",
            "second half (nonce)",
        ),
        fail(
            "reportdata first half (signing address): one bit",
            DSTACK,
            |v| quote_flip(v, TOP, REPORTDATA + 3),
            "report_data_binding",
            "",
            "first half (signing address)",
        ),
        fail(
            "reportdata second half (nonce): one bit",
            DSTACK,
            |v| quote_flip(v, TOP, REPORTDATA + 63),
            "report_data_binding",
            "",
            "second half (nonce)",
        ),
        // ---- signatures, the attestation key, the QE report ---------------------------------
        fail(
            "quote signature: one bit",
            ECDSA,
            |v| quote_flip(v, GW, QUOTE_SIGNATURE + 10),
            SIG,
            "gateway",
            "isv enclave report signature is invalid",
        ),
        fail(
            "quote signature: one bit",
            UPTODATE,
            |v| quote_flip(v, TOP, QUOTE_SIGNATURE + 10),
            SIG,
            "",
            "isv enclave report signature is invalid",
        ),
        fail(
            "attestation key: one bit",
            ECDSA,
            |v| quote_flip(v, M0, ATTESTATION_KEY + 5),
            SIG,
            "model:0",
            "qe report hash mismatch",
        ),
        fail(
            "qe report: a bit of mrenclave",
            ECDSA,
            |v| quote_flip(v, GW, QE_REPORT + 64),
            SIG,
            "gateway",
            "signature is invalid for qe_report in quote",
        ),
        fail(
            "qe report: isvsvn",
            ECDSA,
            |v| quote_flip(v, GW, QE_REPORT + 258),
            SIG,
            "gateway",
            "signature is invalid for qe_report in quote",
        ),
        fail(
            "qe report: a bit of its report data (the attestation key's hash)",
            UPTODATE,
            |v| quote_flip(v, TOP, QE_REPORT + 320),
            SIG,
            "",
            "signature is invalid for qe_report in quote",
        ),
        fail(
            "qe report signature: one bit",
            ECDSA,
            |v| quote_flip(v, M0, QE_REPORT_SIGNATURE + 20),
            SIG,
            "model:0",
            "signature is invalid for qe_report in quote",
        ),
        fail(
            "qe report signature: one bit",
            UPTODATE,
            |v| quote_flip(v, TOP, QE_REPORT_SIGNATURE + 20),
            SIG,
            "",
            "signature is invalid for qe_report in quote",
        ),
        unknown(
            "pck chain: a genuine intel chain of another platform (automata-outofdate's)",
            UPTODATE,
            |v| {
                let other = pck_chain(&quote_of(
                    &super::common::bundle_json("automata-outofdate"),
                    TOP,
                ));
                quote_edit(v, TOP, |q| replace_pck_chain(q, &other));
            },
            SIG,
            "",
            "no collateral for fmspc 00806f050000",
            "collateral is chosen by the pck certificate's fmspc and the bundle has none for that platform",
        ),
        fail(
            "pck chain: the model's genuine chain (another simulated platform, its collateral present) in the gateway's quote",
            ECDSA,
            |v| {
                let chain = pck_chain(&quote_of(v, M0));
                assert_ne!(chain, pck_chain(&quote_of(v, GW)), "two platforms");
                quote_edit(v, GW, |q| replace_pck_chain(q, &chain));
            },
            SIG,
            "gateway",
            "signature is invalid for qe_report in quote",
        ),
        fail(
            "the model's quote replaced by the gateway's genuine one",
            ECDSA,
            |v| {
                let gw = get(v, &format!("{GW}/intel_quote"));
                set(v, &format!("{M0}/intel_quote"), gw);
            },
            "report_data_binding",
            "model:0",
            "first half (sha256(signing address",
        ),
        // ---- collateral ----------------------------------------------------------------------
        fail(
            "collateral: tcb info's tcbEvaluationDataNumber raised",
            UPTODATE,
            |v| {
                replace_text(
                    v,
                    "/tdx_collateral/tcb_info",
                    "\"tcbEvaluationDataNumber\":17",
                    "\"tcbEvaluationDataNumber\":18",
                )
            },
            SIG,
            "",
            "signature is invalid for tcb_info in quote_collateral",
        ),
        fail(
            "collateral: tcb info signature, one bit",
            UPTODATE,
            |v| hex_flip(v, "/tdx_collateral/tcb_info_signature", 7),
            SIG,
            "",
            "signature is invalid for tcb_info in quote_collateral",
        ),
        fail(
            "collateral: qe identity's isvprodid changed",
            UPTODATE,
            |v| {
                replace_text(
                    v,
                    "/tdx_collateral/qe_identity",
                    "\"isvprodid\":2",
                    "\"isvprodid\":3",
                )
            },
            SIG,
            "",
            "signature is invalid for qe_identity in quote_collateral",
        ),
        fail(
            "collateral: qe identity signature, one bit",
            UPTODATE,
            |v| hex_flip(v, "/tdx_collateral/qe_identity_signature", 7),
            SIG,
            "",
            "signature is invalid for qe_identity in quote_collateral",
        ),
        fail(
            "collateral: pck crl, a bit of its signature",
            UPTODATE,
            |v| {
                hex_edit(v, "/tdx_collateral/pck_crl", |raw| {
                    let last = raw.len() - 1;
                    raw[last] ^= 0x01;
                })
            },
            SIG,
            "",
            "invalidcrlsignatureforpublickey",
        ),
        fail(
            "collateral: root ca crl, a bit of its signature",
            UPTODATE,
            |v| {
                hex_edit(v, "/tdx_collateral/root_ca_crl", |raw| {
                    let last = raw.len() - 1;
                    raw[last] ^= 0x01;
                })
            },
            SIG,
            "",
            "failed to parse root ca crl: invalidcrlsignatureforpublickey",
        ),
        fail(
            "collateral: tcb info issuer chain swapped for the pck crl's (a genuine intel chain)",
            UPTODATE,
            |v| {
                let other = get(v, "/tdx_collateral/pck_crl_issuer_chain");
                set(v, "/tdx_collateral/tcb_info_issuer_chain", other);
            },
            SIG,
            "",
            "failed to verify certificate chain",
        ),
        fail(
            "collateral: qe identity issuer chain swapped for the pck crl's",
            UPTODATE,
            |v| {
                let other = get(v, "/tdx_collateral/pck_crl_issuer_chain");
                set(v, "/tdx_collateral/qe_identity_issuer_chain", other);
            },
            SIG,
            "",
            "failed to verify certificate chain",
        ),
        same(
            "collateral: pck crl issuer chain swapped for the tcb signing chain",
            UPTODATE,
            |v| {
                let other = get(v, "/tdx_collateral/tcb_info_issuer_chain");
                set(v, "/tdx_collateral/pck_crl_issuer_chain", other);
            },
            SIG,
            "",
            "verify to the intel root",
            "not relied on: each crl is verified against the issuer in the quote's own pck chain; this chain only adds validity dates",
        ),
        unknown(
            "collateral: genuine tcb info and signature of another platform (automata-outofdate's)",
            UPTODATE,
            |v| {
                let other = super::common::bundle_json("automata-outofdate");
                for member in ["tcb_info", "tcb_info_signature"] {
                    let at = format!("/tdx_collateral/{member}");
                    set(v, &at, get(&other, &at));
                }
            },
            SIG,
            "",
            "no collateral for fmspc b0c06f000000",
            "tcb info is chosen by the quote's fmspc, and the bundle's only tcb info is for another",
        ),
        fail(
            "collateral: every tcb level's status made UpToDate, signature kept",
            ECDSA,
            |v| {
                for i in 0..2 {
                    let at = format!("/tdx_collateral/{i}/tcb_info");
                    while get(v, &at).as_str().unwrap().contains("OutOfDate") {
                        replace_text(v, &at, "OutOfDate", "UpToDate");
                    }
                }
            },
            SIG,
            "gateway",
            "signature is invalid for tcb_info in quote_collateral",
        ),
        same(
            "quote: a zero byte appended after the signature data",
            ECDSA,
            |v| quote_edit(v, GW, |q| q.push(0)),
            "tdx_quote_parse",
            "gateway",
            "4811 bytes",
            "padding after the signed bytes, as real quote buffers carry (automata-outofdate's is 8000 bytes); what is signed is unchanged",
        ),
        same(
            "quote: a non-zero byte appended after the signature data",
            ECDSA,
            |v| quote_edit(v, GW, |q| q.push(0xff)),
            "tdx_quote_parse",
            "gateway",
            "4811 bytes",
            "no check reads bytes past the declared signature data and no signature covers them; real quotes carry such bytes (gotdxguest-no-tcb-level's 39 non-zero ones)",
        ),
        fail(
            "qe authentication data: one bit",
            ECDSA,
            |v| quote_flip(v, GW, QE_AUTH_DATA),
            SIG,
            "gateway",
            "qe report hash mismatch",
        ),
        unknown(
            "collateral: root ca crl emptied",
            UPTODATE,
            |v| set(v, "/tdx_collateral/root_ca_crl", serde_json::json!("")),
            SIG,
            "",
            "collateral unreadable: root ca crl is not a der crl",
            "without the crl, revocation cannot be judged",
        ),
    ]
}
