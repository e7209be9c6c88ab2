//! The simulated GPUs: a TEST device-identity PKI and the SPDM evidence each GPU signs.
//!
//! The chain imitates a Hopper GPU's (`tests/vectors/nvidia/nvtrust/hopperCertChain.txt`): leaf
//! first, each certificate signed with ecdsa-with-SHA384 by the next, ending with a self-signed
//! P-384 root, and a leaf that is not a CA, may only sign, and carries the firmware id as the
//! last 48 bytes of the TCG TcbInfo extension 2.23.133.5.4.1. The evidence imitates
//! `hopperAttestationReport.txt`: the 37-byte GET_MEASUREMENTS request carrying the nonce, a
//! MEASUREMENTS response with DMTF SHA-384 blocks, the GPU's nonce, the opaque fields NVIDIA's
//! driver sends in the same order, and a raw P-384 r‖s signature over every byte before it.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, PublicKeyData as _, SerialNumber,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha384};
use x509_parser::prelude::FromDer as _;

use super::{
    NvidiaSimError, TEST_ORG, end_of_time, random_bytes, random_serial, set_validity, shift,
};

/// The most GPUs one test PKI makes: far more than any real node has, small enough that a typo
/// cannot ask for millions of certificates.
const MAX_GPUS: usize = 256;
/// Measurement blocks a Hopper GPU reports (indices 1 to 64, as in the nvtrust sample).
const HOPPER_BLOCKS: u8 = 64;
/// DMTF measurement value type of Hopper's blocks (mutable firmware, digest).
const DMTF_TYPE_HOPPER: u8 = 0x01;
/// The Hopper FWID extension (TCG DICE TcbInfo as NVIDIA encodes it).
const OID_HOPPER_FWID: [u64; 6] = [2, 23, 133, 5, 4, 1];
/// DER of the OID id-sha384 (2.16.840.1.101.3.4.2.2), the FWID's hash algorithm.
const DER_OID_SHA384: [u8; 11] = [
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
];
/// The common name of the TEST root, the anchor a `dangerous_nvidia_device_root` option pins.
const ROOT_CN: &str = "teewatch TEST NVIDIA Device Identity CA — not NVIDIA";
/// The two TEST intermediates, top-down, standing in for "NVIDIA GH100 Identity" and
/// "NVIDIA GH100 Provisioner ICA 1".
const INTERMEDIATE_CNS: [&str; 2] = [
    "teewatch TEST GH100 Identity — not NVIDIA",
    "teewatch TEST GH100 Provisioner ICA — not NVIDIA",
];
/// Opaque field numbers (NVIDIA's), in the order the nvtrust sample carries them.
const OPAQUE_VBIOS_VERSION: u16 = 6;
const OPAQUE_BOARD_ID: u16 = 14;
const OPAQUE_CHIP_SKU: u16 = 15;
const OPAQUE_CHIP_SKU_MOD: u16 = 16;
const OPAQUE_PROJECT: u16 = 17;
const OPAQUE_PROJECT_SKU: u16 = 18;
const OPAQUE_PROJECT_SKU_MOD: u16 = 19;
const OPAQUE_DRIVER_VERSION: u16 = 3;
const OPAQUE_GPU_INFO: u16 = 4;
const OPAQUE_MSRSCNT: u16 = 12;
const OPAQUE_CPRINFO: u16 = 13;
const OPAQUE_NVDEC0_STATUS: u16 = 11;
const OPAQUE_FWID: u16 = 20;
const OPAQUE_PROTECTED_PCIE_STATUS: u16 = 21;

/// What one simulated GPU reports: its measurement blocks, driver and VBIOS versions and the
/// firmware id. Changing a field changes the signed evidence, which is how tests model a GPU
/// running other firmware; changing `fwid` away from the default makes the evidence disagree
/// with the leaf certificate (the "FWID mismatch" fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuState {
    /// (SPDM index, SHA-384 value) per block, in the order they are sent. Indices must be
    /// distinct and in 1..=254, as the parser requires.
    pub blocks: Vec<(u8, [u8; 48])>,
    /// Driver version text, printable ASCII, e.g. "570.172.08".
    pub driver_version: String,
    /// VBIOS version field (opaque field 6), see [`GpuState::encode_vbios`].
    pub vbios: [u8; 8],
    /// Firmware id (opaque field 20); the leaf certificates carry [`GpuState::default`]'s.
    pub fwid: [u8; 48],
}

