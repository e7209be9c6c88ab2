//! SPDM GET_MEASUREMENTS request and response, as NVIDIA GPUs return them as attestation evidence.
//!
//! An NVIDIA GPU's evidence is the SPDM 1.1 GET_MEASUREMENTS request the driver sent (37 bytes,
//! carrying the verifier's nonce) followed by the GPU's MEASUREMENTS response: a measurement
//! record of DMTF blocks, the GPU's own nonce, NVIDIA's opaque data (driver and VBIOS versions,
//! the firmware id and more, as type-length-value fields) and an ECDSA P-384 signature over every
//! byte before it. This module only reads that layout; `certs` checks the signature. The
//! signature's offset is found by walking the declared lengths rather than assumed to be the last
//! 96 bytes, because one real sample carries a pad byte after the signature. Every malformed input
//! is a specific `SpdmError`; nothing here panics, allocates without bound or reads a clock.
//!
//! The opaque field numbers, NVIDIA's names for them and the parse of the opaque data live in
//! `opaque`, and are re-exported here.

mod opaque;

use std::collections::HashSet;

pub use opaque::{
    OPAQUE_FIELD_ID_BOARD_ID, OPAQUE_FIELD_ID_CHIP_SKU, OPAQUE_FIELD_ID_CHIP_SKU_MOD,
    OPAQUE_FIELD_ID_CPRINFO, OPAQUE_FIELD_ID_DRIVER_VERSION, OPAQUE_FIELD_ID_FEATURE_FLAG,
    OPAQUE_FIELD_ID_FWID, OPAQUE_FIELD_ID_GPU_INFO, OPAQUE_FIELD_ID_MSRSCNT,
    OPAQUE_FIELD_ID_NVDEC0_STATUS, OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION, OPAQUE_FIELD_ID_PROJECT,
    OPAQUE_FIELD_ID_PROJECT_SKU, OPAQUE_FIELD_ID_PROJECT_SKU_MOD,
    OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS, OPAQUE_FIELD_ID_SWITCH_PDI,
    OPAQUE_FIELD_ID_VBIOS_VERSION, opaque_field_name, opaque_field_type,
};

use opaque::parse_opaque;

/// SPDM version 1.1, the only version NVIDIA GPUs speak in their evidence.
pub const SPDM_VERSION_1_1: u8 = 0x11;
/// Request code of GET_MEASUREMENTS.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// Response code of MEASUREMENTS.
pub const MEASUREMENTS: u8 = 0x60;
/// Request attributes asking for a signed response (bit 0), with digests rather than raw data.
pub const ATTRIBUTE_SIGNATURE_REQUESTED: u8 = 0x01;
/// Measurement operation asking for every measurement block.
pub const ALL_MEASUREMENTS: u8 = 0xFF;
/// Length of the GET_MEASUREMENTS request that opens the evidence.
pub const REQUEST_LEN: usize = 37;
/// Length of the raw ECDSA P-384 signature r ‖ s that closes the response.
pub const SIGNATURE_LEN: usize = 96;
/// Measurement specification byte of a DMTF-formatted block.
pub const MEASUREMENT_SPEC_DMTF: u8 = 0x01;

/// One measurement block of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// Block index (SPDM indices start at 1).
    pub index: u8,
    /// DMTF measurement value type.
    pub dmtf_type: u8,
    /// The measurement value (a 48-byte SHA-384 digest on Hopper).
    pub value: Vec<u8>,
}

/// A parsed evidence blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdmEvidence {
    /// The 32-byte nonce the verifier put into the request (bytes 4..36).
    pub request_nonce: [u8; 32],
    /// The certificate slot the request named (byte 36).
    pub slot_id: u8,
    /// Param1 of the response (byte 39).
    pub response_param1: u8,
    /// Param2 of the response (byte 40).
    pub response_param2: u8,
    /// The measurement blocks in the order they arrived.
    pub blocks: Vec<MeasurementBlock>,
    /// The measurement record length L the response declared (bytes 42..45), all of it consumed.
    pub measurement_record_length: usize,
    /// The GPU's own 32-byte nonce that follows the measurement record.
    pub responder_nonce: [u8; 32],
    /// Opaque TLV fields in order: (type, data).
    pub opaque: Vec<(u16, Vec<u8>)>,
    /// Offset of the signature: the signed region is `bytes[..signature_offset]`.
    pub signature_offset: usize,
    /// ECDSA P-384 signature r ‖ s.
    pub signature: [u8; 96],
    /// Bytes after the signature. They are outside the signed region and carry nothing; they are
    /// tolerated because a real sample ends with one pad byte, and counted so it shows.
    pub trailing_bytes: usize,
}

