//! NVIDIA's opaque data in the MEASUREMENTS response: the field type numbers, the names NVIDIA's
//! SDKs give them, and the parse of the (u16 type, u16 size, data) fields, which refuses a field
//! that appears twice and checks the shape of every field `SpdmEvidence` interprets.

use super::SpdmError;

/// Opaque field holding the driver version as NUL-padded text.
pub const OPAQUE_FIELD_ID_DRIVER_VERSION: u16 = 3;
/// Opaque field holding the GPU information word.
pub const OPAQUE_FIELD_ID_GPU_INFO: u16 = 4;
/// Opaque field holding the VBIOS version (8 bytes, see `vbios_version`).
pub const OPAQUE_FIELD_ID_VBIOS_VERSION: u16 = 6;
/// Opaque field holding the NVDEC0 status byte.
pub const OPAQUE_FIELD_ID_NVDEC0_STATUS: u16 = 11;
/// Opaque field holding one little-endian u32 count per measurement index.
pub const OPAQUE_FIELD_ID_MSRSCNT: u16 = 12;
/// Opaque field holding the CPR information.
pub const OPAQUE_FIELD_ID_CPRINFO: u16 = 13;
/// Opaque field holding the board id.
pub const OPAQUE_FIELD_ID_BOARD_ID: u16 = 14;
/// Opaque field holding the chip SKU as NUL-padded text.
pub const OPAQUE_FIELD_ID_CHIP_SKU: u16 = 15;
/// Opaque field holding the chip SKU modifier as NUL-padded text.
pub const OPAQUE_FIELD_ID_CHIP_SKU_MOD: u16 = 16;
/// Opaque field holding the project as NUL-padded text.
pub const OPAQUE_FIELD_ID_PROJECT: u16 = 17;
/// Opaque field holding the project SKU as NUL-padded text.
pub const OPAQUE_FIELD_ID_PROJECT_SKU: u16 = 18;
/// Opaque field holding the project SKU modifier as NUL-padded text.
pub const OPAQUE_FIELD_ID_PROJECT_SKU_MOD: u16 = 19;
/// Opaque field holding the firmware id the device certificate must repeat (48 bytes).
pub const OPAQUE_FIELD_ID_FWID: u16 = 20;
/// Opaque field holding the protected PCIe status byte.
pub const OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS: u16 = 21;
/// Opaque field holding the NVSwitch PDIs of a protected-PCIe system.
pub const OPAQUE_FIELD_ID_SWITCH_PDI: u16 = 22;
/// Opaque field holding the opaque data format version.
pub const OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION: u16 = 34;
/// Opaque field holding the multi-GPU mode the GPU runs in (0 SPT, 1 MPT, 2 PPCIE).
pub const OPAQUE_FIELD_ID_FEATURE_FLAG: u16 = 36;

/// NVIDIA's names of the opaque field types, as its SDKs print them. The numbering is NVIDIA's
/// wire format; the names let a parse be compared with NVIDIA's own parse output.
const OPAQUE_FIELD_NAMES: &[(u16, &str)] = &[
    (1, "OPAQUE_FIELD_ID_CERT_ISSUER_NAME"),
    (2, "OPAQUE_FIELD_ID_CERT_AUTHORITY_KEY_IDENTIFIER"),
    (3, "OPAQUE_FIELD_ID_DRIVER_VERSION"),
    (4, "OPAQUE_FIELD_ID_GPU_INFO"),
    (5, "OPAQUE_FIELD_ID_SKU"),
    (6, "OPAQUE_FIELD_ID_VBIOS_VERSION"),
    (7, "OPAQUE_FIELD_ID_MANUFACTURER_ID"),
    (8, "OPAQUE_FIELD_ID_TAMPER_DETECTION"),
    (9, "OPAQUE_FIELD_ID_SMC"),
    (10, "OPAQUE_FIELD_ID_VPR"),
    (11, "OPAQUE_FIELD_ID_NVDEC0_STATUS"),
    (12, "OPAQUE_FIELD_ID_MSRSCNT"),
    (13, "OPAQUE_FIELD_ID_CPRINFO"),
    (14, "OPAQUE_FIELD_ID_BOARD_ID"),
    (15, "OPAQUE_FIELD_ID_CHIP_SKU"),
    (16, "OPAQUE_FIELD_ID_CHIP_SKU_MOD"),
    (17, "OPAQUE_FIELD_ID_PROJECT"),
    (18, "OPAQUE_FIELD_ID_PROJECT_SKU"),
    (19, "OPAQUE_FIELD_ID_PROJECT_SKU_MOD"),
    (20, "OPAQUE_FIELD_ID_FWID"),
    (21, "OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS"),
    (22, "OPAQUE_FIELD_ID_SWITCH_PDI"),
    (23, "OPAQUE_FIELD_ID_FLOORSWEPT_PORTS"),
    (24, "OPAQUE_FIELD_ID_POSITION_ID"),
    (25, "OPAQUE_FIELD_ID_LOCK_SWITCH_STATUS"),
    (32, "OPAQUE_FIELD_ID_GPU_LINK_CONN"),
    (33, "OPAQUE_FIELD_ID_SYS_ENABLE_STATUS"),
    (34, "OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION"),
    (35, "OPAQUE_FIELD_ID_CHIP_INFO"),
    (36, "OPAQUE_FIELD_ID_FEATURE_FLAG"),
];