impl Default for GpuState {
    /// A Hopper GPU as captured in 2025: 64 blocks, driver 570.172.08, VBIOS 96.00.CF.00.02, and
    /// the FWID every test leaf certificate carries. The block values are SHA-384 digests of
    /// labels, so they are stable across runs (pins on them keep working) and plainly not
    /// NVIDIA's.
    fn default() -> Self {
        GpuState {
            blocks: (1..=HOPPER_BLOCKS)
                .map(|index| {
                    let label = format!("teewatch TEST GH100 measurement block {index}");
                    (index, Sha384::digest(label.as_bytes()).into())
                })
                .collect(),
            driver_version: "570.172.08".to_string(),
            vbios: [0x00, 0xCF, 0x00, 0x96, 0x02, 0x00, 0x00, 0x00],
            fwid: default_fwid(),
        }
    }
}

impl GpuState {
    /// The 8 VBIOS bytes for NVIDIA's dotted text "AA.BB.CC.DD.EE" (hex parts): the first four
    /// parts are a little-endian u32, the fifth is byte 4, the rest zero; the inverse of
    /// `SpdmEvidence::vbios_version`.
    pub fn encode_vbios(text: &str) -> Result<[u8; 8], NvidiaSimError> {
        let bad = || NvidiaSimError::Vbios(text.to_string());
        let parts = text
            .split('.')
            .map(|p| {
                if p.len() == 2 {
                    u8::from_str_radix(p, 16).map_err(|_| bad())
                } else {
                    Err(bad())
                }
            })
            .collect::<Result<Vec<u8>, _>>()?;
        let [a, b, c, d, oem] = parts.as_slice() else {
            return Err(bad());
        };
        let [w0, w1, w2, w3] = u32::from_be_bytes([*a, *b, *c, *d]).to_le_bytes();
        Ok([w0, w1, w2, w3, *oem, 0, 0, 0])
    }
}

/// The firmware id of the simulated GSP FMC, the same for every test GPU (they all run the same
/// firmware) and for every run, so the leaves and `GpuState::default` agree by construction.
fn default_fwid() -> [u8; 48] {
    Sha384::digest(b"teewatch TEST GH100 GSP FMC firmware").into()
}

/// One simulated GPU's identity: the leaf's signing key and the chain it presents.
struct TestGpu {
    /// The leaf key in aws-lc-rs form, for the raw r‖s signature SPDM uses.
    key: EcdsaKeyPair,
    /// PEM chain, leaf first, ending with the root, as GPUs' evidence carries it.
    chain_pem: String,
    /// The leaf serial in decimal, which NRAS reports as `ueid`.
    ueid: String,
}

/// A TEST NVIDIA device-identity PKI with one leaf per simulated GPU.
pub struct NvidiaTestPki {
    root_der: Vec<u8>,
    root_pem: String,
    gpus: Vec<TestGpu>,
}

