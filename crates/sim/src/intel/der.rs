//! The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1), written in DER.
//!
//! rcgen only carries an extension's bytes, so the nested SEQUENCE Intel defines is built here
//! with a few TLV helpers. The layout follows a real Platform CA issued PCK certificate: dcap-qvl
//! requires PPID, TCB (with PCESVN and CPUSVN), PCE-ID, FMSPC and SGX Type, and reads the optional
//! platform instance id and configuration flags when present.

use super::SimError;

/// Arcs of the SGX extension; every field below lives under it.
pub(super) const SGX_EXTENSION: [u64; 7] = [1, 2, 840, 113_741, 1, 13, 1];

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_SEQUENCE: u8 = 0x30;

/// What the PCK certificate says about the platform.
#[derive(Debug, Clone)]
pub(super) struct PckPlatform {
    pub ppid: [u8; 16],
    pub cpu_svn: [u8; 16],
    pub pce_svn: u16,
    pub pce_id: [u8; 2],
    pub fmspc: [u8; 6],
    /// 0 Standard, 1 Scalable (the type of every TDX-capable Xeon).
    pub sgx_type: u8,
    pub platform_instance_id: [u8; 16],
}

fn tlv(tag: u8, content: &[u8]) -> Result<Vec<u8>, SimError> {
    let mut out = Vec::with_capacity(content.len().saturating_add(6));
    out.push(tag);
    let len = content.len();
    match u8::try_from(len) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            // Long form: 0x80 | number of length bytes, then the length big-endian without leading
            // zeros.
            let bytes = len.to_be_bytes();
            let significant: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
            let count = u8::try_from(significant.len())
                .map_err(|_| SimError::Encoding(format!("DER length {len} is too long")))?;
            out.push(0x80 | count);
            out.extend_from_slice(&significant);
        }
    }
    out.extend_from_slice(content);
    Ok(out)
}

fn sequence(items: &[Vec<u8>]) -> Result<Vec<u8>, SimError> {
    tlv(TAG_SEQUENCE, &items.concat())
}

fn oid(arcs: &[u64]) -> Result<Vec<u8>, SimError> {
    let [a, b, rest @ ..] = arcs else {
        return Err(SimError::Encoding("an OID needs two arcs".into()));
    };
    let mut body = Vec::new();
    for arc in std::iter::once(a * 40 + b).chain(rest.iter().copied()) {
        // Base-128, most significant group first, continuation bit on all but the last.
        let mut groups = vec![u8::try_from(arc & 0x7f).unwrap_or(0)];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(u8::try_from(rest & 0x7f).unwrap_or(0) | 0x80);
            rest >>= 7;
        }
        body.extend(groups.iter().rev());
    }
    tlv(TAG_OID, &body)
}

/// A non-negative INTEGER in minimal two's complement form.
fn integer(value: u16) -> Result<Vec<u8>, SimError> {
    let mut content: Vec<u8> = value
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    if content.first().is_none_or(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(TAG_INTEGER, &content)
}

/// One `SEQUENCE { OID sgx-extension.<sub…>, value }` entry.
fn entry(sub: &[u64], value: Vec<u8>) -> Result<Vec<u8>, SimError> {
    let arcs: Vec<u64> = SGX_EXTENSION.iter().chain(sub).copied().collect();
    sequence(&[oid(&arcs)?, value])
}

/// The extension value (the SEQUENCE that rcgen wraps in the extension's OCTET STRING).
pub(super) fn sgx_extension(p: &PckPlatform) -> Result<Vec<u8>, SimError> {
    // TCB: the sixteen CPUSVN components as INTEGERs 1..=16, then PCESVN (17) and the CPUSVN
    // itself as an OCTET STRING (18), which is the one dcap-qvl reads.
    let mut tcb = Vec::with_capacity(18);
    for (index, component) in (1u64..).zip(p.cpu_svn) {
        tcb.push(entry(&[2, index], integer(u16::from(component))?)?);
    }
    tcb.push(entry(&[2, 17], integer(p.pce_svn)?)?);
    tcb.push(entry(&[2, 18], tlv(TAG_OCTET_STRING, &p.cpu_svn)?)?);

    // Configuration flags of Platform CA issued certificates: dynamic platform, cached keys,
    // SMT enabled, as a multi-socket TDX host reports them.
    let flag = |on: bool| tlv(TAG_BOOLEAN, &[if on { 0xff } else { 0x00 }]);
    let configuration = sequence(&[
        entry(&[7, 1], flag(true)?)?,
        entry(&[7, 2], flag(true)?)?,
        entry(&[7, 3], flag(true)?)?,
    ])?;

    sequence(&[
        entry(&[1], tlv(TAG_OCTET_STRING, &p.ppid)?)?,
        entry(&[2], sequence(&tcb)?)?,
        entry(&[3], tlv(TAG_OCTET_STRING, &p.pce_id)?)?,
        entry(&[4], tlv(TAG_OCTET_STRING, &p.fmspc)?)?,
        entry(&[5], tlv(TAG_ENUMERATED, &[p.sgx_type])?)?,
        entry(&[6], tlv(TAG_OCTET_STRING, &p.platform_instance_id)?)?,
        entry(&[7], configuration)?,
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn oid_and_integer_encodings() {
        assert_eq!(
            hex::encode(oid(&SGX_EXTENSION).unwrap()),
            "06092a864886f84d010d01"
        );
        assert_eq!(integer(0).unwrap(), [0x02, 0x01, 0x00]);
        assert_eq!(integer(11).unwrap(), [0x02, 0x01, 0x0b]);
        assert_eq!(integer(255).unwrap(), [0x02, 0x02, 0x00, 0xff]);
        assert_eq!(integer(0x1234).unwrap(), [0x02, 0x02, 0x12, 0x34]);
        let long = tlv(TAG_OCTET_STRING, &[0u8; 300]).unwrap();
        assert_eq!(long.get(..4).unwrap(), [0x04, 0x82, 0x01, 0x2c]);
    }
}
