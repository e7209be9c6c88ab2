//! Byte layouts of a TDX v4 quote: the header, the TD 1.0 report body, the QE report and the
//! signature data with its nested certification data (type 6 holding type 5).
//!
//! Offsets and sizes are those dcap-qvl decodes (REFERENCE.md §2 for header and body). Every
//! structure is written field by field into a `Vec`, so the lengths below are the only place a
//! size is stated.

use sha2::{Digest, Sha256};

use super::{
    CPU_SVN, QE_ATTRIBUTES, QE_ISVPRODID, QE_ISVSVN, QE_MRENCLAVE, QE_MRSIGNER, SimError, TdBody,
};

/// Intel's QE vendor id; dcap-qvl rejects any other.
pub(super) const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// The QE authentication data Intel's TD QE sends: the bytes 0..32.
pub(super) const QE_AUTH_DATA: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

pub(super) const HEADER_LEN: usize = 48;
pub(super) const TD10_BODY_LEN: usize = 584;
const QE_REPORT_LEN: usize = 384;
/// Certification data types: the PCK chain (PEM, leaf first) and the QE report wrapper.
const CERT_TYPE_PCK_CHAIN: u16 = 5;
const CERT_TYPE_QE_REPORT: u16 = 6;

fn u32_len(len: usize, what: &str) -> Result<[u8; 4], SimError> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| SimError::Encoding(format!("{what} of {len} bytes does not fit a u32")))
}

/// The 48-byte v4 header: version 4, ECDSA-P256 attestation key, TEE type TDX, reserved zero
/// SVNs, Intel's QE vendor id and user data (the QE id, then four zero bytes, as Intel's QE
/// writes it).
pub(super) fn header(qe_id: &[u8; 16]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&0x81u32.to_le_bytes());
    h.extend_from_slice(&[0u8; 4]);
    h.extend_from_slice(&INTEL_QE_VENDOR_ID);
    h.extend_from_slice(qe_id);
    h.extend_from_slice(&[0u8; 4]);
    h
}

/// The 584-byte TD 1.0 report body; MRSIGNERSEAM, SEAMATTRIBUTES, MROWNER and MROWNERCONFIG are
/// zero (Intel-signed module, no owner), matching the TCB info's module identity.
pub(super) fn td10_body(b: &TdBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(TD10_BODY_LEN);
    out.extend_from_slice(&b.tee_tcb_svn);
    out.extend_from_slice(&b.mrseam);
    out.extend_from_slice(&[0u8; 48]); // MRSIGNERSEAM
    out.extend_from_slice(&[0u8; 8]); // SEAMATTRIBUTES
    out.extend_from_slice(&b.td_attributes);
    out.extend_from_slice(&b.xfam);
    out.extend_from_slice(&b.mrtd);
    out.extend_from_slice(&b.mrconfigid);
    out.extend_from_slice(&[0u8; 48]); // MROWNER
    out.extend_from_slice(&[0u8; 48]); // MROWNERCONFIG
    for rtmr in &b.rtmr {
        out.extend_from_slice(rtmr);
    }
    out.extend_from_slice(&b.report_data);
    out
}

/// The QE's SGX enclave report. REPORTDATA binds the attestation key: SHA-256(key x‖y ‖ QE auth
/// data), then 32 zero bytes.
pub(super) fn qe_report(attestation_key: &[u8; 64]) -> Vec<u8> {
    let binding = Sha256::new()
        .chain_update(attestation_key)
        .chain_update(QE_AUTH_DATA)
        .finalize();
    let mut r = Vec::with_capacity(QE_REPORT_LEN);
    r.extend_from_slice(&CPU_SVN);
    r.extend_from_slice(&0u32.to_le_bytes()); // MISCSELECT
    r.extend_from_slice(&[0u8; 28]);
    r.extend_from_slice(&QE_ATTRIBUTES);
    r.extend_from_slice(&QE_MRENCLAVE);
    r.extend_from_slice(&[0u8; 32]);
    r.extend_from_slice(&QE_MRSIGNER);
    r.extend_from_slice(&[0u8; 96]);
    r.extend_from_slice(&QE_ISVPRODID.to_le_bytes());
    r.extend_from_slice(&QE_ISVSVN.to_le_bytes());
    r.extend_from_slice(&[0u8; 60]);
    r.extend_from_slice(&binding);
    r.extend_from_slice(&[0u8; 32]);
    r
}

/// Certification data type 6: QE report, its PCK signature, the QE auth data and, nested, the
/// PCK chain as certification data type 5. Returned with its own type and length prefix.
pub(super) fn qe_certification_data(
    qe_report: &[u8],
    qe_report_signature: &[u8; 64],
    pck_chain_pem: &str,
) -> Result<Vec<u8>, SimError> {
    let auth_len = u16::try_from(QE_AUTH_DATA.len())
        .map_err(|_| SimError::Encoding("qe auth data too long".into()))?;
    let mut inner = Vec::new();
    inner.extend_from_slice(qe_report);
    inner.extend_from_slice(qe_report_signature);
    inner.extend_from_slice(&auth_len.to_le_bytes());
    inner.extend_from_slice(&QE_AUTH_DATA);
    inner.extend_from_slice(&CERT_TYPE_PCK_CHAIN.to_le_bytes());
    inner.extend_from_slice(&u32_len(pck_chain_pem.len(), "pck chain")?);
    inner.extend_from_slice(pck_chain_pem.as_bytes());

    let mut out = Vec::with_capacity(inner.len().saturating_add(6));
    out.extend_from_slice(&CERT_TYPE_QE_REPORT.to_le_bytes());
    out.extend_from_slice(&u32_len(inner.len(), "qe certification data")?);
    out.extend_from_slice(&inner);
    Ok(out)
}

/// The whole quote: signed part (header ‖ body), then the signature data length and the
/// signature data (quote signature, attestation key, certification data).
pub(super) fn assemble(
    signed: &[u8],
    signature: &[u8; 64],
    attestation_key: &[u8; 64],
    certification: &[u8],
) -> Result<Vec<u8>, SimError> {
    let sig_len = 64usize
        .saturating_add(64)
        .saturating_add(certification.len());
    let mut q = Vec::with_capacity(signed.len().saturating_add(4).saturating_add(sig_len));
    q.extend_from_slice(signed);
    q.extend_from_slice(&u32_len(sig_len, "signature data")?);
    q.extend_from_slice(signature);
    q.extend_from_slice(attestation_key);
    q.extend_from_slice(certification);
    Ok(q)
}
