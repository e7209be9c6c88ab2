//! Parsing of Intel TDX quotes (versions 4 and 5) into the header and TD report body fields.
//!
//! This module only reads bytes; whether the quote is genuine is dcap-qvl's job (`dcap.rs`). The
//! offsets follow `REFERENCE.md` §2: a 48-byte header, then the TD report body at 48 (v4) or,
//! after a 6-byte body descriptor, at 54 (v5).

use std::fmt;

/// Header length of every DCAP quote.
const HEADER_LEN: usize = 48;
/// TEE type of a TDX quote; SGX quotes carry 0.
pub const TEE_TYPE_TDX: u32 = 0x81;
const TEE_TYPE_SGX: u32 = 0x00;
/// Attestation key type ECDSA-256 with P-256.
const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;

/// Length of the TD 1.0 report body, and of the TD 1.5 one (which adds TEE_TCB_SVN2 and
/// MRSERVICETD), and of the TD 1.5 "ex" one.
const BODY_LEN_TD10: usize = 584;
const BODY_LEN_TD15: usize = 648;
const BODY_LEN_TD15EX: usize = 885;

/// Why a byte string is not a TDX quote we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteParseError {
    #[error("quote is {found} bytes, shorter than the {expected}-byte {part}")]
    TooShort {
        part: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("tee type: expected 0x81 (tdx), found {0}")]
    NotTdx(String),
    #[error("quote version: expected 4 or 5, found {0}")]
    UnsupportedVersion(u16),
    #[error("attestation key type: expected 2 (ecdsa p-256), found {0}")]
    UnsupportedKeyType(u16),
    #[error("v5 body type: expected 2 (td 1.0), 3 (td 1.5) or 4 (td 1.5ex), found {0}")]
    UnsupportedBodyType(u16),
    #[error("v5 body size: expected {expected} for body type {body_type}, found {found}")]
    BodySizeMismatch {
        body_type: u16,
        expected: usize,
        found: u32,
    },
    #[error(
        "signature data length {declared} runs past the end of the quote ({available} bytes left)"
    )]
    SignatureDataOverrun { declared: usize, available: usize },
}

/// The TD report body fields teewatch reads, as raw bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TdReportBody {
    pub tee_tcb_svn: [u8; 16],
    pub mrseam: [u8; 48],
    pub mrsignerseam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mrtd: [u8; 48],
    pub mrconfigid: [u8; 48],
    pub mrowner: [u8; 48],
    pub mrownerconfig: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// MRSERVICETD, present from TD 1.5 bodies on.
    pub mr_service_td: Option<[u8; 48]>,
}

impl fmt::Debug for TdReportBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdReportBody")
            .field("mrtd", &hex::encode(self.mrtd))
            .field("report_data", &hex::encode(self.report_data))
            .finish_non_exhaustive()
    }
}

/// A parsed TDX quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxQuote {
    pub version: u16,
    /// 2 (TD 1.0), 3 (TD 1.5) or 4 (TD 1.5ex); v4 quotes always carry a TD 1.0 body.
    pub body_type: u16,
    pub body: TdReportBody,
}

/// Copies `N` bytes at `offset`, or reports which part the quote is too short for.
fn take<const N: usize>(
    bytes: &[u8],
    offset: usize,
    part: &'static str,
) -> Result<[u8; N], QuoteParseError> {
    bytes
        .get(offset..offset + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(QuoteParseError::TooShort {
            part,
            expected: offset + N,
            found: bytes.len(),
        })
}

fn u16_at(bytes: &[u8], offset: usize, part: &'static str) -> Result<u16, QuoteParseError> {
    take::<2>(bytes, offset, part).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], offset: usize, part: &'static str) -> Result<u32, QuoteParseError> {
    take::<4>(bytes, offset, part).map(u32::from_le_bytes)
}