impl std::fmt::Debug for NvidiaTestPki {
    /// Shows the shape and the serials, never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvidiaTestPki")
            .field("root", &ROOT_CN)
            .field(
                "ueids",
                &self
                    .gpus
                    .iter()
                    .map(|g| g.ueid.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl NvidiaTestPki {
    /// Generates a root, two intermediates, and per GPU a BROM CA and a leaf (1 to 256 GPUs), valid from 30 days
    /// before `now` until 9999-12-31T23:59:59Z like NVIDIA's device certificates, so evidence
    /// stays valid however long a simulator runs.
    pub fn generate(gpus: usize, now: DateTime<Utc>) -> Result<Self, NvidiaSimError> {
        if !(1..=MAX_GPUS).contains(&gpus) {
            return Err(NvidiaSimError::GpuCount {
                found: gpus,
                max: MAX_GPUS,
            });
        }
        let not_before = shift(now, TimeDelta::days(-30))?;
        let not_after = end_of_time()?;

        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let root_params = ca_params(ROOT_CN, not_before, not_after)?;
        let root = root_params.self_signed(&root_key)?;
        let mut issuer = Issuer::new(root_params, root_key);
        // PEM of the CAs in chain order (nearest the leaf first), appended to every leaf.
        let mut upper_pems = vec![root.pem()];
        for cn in INTERMEDIATE_CNS {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
            let params = ca_params(cn, not_before, not_after)?;
            let cert = params.signed_by(&key, &issuer)?;
            upper_pems.insert(0, cert.pem());
            issuer = Issuer::new(params, key);
        }
        let upper = upper_pems.concat();

        let fwid = default_fwid();
        let mut made = Vec::with_capacity(gpus);
        for index in 0..gpus {
            // Like NVIDIA's chains, each GPU has its own "GSP BROM" CA between the provisioner
            // and the leaf, so a device chain has five certificates.
            let brom_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
            let brom_params = ca_params(
                &format!("teewatch TEST GH100 GSP BROM {index} — not NVIDIA"),
                not_before,
                not_after,
            )?;
            let brom = brom_params.signed_by(&brom_key, &issuer)?;
            let brom_issuer = Issuer::new(brom_params, brom_key);
            let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
            let params = leaf_params(index, &key, &fwid, not_before, not_after)?;
            let cert = params.signed_by(&key, &brom_issuer)?;
            let ueid = serial_decimal(cert.der())?;
            made.push(TestGpu {
                key: EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P384_SHA384_FIXED_SIGNING,
                    key.serialized_der(),
                )?,
                chain_pem: format!("{}{}{upper}", cert.pem(), brom.pem()),
                ueid,
            });
        }
        Ok(NvidiaTestPki {
            root_der: root.der().to_vec(),
            root_pem: root.pem(),
            gpus: made,
        })
    }

    /// DER of the TEST root: the anchor to pin in place of NVIDIA's device identity root.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// PEM of the TEST root, for a `dangerous_nvidia_device_root` file.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// How many GPUs the PKI has leaves for.
    pub fn gpu_count(&self) -> usize {
        self.gpus.len()
    }

    /// GPU `gpu`'s leaf serial in decimal, as NRAS reports it in `ueid`.
    pub fn ueid(&self, gpu: usize) -> Option<String> {
        self.gpus.get(gpu).map(|g| g.ueid.clone())
    }

    /// GPU `gpu`'s PEM chain, leaf first, ending with the root.
    pub fn chain_pem(&self, gpu: usize) -> Option<&str> {
        self.gpus.get(gpu).map(|g| g.chain_pem.as_str())
    }

    /// A default [`GpuState`] for every GPU of the PKI.
    pub fn default_gpus(&self) -> Vec<GpuState> {
        vec![GpuState::default(); self.gpus.len()]
    }

    /// `nvidia_payload` as vllm-proxy returns it for `nonce`: `{"nonce": hex, "arch": "HOPPER",
    /// "evidence_list": [{"evidence": b64(spdm), "certificate": b64(pem chain), "arch":
    /// "HOPPER"}]}`, one entry per state, GPU `i` signing with leaf `i`. Fewer states than GPUs
    /// is allowed (a node reporting a subset); more is an error.
    pub fn payload(&self, nonce: &[u8; 32], gpus: &[GpuState]) -> Result<Value, NvidiaSimError> {
        self.build_payload(0, nonce, gpus, None)
    }

    /// [`NvidiaTestPki::payload`] for the GPUs from `first` on (entry `i` signs with leaf
    /// `first + i`), with entry `bad`'s signature corrupted if given: how a node that owns a
    /// slice of the PKI's GPUs reports them.
    pub fn payload_of(
        &self,
        first: usize,
        nonce: &[u8; 32],
        gpus: &[GpuState],
        bad: Option<usize>,
    ) -> Result<Value, NvidiaSimError> {
        if let Some(bad) = bad.filter(|b| *b >= gpus.len()) {
            return Err(NvidiaSimError::NoSuchGpu {
                index: bad,
                count: gpus.len(),
            });
        }
        self.build_payload(first, nonce, gpus, bad)
    }

    /// [`NvidiaTestPki::payload`] with GPU `bad`'s evidence signature corrupted: the "bad GPU
    /// signature" fault. Everything else, including the other GPUs, stays valid.
    pub fn payload_bad_signature(
        &self,
        nonce: &[u8; 32],
        gpus: &[GpuState],
        bad: usize,
    ) -> Result<Value, NvidiaSimError> {
        if bad >= gpus.len() {
            return Err(NvidiaSimError::NoSuchGpu {
                index: bad,
                count: gpus.len(),
            });
        }
        self.build_payload(0, nonce, gpus, Some(bad))
    }

    /// SPDM evidence bytes alone for GPU `gpu` in `state`, for tests that build payloads by hand.
    pub fn evidence(
        &self,
        gpu: usize,
        nonce: &[u8; 32],
        state: &GpuState,
    ) -> Result<Vec<u8>, NvidiaSimError> {
        let test_gpu = self.gpus.get(gpu).ok_or(NvidiaSimError::NoSuchGpu {
            index: gpu,
            count: self.gpus.len(),
        })?;
        build_evidence(gpu, nonce, state, &test_gpu.key, false)
    }

    fn build_payload(
        &self,
        first: usize,
        nonce: &[u8; 32],
        gpus: &[GpuState],
        bad: Option<usize>,
    ) -> Result<Value, NvidiaSimError> {
        let owned = self.gpus.get(first..).unwrap_or_default();
        if gpus.len() > owned.len() {
            return Err(NvidiaSimError::NoSuchGpu {
                index: first.saturating_add(gpus.len()).saturating_sub(1),
                count: self.gpus.len(),
            });
        }
        let evidence_list = gpus
            .iter()
            .zip(owned)
            .enumerate()
            .map(|(index, (state, gpu))| {
                let evidence = build_evidence(index, nonce, state, &gpu.key, bad == Some(index))?;
                Ok(json!({
                    "evidence": STANDARD.encode(evidence),
                    "certificate": STANDARD.encode(gpu.chain_pem.as_bytes()),
                    "arch": "HOPPER",
                }))
            })
            .collect::<Result<Vec<Value>, NvidiaSimError>>()?;
        Ok(json!({
            "nonce": hex::encode(nonce),
            "arch": "HOPPER",
            "evidence_list": evidence_list,
        }))
    }
}

/// Parameters of a TEST CA certificate: CA without a path limit, allowed to sign certificates
/// and CRLs, as NVIDIA's CAs are.
fn ca_params(
    cn: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams, NvidiaSimError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, TEST_ORG);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, not_before, not_after)?;
    Ok(params)
}