/// Why bytes are not SPDM evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdmError {
    #[error("spdm evidence is {found} bytes, shorter than the {expected} bytes its {part} needs")]
    TooShort {
        part: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("request spdm version is {found:#04x}, expected 0x11 (spdm 1.1)")]
    RequestVersion { found: u8 },
    #[error("request code is {found:#04x}, expected 0xe0 (get_measurements)")]
    RequestCode { found: u8 },
    #[error("request attributes are {found:#04x}, expected 0x01 (signature requested, digests)")]
    RequestAttributes { found: u8 },
    #[error("request measurement operation is {found:#04x}, expected 0xff (all measurements)")]
    RequestOperation { found: u8 },
    #[error("response spdm version is {found:#04x}, expected 0x11 like the request")]
    ResponseVersion { found: u8 },
    #[error("response code is {found:#04x}, expected 0x60 (measurements)")]
    ResponseCode { found: u8 },
    #[error(
        "measurement block at record offset {offset} needs a 4-byte header, only {remaining} bytes of the record are left"
    )]
    BlockHeaderTruncated { offset: usize, remaining: usize },
    #[error("measurement block at record offset {offset} has index {index}, expected 1 to 254")]
    BlockIndex { offset: usize, index: u8 },
    #[error("measurement block index {index} appears twice, expected each index once")]
    DuplicateBlockIndex { index: u8 },
    #[error(
        "measurement block {index} uses measurement specification {found:#04x}, expected 0x01 (dmtf)"
    )]
    BlockSpec { index: u8, found: u8 },
    #[error(
        "measurement block {index} declares {size} bytes, only {remaining} bytes of the record are left"
    )]
    BlockTruncated {
        index: u8,
        size: usize,
        remaining: usize,
    },
    #[error("measurement block {index} is {size} bytes, shorter than the 3-byte dmtf header")]
    DmtfHeaderTruncated { index: u8, size: usize },
    #[error(
        "measurement block {index} holds a {found}-byte value, expected the {declared} bytes its dmtf header declares"
    )]
    DmtfValueSize {
        index: u8,
        declared: usize,
        found: usize,
    },
    #[error(
        "response declares {declared} measurement blocks, the measurement record holds {found}"
    )]
    BlockCount { declared: u8, found: usize },
    #[error(
        "opaque field at opaque offset {offset} needs a 4-byte header, only {remaining} bytes of opaque data are left"
    )]
    OpaqueHeaderTruncated { offset: usize, remaining: usize },
    #[error(
        "opaque field {field_type} declares {size} bytes, only {remaining} bytes of opaque data are left"
    )]
    OpaqueFieldTruncated {
        field_type: u16,
        size: usize,
        remaining: usize,
    },
    #[error("opaque field {field_type} appears twice, expected each field once")]
    DuplicateOpaqueField { field_type: u16 },
    #[error("opaque field {field_type} ({name}) is {found} bytes, expected {expected}")]
    OpaqueFieldSize {
        field_type: u16,
        name: &'static str,
        expected: &'static str,
        found: usize,
    },
    #[error(
        "opaque field {field_type} ({name}) is not nul-padded printable ascii: byte {found:#04x} at offset {offset}"
    )]
    OpaqueFieldText {
        field_type: u16,
        name: &'static str,
        offset: usize,
        found: u8,
    },
}

/// A cursor over the evidence that reports how many bytes a truncated part needed.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, part: &'static str) -> Result<&'a [u8], SpdmError> {
        let too_short = SpdmError::TooShort {
            part,
            expected: self.pos.saturating_add(len),
            found: self.bytes.len(),
        };
        let rest = self.bytes.get(self.pos..).ok_or(too_short.clone())?;
        let (taken, _) = rest.split_at_checked(len).ok_or(too_short)?;
        self.pos = self.pos.saturating_add(len);
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self, part: &'static str) -> Result<[u8; N], SpdmError> {
        let taken = self.take(N, part)?;
        let mut out = [0u8; N];
        out.copy_from_slice(taken);
        Ok(out)
    }
}