/// NVIDIA's name of an opaque field type (`OPAQUE_FIELD_ID_…`), if it is one NVIDIA defines.
pub fn opaque_field_name(field_type: u16) -> Option<&'static str> {
    OPAQUE_FIELD_NAMES
        .iter()
        .find(|(t, _)| *t == field_type)
        .map(|(_, name)| *name)
}

/// The opaque field type NVIDIA calls `name`, the inverse of `opaque_field_name`.
pub fn opaque_field_type(name: &str) -> Option<u16> {
    OPAQUE_FIELD_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(t, _)| *t)
}

/// Parses the opaque data as (u16 type, u16 size, data) fields that must fill it exactly.
pub(super) fn parse_opaque(data: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, SpdmError> {
    let mut fields: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut rest = data;
    let mut offset = 0usize;
    while !rest.is_empty() {
        let Some((&[t0, t1, s0, s1], after_header)) = rest.split_first_chunk::<4>() else {
            return Err(SpdmError::OpaqueHeaderTruncated {
                offset,
                remaining: rest.len(),
            });
        };
        let field_type = u16::from_le_bytes([t0, t1]);
        let size = usize::from(u16::from_le_bytes([s0, s1]));
        let Some((value, after_field)) = after_header.split_at_checked(size) else {
            return Err(SpdmError::OpaqueFieldTruncated {
                field_type,
                size,
                remaining: after_header.len(),
            });
        };
        // A second copy of a field (say a second firmware id) would make "the" value depend on
        // which copy a reader picks, so it is refused rather than resolved.
        if fields.iter().any(|(t, _)| *t == field_type) {
            return Err(SpdmError::DuplicateOpaqueField { field_type });
        }
        check_opaque_field(field_type, value)?;
        fields.push((field_type, value.to_vec()));
        offset = offset.saturating_add(4).saturating_add(size);
        rest = after_field;
    }
    Ok(fields)
}

/// Checks the shape of the opaque fields this module interprets, so that the accessors of
/// `SpdmEvidence` never have to guess. Fields it does not interpret are kept as they are.
fn check_opaque_field(field_type: u16, value: &[u8]) -> Result<(), SpdmError> {
    let name = opaque_field_name(field_type).unwrap_or("unknown");
    let size = |expected: &'static str| SpdmError::OpaqueFieldSize {
        field_type,
        name,
        expected,
        found: value.len(),
    };
    match field_type {
        OPAQUE_FIELD_ID_DRIVER_VERSION
        | OPAQUE_FIELD_ID_CHIP_SKU
        | OPAQUE_FIELD_ID_CHIP_SKU_MOD
        | OPAQUE_FIELD_ID_PROJECT
        | OPAQUE_FIELD_ID_PROJECT_SKU
        | OPAQUE_FIELD_ID_PROJECT_SKU_MOD => check_text(field_type, name, value),
        OPAQUE_FIELD_ID_VBIOS_VERSION if value.len() != 8 => Err(size("8")),
        OPAQUE_FIELD_ID_FWID if value.len() != 48 => Err(size("48 (a sha-384 digest)")),
        OPAQUE_FIELD_ID_MSRSCNT if value.len() % 4 != 0 => Err(size("a multiple of 4")),
        OPAQUE_FIELD_ID_NVDEC0_STATUS | OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS
            if value.len() != 1 =>
        {
            Err(size("1"))
        }
        OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION | OPAQUE_FIELD_ID_FEATURE_FLAG
            if !(1..=2).contains(&value.len()) =>
        {
            Err(size("1 or 2"))
        }
        _ => Ok(()),
    }
}

/// Text fields are printable ASCII followed only by NUL padding: anything else would be shown
/// to people, and compared with pins, as something other than what the GPU sent.
fn check_text(field_type: u16, name: &'static str, value: &[u8]) -> Result<(), SpdmError> {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    let bad = value.iter().enumerate().find(|(i, b)| {
        if *i < end {
            !(0x20..=0x7E).contains(*b)
        } else {
            **b != 0
        }
    });
    match bad {
        Some((offset, found)) => Err(SpdmError::OpaqueFieldText {
            field_type,
            name,
            offset,
            found: *found,
        }),
        None => Ok(()),
    }
}