/// Parameters of GPU `index`'s leaf: no basic constraints and a digitalSignature-only key usage
/// like NVIDIA's "GSP FMC LF" leaf, a fresh 20-byte serial (the GPU's ueid), and the FWID
/// extension.
fn leaf_params(
    index: usize,
    key: &KeyPair,
    fwid: &[u8; 48],
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams, NvidiaSimError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("teewatch TEST GH100 GPU {index}"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, TEST_ORG);
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.use_authority_key_identifier_extension = true;
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &OID_HOPPER_FWID,
        hopper_tcb_info(&key.subject_public_key_info(), fwid),
    )];
    set_validity(&mut params, not_before, not_after)?;
    Ok(params)
}

/// The extension value NVIDIA's Hopper leaves carry under 2.23.133.5.4.1, rebuilt with the same
/// shape: `SEQUENCE { INTEGER 1, SubjectPublicKeyInfo, SEQUENCE { id-sha384, OCTET STRING fwid
/// } }`. Verifiers (NVIDIA's and ours) read only its last 48 bytes, which this shape makes the
/// FWID.
fn hopper_tcb_info(spki: &[u8], fwid: &[u8; 48]) -> Vec<u8> {
    let hash = der(
        0x30,
        &[DER_OID_SHA384.as_slice(), &der(0x04, fwid)].concat(),
    );
    let body = [der(0x02, &[1]), spki.to_vec(), hash].concat();
    der(0x30, &body)
}