impl TdxQuote {
    /// Parses the header and body of a TDX quote and checks that the signature data it declares
    /// fits in the bytes given.
    pub fn parse(bytes: &[u8]) -> Result<TdxQuote, QuoteParseError> {
        // 1. The header: version, attestation key type and TEE type decide how to read the rest.
        let version = u16_at(bytes, 0, "header")?;
        let key_type = u16_at(bytes, 2, "header")?;
        let tee_type = u32_at(bytes, 4, "header")?;
        take::<HEADER_LEN>(bytes, 0, "header")?;
        if tee_type != TEE_TYPE_TDX {
            let name = if tee_type == TEE_TYPE_SGX {
                format!("0x{tee_type:02x} (sgx)")
            } else {
                format!("0x{tee_type:02x}")
            };
            return Err(QuoteParseError::NotTdx(name));
        }
        if key_type != ATT_KEY_TYPE_ECDSA_P256 {
            return Err(QuoteParseError::UnsupportedKeyType(key_type));
        }

        // 2. Where the body starts and how long it is.
        let (body_type, body_offset, body_len) = match version {
            4 => (2u16, HEADER_LEN, BODY_LEN_TD10),
            5 => {
                let body_type = u16_at(bytes, HEADER_LEN, "v5 body descriptor")?;
                let body_size = u32_at(bytes, HEADER_LEN + 2, "v5 body descriptor")?;
                let expected = match body_type {
                    2 => BODY_LEN_TD10,
                    3 => BODY_LEN_TD15,
                    4 => BODY_LEN_TD15EX,
                    other => return Err(QuoteParseError::UnsupportedBodyType(other)),
                };
                if usize::try_from(body_size).ok() != Some(expected) {
                    return Err(QuoteParseError::BodySizeMismatch {
                        body_type,
                        expected,
                        found: body_size,
                    });
                }
                (body_type, HEADER_LEN + 6, expected)
            }
            other => return Err(QuoteParseError::UnsupportedVersion(other)),
        };

        // 3. The body fields at their offsets within the body.
        let b = body_offset;
        let part = "td report body";
        take::<1>(bytes, b + body_len - 1, part)?;
        let body = TdReportBody {
            tee_tcb_svn: take(bytes, b, part)?,
            mrseam: take(bytes, b + 16, part)?,
            mrsignerseam: take(bytes, b + 64, part)?,
            seam_attributes: take(bytes, b + 112, part)?,
            td_attributes: take(bytes, b + 120, part)?,
            xfam: take(bytes, b + 128, part)?,
            mrtd: take(bytes, b + 136, part)?,
            mrconfigid: take(bytes, b + 184, part)?,
            mrowner: take(bytes, b + 232, part)?,
            mrownerconfig: take(bytes, b + 280, part)?,
            rtmr: [
                take(bytes, b + 328, part)?,
                take(bytes, b + 376, part)?,
                take(bytes, b + 424, part)?,
                take(bytes, b + 472, part)?,
            ],
            report_data: take(bytes, b + 520, part)?,
            mr_service_td: if body_type >= 3 {
                Some(take(bytes, b + 600, part)?)
            } else {
                None
            },
        };

        // 4. The signature data length, and that the data it announces is present.
        let sig_len_offset = b + body_len;
        let declared = u32_at(bytes, sig_len_offset, "signature data length")?;
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        let available = bytes.len().saturating_sub(sig_len_offset + 4);
        if declared > available {
            return Err(QuoteParseError::SignatureDataOverrun {
                declared,
                available,
            });
        }
        Ok(TdxQuote {
            version,
            body_type,
            body,
        })
    }
}

/// NanoGPT's published "MRENCLAVE" and "MRSIGNER" windows: absolute byte ranges of the quote,
/// whatever the version. See `docs/pins.md` for what they really cover.
pub fn nanogpt_window(bytes: &[u8], start: usize) -> Option<[u8; 32]> {
    bytes
        .get(start..start + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
}

/// Start of the quote window NanoGPT calls "Intel MRENCLAVE".
pub const INTEL_MRENCLAVE_START: usize = 96;
/// Start of the quote window NanoGPT calls "Intel MRSIGNER".
pub const INTEL_MRSIGNER_START: usize = 160;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    // The test reads real quotes from the repository's tests/ (shared with the integration
    // tests); the verifier itself never touches the file system (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    fn vector(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../tests/vectors/tdx/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Our offsets agree with dcap-qvl's own decoding of the same real quotes, v4 and v5.
    #[test]
    fn fields_agree_with_dcap_qvl_on_v4_and_v5() {
        for path in [
            "dcap-qvl/tdx_quote",
            "dcap-qvl/tdx_quote_td15ex",
            "go-tdx-guest/quote_v5_sample.dat",
        ] {
            let raw = vector(path);
            let ours = TdxQuote::parse(&raw).unwrap();
            let theirs = dcap_qvl::quote::Quote::parse(&raw).unwrap();
            let report = theirs.report.as_td10().unwrap();
            assert_eq!(ours.body.mrtd, report.mr_td, "{path}");
            assert_eq!(ours.body.mrseam, report.mr_seam, "{path}");
            assert_eq!(ours.body.td_attributes, report.td_attributes, "{path}");
            assert_eq!(ours.body.rtmr[3], report.rt_mr3, "{path}");
            assert_eq!(ours.body.report_data, report.report_data, "{path}");
            assert_eq!(ours.body.mrconfigid, report.mr_config_id, "{path}");
        }
        assert_eq!(
            TdxQuote::parse(&vector("dcap-qvl/tdx_quote_td15ex"))
                .unwrap()
                .body_type,
            4
        );
        assert_eq!(
            TdxQuote::parse(&vector("go-tdx-guest/quote_v5_sample.dat"))
                .unwrap()
                .body_type,
            3
        );
    }

    #[test]
    fn header_errors_are_specific() {
        let raw = vector("dcap-qvl/tdx_quote");
        let mut v3 = raw.clone();
        v3[0] = 3;
        assert_eq!(
            TdxQuote::parse(&v3),
            Err(QuoteParseError::UnsupportedVersion(3))
        );
        let mut key = raw.clone();
        key[2] = 3;
        assert_eq!(
            TdxQuote::parse(&key),
            Err(QuoteParseError::UnsupportedKeyType(3))
        );
        let mut sig = raw.clone();
        let at = 48 + 584;
        sig[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            TdxQuote::parse(&sig),
            Err(QuoteParseError::SignatureDataOverrun { .. })
        ));
        let v5 = vector("dcap-qvl/tdx_quote_td15ex");
        let mut body = v5.clone();
        body[48] = 9;
        assert_eq!(
            TdxQuote::parse(&body),
            Err(QuoteParseError::UnsupportedBodyType(9))
        );
        let mut size = v5;
        size[50] = 0;
        assert!(matches!(
            TdxQuote::parse(&size),
            Err(QuoteParseError::BodySizeMismatch { body_type: 4, .. })
        ));
        assert!(matches!(
            TdxQuote::parse(&raw[..100]),
            Err(QuoteParseError::TooShort { .. })
        ));
    }
}
