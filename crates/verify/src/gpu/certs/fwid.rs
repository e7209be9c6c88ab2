//! The firmware id a GPU's leaf certificate carries, which opaque field 20 of the evidence must
//! repeat: the last 48 bytes of the TCG DICE TcbInfo extension on Hopper leaves, or
//! `fwids[0].digest` of the DiceTcbInfo extension on Blackwell leaves, read by a small DER walker
//! that refuses what it does not expect rather than guessing.

use x509_parser::certificate::X509Certificate;

use super::{FwidSource, GpuEvidenceError};

/// The TCG DICE TcbInfo extension as Hopper leaves carry it; its value ends with the FWID.
const OID_HOPPER_FWID: &str = "2.23.133.5.4.1";
/// The DiceTcbInfo extension as Blackwell leaves carry it; the FWID is `fwids[0].digest`.
const OID_DICE_TCB_INFO: &str = "2.23.133.5.4.1.1";
/// Length of a SHA-384 FWID.
const FWID_LEN: usize = 48;

/// The leaf's firmware id and where it came from, or `None` when the leaf has neither extension.
pub(super) fn leaf_fwid(
    leaf: &X509Certificate<'_>,
) -> Result<Option<(FwidSource, Vec<u8>)>, GpuEvidenceError> {
    let found: Vec<(FwidSource, &[u8])> = leaf
        .extensions()
        .iter()
        .filter_map(|ext| match ext.oid.to_id_string().as_str() {
            OID_HOPPER_FWID => Some((FwidSource::HopperTcbInfo, ext.value)),
            OID_DICE_TCB_INFO => Some((FwidSource::DiceTcbInfo, ext.value)),
            _ => None,
        })
        .collect();
    // Two firmware ids would leave it open which one the comparison should use.
    let [(source, value)] = found.as_slice() else {
        return match found.len() {
            0 => Ok(None),
            count => Err(GpuEvidenceError::DuplicateFwidExtension { count }),
        };
    };
    let fwid = match source {
        FwidSource::HopperTcbInfo => {
            // NVIDIA's Hopper extension ends with the FWID's OCTET STRING, and NVIDIA's own
            // verifiers read exactly its last 48 bytes.
            let start = value.len().checked_sub(FWID_LEN).ok_or_else(|| {
                GpuEvidenceError::FwidExtensionMalformed {
                    oid: OID_HOPPER_FWID,
                    reason: format!(
                        "value is {} bytes, expected at least {FWID_LEN}",
                        value.len()
                    ),
                }
            })?;
            value.get(start..).unwrap_or_default().to_vec()
        }
        FwidSource::DiceTcbInfo => dice_tcb_info_fwid(value)
            .map_err(|reason| GpuEvidenceError::FwidExtensionMalformed {
                oid: OID_DICE_TCB_INFO,
                reason: reason.to_string(),
            })?
            .to_vec(),
    };
    Ok(Some((*source, fwid)))
}

/// `fwids[0].digest` of a DER DiceTcbInfo (TCG DICE Attestation Architecture):
///
/// ```text
/// DiceTcbInfo ::= SEQUENCE { vendor [0] …, model [1] …, version [2] …, svn [3] …,
///     layer [4] …, index [5] …, fwids [6] IMPLICIT SEQUENCE OF FWID OPTIONAL, … }
/// FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }
/// ```
fn dice_tcb_info_fwid(value: &[u8]) -> Result<&[u8], &'static str> {
    const SEQUENCE: u8 = 0x30;
    const OBJECT_IDENTIFIER: u8 = 0x06;
    const OCTET_STRING: u8 = 0x04;
    // Context-specific, constructed, tag number 6: the IMPLICIT SEQUENCE OF of `fwids`.
    const FWIDS: u8 = 0xA6;

    let (tag, tcb_info, rest) = der_element(value)?;
    if tag != SEQUENCE || !rest.is_empty() {
        return Err("expected one der sequence (DiceTcbInfo) filling the extension");
    }
    let mut fields = tcb_info;
    let mut fwids = None;
    while !fields.is_empty() {
        let (tag, content, rest) = der_element(fields)?;
        if tag == FWIDS {
            if fwids.is_some() {
                return Err("fwids field appears twice, expected once");
            }
            fwids = Some(content);
        }
        fields = rest;
    }
    let fwids = fwids.ok_or("DiceTcbInfo has no fwids field, expected one")?;
    let (tag, first_fwid, _) = der_element(fwids)?;
    if tag != SEQUENCE {
        return Err("fwids[0] is not a der sequence, expected FWID");
    }
    let (tag, _hash_alg, rest) = der_element(first_fwid)?;
    if tag != OBJECT_IDENTIFIER {
        return Err("fwids[0] does not start with a hash algorithm oid");
    }
    let (tag, digest, rest) = der_element(rest)?;
    if tag != OCTET_STRING || !rest.is_empty() {
        return Err("fwids[0] does not end with one octet string digest");
    }
    if digest.is_empty() {
        return Err("fwids[0] digest is empty, expected a hash");
    }
    Ok(digest)
}

/// One DER element: (tag, content, what follows). Only single-byte tags and definite lengths of
/// up to four bytes occur in DiceTcbInfo, so anything else is refused rather than guessed at.
fn der_element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = input
        .split_first()
        .ok_or("der element truncated before its tag")?;
    if tag & 0x1F == 0x1F {
        return Err("der element uses a multi-byte tag, expected a single-byte tag");
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or("der element truncated before its length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 {
            return Err("der element length is indefinite or over four bytes");
        }
        let (len_bytes, rest) = rest
            .split_at_checked(count)
            .ok_or("der element truncated inside its length")?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (content, rest) = rest
        .split_at_checked(len)
        .ok_or("der element longer than the bytes that hold it")?;
    Ok((tag, content, rest))
}