impl SpdmEvidence {
    /// Parses GET_MEASUREMENTS request ‖ MEASUREMENTS response bytes, checking every length and
    /// the fixed header values NVIDIA's evidence uses.
    pub fn parse(bytes: &[u8]) -> Result<SpdmEvidence, SpdmError> {
        let mut reader = Reader { bytes, pos: 0 };

        // The request: only the form NVIDIA's driver sends is accepted, because a request for a
        // single block, an unsigned response or raw bitstreams would change what the blocks and
        // the signature mean.
        let [version, code, attributes, operation] = reader.take_array::<4>("request header")?;
        if version != SPDM_VERSION_1_1 {
            return Err(SpdmError::RequestVersion { found: version });
        }
        if code != GET_MEASUREMENTS {
            return Err(SpdmError::RequestCode { found: code });
        }
        if attributes != ATTRIBUTE_SIGNATURE_REQUESTED {
            return Err(SpdmError::RequestAttributes { found: attributes });
        }
        if operation != ALL_MEASUREMENTS {
            return Err(SpdmError::RequestOperation { found: operation });
        }
        let request_nonce = reader.take_array::<32>("request nonce")?;
        let [slot_id] = reader.take_array::<1>("request slot id")?;

        // The response header.
        let [
            version,
            code,
            response_param1,
            response_param2,
            declared_blocks,
            l0,
            l1,
            l2,
        ] = reader.take_array::<8>("response header")?;
        if version != SPDM_VERSION_1_1 {
            return Err(SpdmError::ResponseVersion { found: version });
        }
        if code != MEASUREMENTS {
            return Err(SpdmError::ResponseCode { found: code });
        }
        let measurement_record_length =
            usize::from(l0) | (usize::from(l1) << 8) | (usize::from(l2) << 16);
        let record = reader.take(measurement_record_length, "measurement record")?;
        let blocks = parse_record(record, declared_blocks)?;

        // The GPU's nonce, then NVIDIA's opaque data.
        let responder_nonce = reader.take_array::<32>("responder nonce")?;
        let opaque_length = u16::from_le_bytes(reader.take_array::<2>("opaque length")?);
        let opaque_bytes = reader.take(usize::from(opaque_length), "opaque data")?;
        let opaque = parse_opaque(opaque_bytes)?;

        // Everything so far is signed; the signature follows.
        let signature_offset = reader.pos;
        let signature = reader.take_array::<SIGNATURE_LEN>("signature")?;
        let trailing_bytes = bytes.len().saturating_sub(reader.pos);

        Ok(SpdmEvidence {
            request_nonce,
            slot_id,
            response_param1,
            response_param2,
            blocks,
            measurement_record_length,
            responder_nonce,
            opaque,
            signature_offset,
            signature,
            trailing_bytes,
        })
    }

    /// The signed region, `bytes[..signature_offset]`, of the bytes this evidence was parsed from.
    pub fn signed_region<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        bytes.get(..self.signature_offset)
    }

    /// The measurement block with SPDM index `index`.
    pub fn block(&self, index: u8) -> Option<&MeasurementBlock> {
        self.blocks.iter().find(|b| b.index == index)
    }

    /// The data of opaque field `field_type`, if present.
    pub fn opaque_field(&self, field_type: u16) -> Option<&[u8]> {
        self.opaque
            .iter()
            .find(|(t, _)| *t == field_type)
            .map(|(_, data)| data.as_slice())
    }

    /// The driver version (opaque field 3), e.g. "550.90.07".
    pub fn driver_version(&self) -> Option<&str> {
        self.text_field(OPAQUE_FIELD_ID_DRIVER_VERSION)
    }

    /// The VBIOS version (opaque field 6) in NVIDIA's dotted form, e.g. "96.00.9F.00.01".
    ///
    /// The field is 8 bytes: the first four are a little-endian u32 whose hex digits give the first
    /// four parts, and the fifth byte is the last part. The bytes `00 9F 00 96 01 00 00 00` read
    /// as 0x96009F00 and 0x01, hence "96.00.9F.00.01"; this matches every report's documented
    /// version and NVIDIA's own parse. The last three bytes are zero in every sample and unused.
    pub fn vbios_version(&self) -> Option<String> {
        let data = self.opaque_field(OPAQUE_FIELD_ID_VBIOS_VERSION)?;
        let (word, rest) = data.split_first_chunk::<4>()?;
        let oem = rest.first()?;
        let [a, b, c, d] = u32::from_le_bytes(*word).to_be_bytes();
        Some(format!("{a:02X}.{b:02X}.{c:02X}.{d:02X}.{oem:02X}"))
    }

    /// The firmware id (opaque field 20), which the device certificate must repeat.
    pub fn fwid(&self) -> Option<&[u8]> {
        self.opaque_field(OPAQUE_FIELD_ID_FWID)
    }

    /// The chip SKU (opaque field 15), e.g. "882".
    pub fn chip_sku(&self) -> Option<&str> {
        self.text_field(OPAQUE_FIELD_ID_CHIP_SKU)
    }

    /// The chip SKU modifier (opaque field 16), e.g. "0".
    pub fn chip_sku_mod(&self) -> Option<&str> {
        self.text_field(OPAQUE_FIELD_ID_CHIP_SKU_MOD)
    }

    /// The project (opaque field 17), e.g. "1010" for an H100 board.
    pub fn project(&self) -> Option<&str> {
        self.text_field(OPAQUE_FIELD_ID_PROJECT)
    }

    /// The project SKU (opaque field 18), e.g. "0200".
    pub fn project_sku(&self) -> Option<&str> {
        self.text_field(OPAQUE_FIELD_ID_PROJECT_SKU)
    }

    /// The project SKU modifier (opaque field 19); empty when the field is all NULs.
    pub fn project_sku_mod(&self) -> Option<&str> {
        self.text_field(OPAQUE_FIELD_ID_PROJECT_SKU_MOD)
    }

    /// The per-index measurement counts (opaque field 12), one little-endian u32 each.
    pub fn msrscnt(&self) -> Option<Vec<u32>> {
        let data = self.opaque_field(OPAQUE_FIELD_ID_MSRSCNT)?;
        Some(
            data.chunks_exact(4)
                .filter_map(|c| c.first_chunk::<4>().map(|w| u32::from_le_bytes(*w)))
                .collect(),
        )
    }

    /// The NVDEC0 status byte (opaque field 11).
    pub fn nvdec0_status(&self) -> Option<u8> {
        self.opaque_field(OPAQUE_FIELD_ID_NVDEC0_STATUS)?
            .first()
            .copied()
    }

    /// The protected PCIe status byte (opaque field 21).
    pub fn protected_pcie_status(&self) -> Option<u8> {
        self.opaque_field(OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS)?
            .first()
            .copied()
    }

    /// The opaque data format version (opaque field 34), little-endian.
    pub fn opaque_data_version(&self) -> Option<u16> {
        small_le(self.opaque_field(OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION)?)
    }

    /// The multi-GPU mode (opaque field 36): 0 single GPU (SPT), 1 multi-GPU (MPT), 2 protected
    /// PCIe (PPCIE).
    pub fn feature_flag(&self) -> Option<u16> {
        small_le(self.opaque_field(OPAQUE_FIELD_ID_FEATURE_FLAG)?)
    }

    /// A text field with its NUL padding removed. `parse` already checked it is printable ASCII.
    fn text_field(&self, field_type: u16) -> Option<&str> {
        let data = self.opaque_field(field_type)?;
        let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
        std::str::from_utf8(data.get(..end)?).ok()
    }
}

