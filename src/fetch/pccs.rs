//! Turning a PCCS's (or Intel PCS's) answers into the `QuoteCollateralV3` JSON a bundle carries.
//!
//! The PCS v4 API returns the TCB info and QE identity as `{"tcbInfo": {…}, "signature": "hex"}`
//! and `{"enclaveIdentity": {…}, "signature": "hex"}`, with their issuer chains percent-encoded in
//! response headers; the PCK CRL comes as DER and the root CA CRL as DER (from the root's CRL
//! distribution point) or as hex text (from a PCCS's `/rootcacrl`). The signed objects are kept
//! byte for byte: JSON objects are re-serialised with their key order preserved, which reproduces
//! the compact text Intel signs.

use serde_json::{Value, json};

use crate::verify::hexutil;

/// Response header names of the PCS v4 API.
pub const TCB_INFO_ISSUER_CHAIN: [&str; 2] = ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"];
pub const QE_IDENTITY_ISSUER_CHAIN: &str = "SGX-Enclave-Identity-Issuer-Chain";
pub const PCK_CRL_ISSUER_CHAIN: &str = "SGX-PCK-CRL-Issuer-Chain";

/// The raw answers of the four collateral requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PccsAnswers {
    pub tcb_info_body: Vec<u8>,
    /// The TCB info issuer chain header value, percent-encoded as sent.
    pub tcb_info_issuer_chain: String,
    pub qe_identity_body: Vec<u8>,
    pub qe_identity_issuer_chain: String,
    /// The PCK CRL body (DER, or hex text from some PCCSs).
    pub pck_crl_body: Vec<u8>,
    pub pck_crl_issuer_chain: String,
    /// The root CA CRL body (DER, or hex text from a PCCS's `/rootcacrl`).
    pub root_ca_crl_body: Vec<u8>,
}

/// Why the answers do not make collateral.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PccsError {
    #[error("{part}: not json: {reason}")]
    NotJson { part: &'static str, reason: String },
    #[error("{part}: expected a `{key}` object and a hex `signature`, found neither or one")]
    Shape {
        part: &'static str,
        key: &'static str,
    },
    #[error("{part} signature is not hex: {reason}")]
    SignatureHex { part: &'static str, reason: String },
    #[error("{part} issuer chain header is not percent-encoded utf-8")]
    ChainHeader { part: &'static str },
    #[error("{part}: expected a der crl or its hex text, found {found} bytes that are neither")]
    Crl { part: &'static str, found: usize },
}

fn signed_object(
    body: &[u8],
    part: &'static str,
    key: &'static str,
) -> Result<(String, Vec<u8>), PccsError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PccsError::NotJson {
        part,
        reason: e.to_string(),
    })?;
    let (Some(object @ Value::Object(_)), Some(Value::String(signature))) =
        (value.get(key), value.get("signature"))
    else {
        return Err(PccsError::Shape { part, key });
    };
    let signature = hexutil::decode(signature).map_err(|e| PccsError::SignatureHex {
        part,
        reason: e.to_string(),
    })?;
    Ok((object.to_string(), signature))
}

fn chain(header: &str, part: &'static str) -> Result<String, PccsError> {
    percent_encoding::percent_decode_str(header)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| PccsError::ChainHeader { part })
}

/// A CRL body as DER: DER starts with a SEQUENCE tag (0x30); anything else must be hex of one.
fn crl_der(body: &[u8], part: &'static str) -> Result<Vec<u8>, PccsError> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| hexutil::decode(text.trim()).ok())
        .filter(|der| der.first() == Some(&0x30))
        .ok_or(PccsError::Crl {
            part,
            found: body.len(),
        })
}

/// Assembles dcap-qvl's `QuoteCollateralV3` JSON from the answers.
pub fn collateral_json(answers: &PccsAnswers) -> Result<Value, PccsError> {
    let (tcb_info, tcb_info_signature) =
        signed_object(&answers.tcb_info_body, "tcb info", "tcbInfo")?;
    let (qe_identity, qe_identity_signature) =
        signed_object(&answers.qe_identity_body, "qe identity", "enclaveIdentity")?;
    Ok(json!({
        "pck_crl_issuer_chain": chain(&answers.pck_crl_issuer_chain, "pck crl")?,
        "root_ca_crl": hexutil::lower(&crl_der(&answers.root_ca_crl_body, "root ca crl")?),
        "pck_crl": hexutil::lower(&crl_der(&answers.pck_crl_body, "pck crl")?),
        "tcb_info_issuer_chain": chain(&answers.tcb_info_issuer_chain, "tcb info")?,
        "tcb_info": tcb_info,
        "tcb_info_signature": hexutil::lower(&tcb_info_signature),
        "qe_identity_issuer_chain": chain(&answers.qe_identity_issuer_chain, "qe identity")?,
        "qe_identity": qe_identity,
        "qe_identity_signature": hexutil::lower(&qe_identity_signature),
    }))
}