/// One DER element with a definite length (short form, or long form up to 65535 bytes, which
/// covers everything built here).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if short < 0x80 => out.push(short),
        (Ok(one), _) => out.extend([0x81, one]),
        (_, Ok(two)) => {
            out.push(0x82);
            out.extend(two.to_be_bytes());
        }
        // Unreachable for the few hundred bytes built here; a 4-byte length keeps it valid DER.
        _ => {
            out.push(0x84);
            out.extend(u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

/// The decimal serial of a DER certificate, read back by the parser the verifier uses so that
/// the ueid here is exactly the one the verifier will compute.
fn serial_decimal(der: &[u8]) -> Result<String, NvidiaSimError> {
    x509_parser::certificate::X509Certificate::from_der(der)
        .map(|(_, cert)| cert.tbs_certificate.serial.to_str_radix(10))
        .map_err(|e| NvidiaSimError::CertificateParse(e.to_string()))
}

/// GPU `index`'s SPDM GET_MEASUREMENTS request and signed MEASUREMENTS response for `nonce`.
/// With `corrupt`, one bit of the signature's `r` is flipped after signing.
fn build_evidence(
    index: usize,
    nonce: &[u8; 32],
    state: &GpuState,
    key: &EcdsaKeyPair,
    corrupt: bool,
) -> Result<Vec<u8>, NvidiaSimError> {
    let invalid = |reason: String| NvidiaSimError::GpuState { index, reason };

    // The request exactly as NVIDIA's driver sends it: SPDM 1.1 GET_MEASUREMENTS, signature
    // requested, all blocks, the verifier's nonce, slot 0.
    let mut bytes = vec![0x11, 0xE0, 0x01, 0xFF];
    bytes.extend_from_slice(nonce);
    bytes.push(0x00);

    let record = measurement_record(&state.blocks).map_err(invalid)?;
    let count = u8::try_from(state.blocks.len())
        .map_err(|_| invalid(format!("{} blocks, at most 254", state.blocks.len())))?;
    let record_len = u32::try_from(record.len())
        .ok()
        .filter(|len| *len < 1 << 24)
        .ok_or_else(|| invalid("measurement record longer than 24 bits".to_string()))?;
    let [l0, l1, l2, _] = record_len.to_le_bytes();
    // MEASUREMENTS, param1 and param2 zero as in every captured report.
    bytes.extend([0x11, 0x60, 0x00, 0x00, count, l0, l1, l2]);
    bytes.extend_from_slice(&record);
    bytes.extend_from_slice(&random_bytes::<32>());

    let opaque = opaque_data(state).map_err(invalid)?;
    let opaque_len = u16::try_from(opaque.len()).map_err(|_| {
        invalid(format!(
            "opaque data is {} bytes, at most 65535",
            opaque.len()
        ))
    })?;
    bytes.extend(opaque_len.to_le_bytes());
    bytes.extend_from_slice(&opaque);

    let signature = key.sign(&SystemRandom::new(), &bytes)?;
    let mut signature = signature.as_ref().to_vec();
    if corrupt {
        // A flipped bit in r: the signature keeps its shape and fails verification, which is
        // the fault a tampered response produces.
        if let Some(byte) = signature.get_mut(20) {
            *byte ^= 0x01;
        }
    }
    bytes.extend_from_slice(&signature);
    Ok(bytes)
}

/// The measurement record: per block index, spec 1 (DMTF), size 51, DMTF type, value size 48,
/// value. Indices are checked as the parser checks them, so the sim never signs what the
/// verifier would reject as malformed.
fn measurement_record(blocks: &[(u8, [u8; 48])]) -> Result<Vec<u8>, String> {
    let mut seen = [false; 256];
    let mut record = Vec::with_capacity(blocks.len().saturating_mul(55));
    for (index, value) in blocks {
        if *index == 0 || *index == 0xFF {
            return Err(format!("block index {index}, expected 1 to 254"));
        }
        match seen.get_mut(usize::from(*index)) {
            Some(slot) if !*slot => *slot = true,
            _ => return Err(format!("block index {index} appears twice")),
        }
        record.extend([*index, 0x01, 51, 0x00, DMTF_TYPE_HOPPER, 48, 0x00]);
        record.extend_from_slice(value);
    }
    Ok(record)
}

/// NVIDIA's opaque fields, in the nvtrust sample's order, with the sample's values for the board
/// fields and this state's driver, VBIOS and FWID.
fn opaque_data(state: &GpuState) -> Result<Vec<u8>, String> {
    let driver = &state.driver_version;
    if driver.is_empty() || !driver.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        return Err(format!(
            "driver version {driver:?} is not non-empty printable ascii"
        ));
    }
    // One u32 count per index up to the highest block, 1 where a block is present.
    let highest = state.blocks.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let msrscnt: Vec<u8> = (1..=highest)
        .flat_map(|i| {
            let present = state.blocks.iter().any(|(index, _)| *index == i);
            u32::from(present).to_le_bytes()
        })
        .collect();
    let mut driver_field = driver.as_bytes().to_vec();
    driver_field.push(0); // NUL-terminated like the driver's own field.

    let fields: [(u16, &[u8]); 14] = [
        (OPAQUE_VBIOS_VERSION, &state.vbios),
        (OPAQUE_BOARD_ID, &[0xB1, 0x03, 0x00, 0x00]),
        (OPAQUE_CHIP_SKU, b"882\0\0\0\0\0\0"),
        (OPAQUE_CHIP_SKU_MOD, b"0\0\0\0\0"),
        (OPAQUE_PROJECT, b"1010\0"),
        (OPAQUE_PROJECT_SKU, b"0200\0"),
        (OPAQUE_PROJECT_SKU_MOD, &[0, 0]),
        (OPAQUE_DRIVER_VERSION, &driver_field),
        (OPAQUE_GPU_INFO, &[0x80, 0x01, 0, 0, 0, 0, 0, 0]),
        (OPAQUE_MSRSCNT, &msrscnt),
        (OPAQUE_CPRINFO, &[0x00, 0xC0, 0x01, 0x00]),
        (OPAQUE_NVDEC0_STATUS, &[0x55]),
        (OPAQUE_FWID, &state.fwid),
        (OPAQUE_PROTECTED_PCIE_STATUS, &[0x55]),
    ];
    let mut out = Vec::new();
    for (field_type, data) in fields {
        let size = u16::try_from(data.len())
            .map_err(|_| format!("opaque field {field_type} is {} bytes", data.len()))?;
        out.extend(field_type.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend_from_slice(data);
    }
    Ok(out)
}