/// A 1- or 2-byte little-endian number; `parse` already checked the size.
fn small_le(data: &[u8]) -> Option<u16> {
    match data {
        [lo] => Some(u16::from(*lo)),
        [lo, hi] => Some(u16::from_le_bytes([*lo, *hi])),
        _ => None,
    }
}

/// Parses the measurement record, which must hold exactly `declared` whole blocks.
fn parse_record(record: &[u8], declared: u8) -> Result<Vec<MeasurementBlock>, SpdmError> {
    let mut blocks = Vec::with_capacity(usize::from(declared));
    let mut seen = HashSet::new();
    let mut rest = record;
    let mut offset = 0usize;
    while !rest.is_empty() {
        let Some((&[index, spec, s0, s1], after_header)) = rest.split_first_chunk::<4>() else {
            return Err(SpdmError::BlockHeaderTruncated {
                offset,
                remaining: rest.len(),
            });
        };
        // Index 0 asks for the block count and 0xFF for all blocks; neither names a block.
        if index == 0 || index == 0xFF {
            return Err(SpdmError::BlockIndex { offset, index });
        }
        // A repeated index would let two different values claim the same measurement, and a
        // consumer looking blocks up by index would see only one of them.
        if !seen.insert(index) {
            return Err(SpdmError::DuplicateBlockIndex { index });
        }
        if spec != MEASUREMENT_SPEC_DMTF {
            return Err(SpdmError::BlockSpec { index, found: spec });
        }
        let size = usize::from(u16::from_le_bytes([s0, s1]));
        let Some((body, after_block)) = after_header.split_at_checked(size) else {
            return Err(SpdmError::BlockTruncated {
                index,
                size,
                remaining: after_header.len(),
            });
        };
        let Some((&[dmtf_type, v0, v1], value)) = body.split_first_chunk::<3>() else {
            return Err(SpdmError::DmtfHeaderTruncated { index, size });
        };
        let declared_value = usize::from(u16::from_le_bytes([v0, v1]));
        if value.len() != declared_value {
            return Err(SpdmError::DmtfValueSize {
                index,
                declared: declared_value,
                found: value.len(),
            });
        }
        blocks.push(MeasurementBlock {
            index,
            dmtf_type,
            value: value.to_vec(),
        });
        offset = offset.saturating_add(4).saturating_add(size);
        rest = after_block;
    }
    if blocks.len() != usize::from(declared) {
        return Err(SpdmError::BlockCount {
            declared,
            found: blocks.len(),
        });
    }
    Ok(blocks)
}
