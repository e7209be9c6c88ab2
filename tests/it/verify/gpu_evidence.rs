//! Tests of the NVIDIA GPU evidence parser (`spdm`) and verifier (`certs`) on every real vector in
//! `tests/vectors/nvidia` and on the generated test PKI in `tests/fixtures/gpu_test_pki`.
//!
//! The real vectors prove the parser agrees with NVIDIA's own parse and that genuine evidence
//! verifies; the test PKI supplies what real certificates cannot: validity windows that end,
//! leaves without a firmware id and a P-256 issuer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use teewatch::verify::gpu::certs::{
    self, ChainCache, FwidSource, GpuDevice, GpuEvidenceError, verify_gpu_evidence,
};
use teewatch::verify::gpu::spdm::{self, SpdmError, SpdmEvidence};

/// 2026-11-28T00:00:00Z, the day the vectors were checked.
const NOW: i64 = 1_795_824_000;
/// 2026-01-15T00:00:00Z, inside the test leaf's window.
const JAN_15_2026: i64 = 1_768_435_200;
/// 2026-03-01T00:00:00Z, after the test leaf expired.
const MAR_01_2026: i64 = 1_772_323_200;
/// 2025-12-15T00:00:00Z, before the test leaf's window opens.
const DEC_15_2025: i64 = 1_765_756_800;

/// The serial of nvtrust's sample leaf in decimal, which NRAS reports as `ueid`.
const NVTRUST_UEID: &str = "478176379286082186618948445787393647364802107249";

fn read(relative: &str) -> Vec<u8> {
    let p = common::repo_path(relative);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

fn vector(relative: &str) -> Vec<u8> {
    read(&format!("tests/vectors/nvidia/{relative}"))
}

fn fixture(name: &str) -> Vec<u8> {
    read(&format!("tests/fixtures/gpu_test_pki/{name}"))
}

/// A hex report file as bytes.
fn hex_report(relative: &str) -> Vec<u8> {
    let text = String::from_utf8(vector(relative)).unwrap();
    hex::decode(text.trim()).unwrap()
}

fn json(relative: &str) -> Value {
    serde_json::from_slice(&vector(relative)).unwrap()
}

/// DER of the first certificate in a PEM file.
fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    block.contents
}

/// PEM of one DER certificate.
fn der_to_pem(der: &[u8]) -> Vec<u8> {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// Every certificate of a PEM chain as DER, in order.
fn chain_ders(pem: &[u8]) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .map(|p| p.unwrap().contents)
        .collect()
}

fn ders_to_pem(ders: &[Vec<u8>]) -> Vec<u8> {
    ders.iter().flat_map(|d| der_to_pem(d)).collect()
}

fn nvidia_root() -> Vec<u8> {
    pem_to_der(&vector("nvtrust/verifier_device_root.pem"))
}

fn parse(bytes: &[u8]) -> SpdmEvidence {
    SpdmEvidence::parse(bytes).unwrap()
}

fn verify(
    evidence: &[u8],
    chain: &[u8],
    root: &[u8],
    now: i64,
    cache: &ChainCache,
) -> Result<GpuDevice, GpuEvidenceError> {
    let parsed = SpdmEvidence::parse(evidence)?;
    verify_gpu_evidence(evidence, &parsed, chain, root, now, cache)
}

/// A JSON evidence list entry: (evidence, chain PEM, nonce hex, the entry).
fn json_entries(relative: &str) -> Vec<(Vec<u8>, Vec<u8>, String, Value)> {
    json(relative)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                B64.decode(e["evidence"].as_str().unwrap()).unwrap(),
                B64.decode(e["certificate"].as_str().unwrap()).unwrap(),
                e["nonce"].as_str().unwrap().to_string(),
                e.clone(),
            )
        })
        .collect()
}

/// The hex-file reports and their chains (each chain's leaf verified with a script first).
const HEX_PAIRS: &[(&str, &str)] = &[
    (
        "nvtrust/hopperAttestationReport.txt",
        "nvtrust/hopperCertChain.txt",
    ),
    (
        "nvtrust-initial/attestationReport.txt",
        "nvtrust-initial/gpuAkCertChain.txt",
    ),
    (
        "trustee/hopper_coco_report1.txt",
        "trustee/hopper_coco_certs1.txt",
    ),
    (
        "attestation-sdk/hopperAttestationReport.txt",
        "attestation-sdk/hopperCertChain.txt",
    ),
    (
        "attestation-sdk/sample_hopperAttestationReport_535.txt",
        "attestation-sdk/sample_hopperCertChain_535.txt",
    ),
    (
        "attestation-sdk/sample_blackwellAttestationReport.txt",
        "attestation-sdk/sample_blackwellCertChain.txt",
    ),
];

const JSON_LISTS: &[(&str, usize)] = &[
    ("nvtrust/ppcie_gpu_evidence_8xH100.json", 8),
    ("attestation-sdk/multi_gpu_hopper.json", 4),
    ("attestation-sdk/evidence_hopper_590_12.json", 1),
];

/// Every real evidence, labelled, with its chain.
fn all_real() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = HEX_PAIRS
        .iter()
        .map(|(r, c)| (r.to_string(), hex_report(r), vector(c)))
        .collect();
    for (file, _) in JSON_LISTS {
        for (i, (ev, chain, _, _)) in json_entries(file).into_iter().enumerate() {
            out.push((format!("{file}#{i}"), ev, chain));
        }
    }
    out
}

fn json_hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    hex::decode(s.strip_prefix("0x").unwrap()).unwrap()
}

fn json_u8(v: &Value) -> u8 {
    let bytes = json_hex(v);
    assert_eq!(bytes.len(), 1, "{v}");
    bytes[0]
}

// ---------------------------------------------------------------------------------------------
// spdm: NVIDIA's own parse as the oracle

#[test]
fn response_parse_equals_nvidia_spdm_parsed_output() {
    let bytes = hex_report("attestation-sdk/hopperAttestationReport.txt");
    let ev = parse(&bytes);
    let oracle = json("attestation-sdk/spdm_parsed_output.json");
    let mut compared = 0;
    for (key, value) in oracle.as_object().unwrap() {
        match key.as_str() {
            "SPDMVersion" => {
                assert_eq!(json_u8(value), bytes[37]);
                assert_eq!(json_u8(value), spdm::SPDM_VERSION_1_1);
            }
            "RequestResponseCode" => {
                assert_eq!(json_u8(value), bytes[38]);
                assert_eq!(json_u8(value), spdm::MEASUREMENTS);
            }
            "Param1" => assert_eq!(json_u8(value), ev.response_param1),
            "Param2" => assert_eq!(json_u8(value), ev.response_param2),
            "NumberOfBlocks" => assert_eq!(value.as_u64().unwrap() as usize, ev.blocks.len()),
            "MeasurementRecordLength" => {
                assert_eq!(
                    value.as_u64().unwrap() as usize,
                    ev.measurement_record_length
                )
            }
            "Nonce" => assert_eq!(json_hex(value), ev.responder_nonce),
            "OpaqueLength" => {
                let ours: usize = ev.opaque.iter().map(|(_, d)| 4 + d.len()).sum();
                assert_eq!(value.as_u64().unwrap() as usize, ours);
            }
            "Signature" => assert_eq!(json_hex(value), ev.signature.to_vec()),
            "MeasurementRecord" => compare_record(value, &ev),
            "OpaqueData" => compare_opaque(value, &ev),
            other => panic!("spdm_parsed_output.json key {other} is not compared"),
        }
        compared += 1;
    }
    assert_eq!(compared, 11);
    assert_eq!(ev.trailing_bytes, 0);
    assert_eq!(ev.signature_offset + 96, bytes.len());
}

fn compare_record(record: &Value, ev: &SpdmEvidence) {
    for (key, value) in record.as_object().unwrap() {
        match key.as_str() {
            "NumberOfBlocks" => assert_eq!(value.as_u64().unwrap() as usize, ev.blocks.len()),
            "MeasurementBlocks" => {
                let blocks = value.as_object().unwrap();
                assert_eq!(blocks.len(), ev.blocks.len());
                for (index, block) in blocks {
                    let ours = ev.block(index.parse().unwrap()).unwrap();
                    for (field, v) in block.as_object().unwrap() {
                        match field.as_str() {
                            "DMTFSpecMeasurementValueType" => {
                                assert_eq!(v.as_u64().unwrap(), u64::from(ours.dmtf_type))
                            }
                            "DMTFSpecMeasurementValueSize" => {
                                assert_eq!(v.as_u64().unwrap() as usize, ours.value.len())
                            }
                            "DMTFSpecMeasurementValue" => assert_eq!(json_hex(v), ours.value),
                            other => panic!("block field {other} is not compared"),
                        }
                    }
                }
            }
            other => panic!("MeasurementRecord key {other} is not compared"),
        }
    }
}

fn compare_opaque(opaque: &Value, ev: &SpdmEvidence) {
    let fields = opaque["OpaqueDataField"].as_object().unwrap();
    assert_eq!(opaque.as_object().unwrap().len(), 1);
    let mut nvidia_types = Vec::new();
    for (name, value) in fields {
        let t = spdm::opaque_field_type(name)
            .unwrap_or_else(|| panic!("{name} is not a known opaque field"));
        nvidia_types.push(t);
        if t == spdm::OPAQUE_FIELD_ID_MSRSCNT {
            let theirs: Vec<u32> = value
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(theirs, ev.msrscnt().unwrap(), "{name}");
        } else {
            assert_eq!(json_hex(value), ev.opaque_field(t).unwrap(), "{name}");
        }
    }
    // NVIDIA's C++ parse at that commit does not print OPAQUE_DATA_VERSION (34) and
    // FEATURE_FLAG (36); every other field we read, it read identically.
    let mut extra: Vec<u16> = ev
        .opaque
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| !nvidia_types.contains(t))
        .collect();
    extra.sort_unstable();
    assert_eq!(extra, vec![34, 36]);
    assert_eq!(nvidia_types.len() + 2, ev.opaque.len());
}

#[test]
fn request_parse_equals_nvidia_spdm_req_parsed_output() {
    let bytes = hex_report("attestation-sdk/hopperAttestationReport.txt");
    let ev = parse(&bytes);
    let oracle = json("attestation-sdk/spdm_req_parsed_output.json");
    for (key, value) in oracle.as_object().unwrap() {
        match key.as_str() {
            "SPDMVersion" => assert_eq!(json_u8(value), bytes[0]),
            "RequestResponseCode" => {
                assert_eq!(json_u8(value), bytes[1]);
                assert_eq!(json_u8(value), spdm::GET_MEASUREMENTS);
            }
            "Param1" => assert_eq!(json_u8(value), spdm::ATTRIBUTE_SIGNATURE_REQUESTED),
            "Param2" => assert_eq!(json_u8(value), spdm::ALL_MEASUREMENTS),
            "Nonce" => assert_eq!(json_hex(value), ev.request_nonce),
            "SlotIDParam" => assert_eq!(json_u8(value), ev.slot_id),
            other => panic!("spdm_req_parsed_output.json key {other} is not compared"),
        }
    }
}

#[test]
fn nvtrust_parse_equals_trustee_expected_claims() {
    let ev = parse(&hex_report("nvtrust/hopperAttestationReport.txt"));
    let claims = json("trustee/hopperAttestationReport-claims.txt");
    let config = &claims["config"];
    let text = |k: &str| config[k].as_str().unwrap().to_string();
    assert_eq!(ev.driver_version().unwrap(), text("driver_version"));
    assert_eq!(
        ev.vbios_version().unwrap().to_lowercase(),
        text("vbios_version")
    );
    assert_eq!(hex::encode(ev.fwid().unwrap()), text("fwid"));
    assert_eq!(ev.chip_sku().unwrap(), text("chip_sku"));
    assert_eq!(ev.chip_sku_mod().unwrap(), text("chip_sku_mod"));
    assert_eq!(ev.project().unwrap(), text("project"));
    assert_eq!(ev.project_sku().unwrap(), text("project_sku"));
    // trustee prints the all-NUL modifier as hex; the text form is empty.
    assert_eq!(ev.project_sku_mod().unwrap(), "");
    assert_eq!(
        hex::encode(
            ev.opaque_field(spdm::OPAQUE_FIELD_ID_PROJECT_SKU_MOD)
                .unwrap()
        ),
        text("project_sku_mod")
    );
    assert_eq!(
        hex::encode(ev.opaque_field(spdm::OPAQUE_FIELD_ID_BOARD_ID).unwrap()),
        text("board_id")
    );
    assert_eq!(
        hex::encode(ev.opaque_field(spdm::OPAQUE_FIELD_ID_GPU_INFO).unwrap()),
        text("gpu_info")
    );
    assert_eq!(
        hex::encode(ev.opaque_field(spdm::OPAQUE_FIELD_ID_CPRINFO).unwrap()),
        text("cpr_info")
    );
    assert_eq!(
        char::from(ev.nvdec0_status().unwrap()).to_string(),
        text("nvdec0_status")
    );
    assert_eq!(
        char::from(ev.protected_pcie_status().unwrap()).to_string(),
        text("protected_pcie_status")
    );
    let counts = ev.msrscnt().unwrap();
    for (index, count) in config["measurement_count"].as_object().unwrap() {
        let i: usize = index.parse().unwrap();
        assert_eq!(
            u64::from(counts[i - 1]),
            count.as_u64().unwrap(),
            "index {index}"
        );
    }
    let measurements = claims["measurements"].as_object().unwrap();
    assert_eq!(measurements.len(), ev.blocks.len());
    for (index, value) in measurements {
        let block = ev.block(index.parse().unwrap()).unwrap();
        assert_eq!(hex::encode(&block.value), value.as_str().unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// spdm: versions, truncation, trailing bytes, malformed fields

#[test]
fn driver_and_vbios_versions_equal_provenance() {
    // (report, driver, VBIOS or None where PROVENANCE.md gives none)
    let table: &[(&str, &str, Option<&str>)] = &[
        (
            "nvtrust/hopperAttestationReport.txt",
            "550.90.07",
            Some("96.00.9F.00.01"),
        ),
        (
            "nvtrust-initial/attestationReport.txt",
            "545.00",
            Some("96.00.5E.00.01"),
        ),
        (
            "trustee/hopper_coco_report1.txt",
            "580.95.05",
            Some("96.00.74.00.1A"),
        ),
        (
            "attestation-sdk/hopperAttestationReport.txt",
            "580.159.03",
            Some("96.00.74.00.20"),
        ),
        (
            "attestation-sdk/sample_hopperAttestationReport_535.txt",
            "535.86.09",
            None,
        ),
        (
            "attestation-sdk/sample_blackwellAttestationReport.txt",
            "575.32",
            Some("97.00.88.00.0F"),
        ),
    ];
    for (report, driver, vbios) in table {
        let ev = parse(&hex_report(report));
        assert_eq!(ev.driver_version(), Some(*driver), "{report}");
        if let Some(vbios) = vbios {
            assert_eq!(ev.vbios_version().as_deref(), Some(*vbios), "{report}");
        }
    }
    // The 8-GPU file states each GPU's versions next to its evidence.
    for (ev, _, _, entry) in json_entries("nvtrust/ppcie_gpu_evidence_8xH100.json") {
        let ev = parse(&ev);
        assert_eq!(ev.driver_version(), entry["driver_version"].as_str());
        assert_eq!(ev.driver_version(), Some("590.12"));
        assert_eq!(
            ev.vbios_version().as_deref(),
            entry["vbios_version"].as_str()
        );
        assert_eq!(ev.vbios_version().as_deref(), Some("96.00.A5.00.01"));
        // Protected-PCIe evidence says so in its feature flag.
        assert_eq!(ev.feature_flag(), Some(2));
    }
    let (ev, _, _, _) = json_entries("attestation-sdk/evidence_hopper_590_12.json").remove(0);
    assert_eq!(parse(&ev).driver_version(), Some("590.12"));
}

#[test]
fn other_fields_read_as_nvidia_names_them() {
    let ev = parse(&hex_report("attestation-sdk/hopperAttestationReport.txt"));
    assert_eq!(ev.chip_sku(), Some("862"));
    assert_eq!(ev.chip_sku_mod(), Some("0"));
    assert_eq!(ev.project(), Some("1010"));
    assert_eq!(ev.project_sku(), Some("0205"));
    assert_eq!(ev.opaque_data_version(), Some(1));
    assert_eq!(ev.feature_flag(), Some(0));
    assert_eq!(ev.nvdec0_status(), Some(0x55));
    assert_eq!(ev.msrscnt().unwrap().len(), 64);
    let blackwell = parse(&hex_report(
        "attestation-sdk/sample_blackwellAttestationReport.txt",
    ));
    assert_eq!(blackwell.project(), Some("G525"));
    assert_eq!(blackwell.chip_sku(), Some("886"));
    assert_eq!(spdm::opaque_field_name(20), Some("OPAQUE_FIELD_ID_FWID"));
    assert_eq!(spdm::opaque_field_name(99), None);
}

#[test]
fn every_truncation_of_every_real_evidence_is_an_error() {
    for (label, bytes, _) in all_real() {
        let ev = parse(&bytes);
        let end = ev.signature_offset + 96;
        for len in 0..end {
            assert!(
                SpdmEvidence::parse(&bytes[..len]).is_err(),
                "{label}: {len} bytes parsed"
            );
        }
        // At or beyond the signature's end the parse is the same, with the extra bytes counted.
        let exact = parse(&bytes[..end]);
        assert_eq!(exact.trailing_bytes, 0);
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xAB; 7]);
        let padded = parse(&longer);
        assert_eq!(padded.trailing_bytes, ev.trailing_bytes + 7, "{label}");
        assert_eq!(padded.signature_offset, ev.signature_offset);
    }
}

#[test]
fn truncation_errors_say_what_was_needed() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    assert_eq!(
        SpdmEvidence::parse(&bytes[..20]).unwrap_err(),
        SpdmError::TooShort {
            part: "request nonce",
            expected: 36,
            found: 20
        }
    );
    let err = SpdmEvidence::parse(&bytes[..100]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spdm evidence is 100 bytes, shorter than the 3565 bytes its measurement record needs"
    );
    let err = SpdmEvidence::parse(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spdm evidence is 4116 bytes, shorter than the 4117 bytes its signature needs"
    );
}

#[test]
fn trustee_trailing_byte_is_tolerated_and_counted() {
    let bytes = hex_report("trustee/hopper_coco_report1.txt");
    assert_eq!(bytes.len(), 4130);
    assert_eq!(bytes.last(), Some(&0));
    let ev = parse(&bytes);
    assert_eq!(ev.signature_offset, 4033);
    assert_eq!(ev.trailing_bytes, 1);
    let chain = vector("trustee/hopper_coco_certs1.txt");
    verify(&bytes, &chain, &nvidia_root(), NOW, &ChainCache::new()).unwrap();
}

/// Offsets in the nvtrust report: response header at 37, first block at 45, opaque data at
/// 45 + 3520 + 32 + 2 = 3599.
const FIRST_BLOCK: usize = 45;
const OPAQUE_START: usize = 3599;

#[test]
fn malformed_fields_are_specific_errors() {
    let good = hex_report("nvtrust/hopperAttestationReport.txt");
    let with = |offset: usize, value: u8| {
        let mut b = good.clone();
        b[offset] = value;
        SpdmEvidence::parse(&b).unwrap_err()
    };
    assert_eq!(with(0, 0x12), SpdmError::RequestVersion { found: 0x12 });
    assert_eq!(with(1, 0x81), SpdmError::RequestCode { found: 0x81 });
    assert_eq!(with(2, 0x00), SpdmError::RequestAttributes { found: 0 });
    assert_eq!(with(3, 0x01), SpdmError::RequestOperation { found: 1 });
    assert_eq!(with(37, 0x10), SpdmError::ResponseVersion { found: 0x10 });
    assert_eq!(with(38, 0x7F), SpdmError::ResponseCode { found: 0x7F });
    assert_eq!(
        with(41, 63),
        SpdmError::BlockCount {
            declared: 63,
            found: 64
        }
    );
    // First block: index, spec, size.
    assert_eq!(
        with(FIRST_BLOCK, 0),
        SpdmError::BlockIndex {
            offset: 0,
            index: 0
        }
    );
    assert_eq!(
        with(FIRST_BLOCK, 2),
        SpdmError::DuplicateBlockIndex { index: 2 }
    );
    assert_eq!(
        with(FIRST_BLOCK + 1, 2),
        SpdmError::BlockSpec { index: 1, found: 2 }
    );
    assert_eq!(
        with(FIRST_BLOCK + 2, 50),
        SpdmError::DmtfValueSize {
            index: 1,
            declared: 48,
            found: 47
        }
    );
    assert_eq!(
        with(FIRST_BLOCK + 2, 2),
        SpdmError::DmtfHeaderTruncated { index: 1, size: 2 }
    );
    // Opaque data: the first field is VBIOS (type 6, 8 bytes); make it claim 9 bytes, a
    // duplicate of the second field, or a bad driver text.
    assert_eq!(
        with(OPAQUE_START + 2, 9),
        SpdmError::OpaqueFieldSize {
            field_type: 6,
            name: "OPAQUE_FIELD_ID_VBIOS_VERSION",
            expected: "8",
            found: 9
        }
    );
    assert_eq!(
        with(OPAQUE_START, 14),
        SpdmError::DuplicateOpaqueField { field_type: 14 }
    );
    let driver_at = good.windows(9).position(|w| w == b"550.90.07").unwrap();
    assert!(matches!(
        with(driver_at + 3, 0x01),
        SpdmError::OpaqueFieldText {
            field_type: 3,
            offset: 3,
            found: 1,
            ..
        }
    ));
    // A record length one byte short leaves the last block truncated.
    let mut short = good.clone();
    short[42] = 0xBF; // 3520 = 0x000DC0 -> 0x000DBF
    assert!(matches!(
        SpdmEvidence::parse(&short).unwrap_err(),
        SpdmError::BlockTruncated {
            index: 64,
            size: 51,
            remaining: 50
        }
    ));
    // Messages state expected and found.
    assert_eq!(
        with(0, 0x12).to_string(),
        "request spdm version is 0x12, expected 0x11 (spdm 1.1)"
    );
}

#[test]
fn garbage_never_panics() {
    let good = hex_report("nvtrust/hopperAttestationReport.txt");
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let mut b = good.clone();
        for _ in 0..(next() % 8 + 1) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let len = (next() as usize) % (b.len() + 1);
        let _ = SpdmEvidence::parse(&b[..len]);
        let _ = SpdmEvidence::parse(&b);
    }
    for len in 0..300 {
        let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert!(SpdmEvidence::parse(&random).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// certs: real evidence

#[test]
fn every_real_evidence_verifies() {
    let root = nvidia_root();
    let cache = ChainCache::new();
    let mut verified = 0;
    for (label, bytes, chain) in all_real() {
        let device =
            verify(&bytes, &chain, &root, NOW, &cache).unwrap_or_else(|e| panic!("{label}: {e}"));
        let ev = parse(&bytes);
        assert_eq!(device.subjects.len(), 5, "{label}");
        assert!(device.root_included, "{label}");
        assert_eq!(device.subjects[4], "NVIDIA Device Identity CA");
        assert!(device.subjects[0].ends_with("GSP FMC LF"), "{label}");
        assert_eq!(device.fwid_compared, ev.fwid().is_some(), "{label}");
        if device.fwid_compared {
            assert_eq!(device.fwid.as_deref(), ev.fwid(), "{label}");
        }
        assert!(device.ueid.chars().all(|c| c.is_ascii_digit()), "{label}");
        verified += 1;
    }
    assert_eq!(verified, HEX_PAIRS.len() + 8 + 4 + 1);
}

#[test]
fn real_evidence_reports_device_facts() {
    let root = nvidia_root();
    let cache = ChainCache::new();
    let nvtrust = verify(
        &hex_report("nvtrust/hopperAttestationReport.txt"),
        &vector("nvtrust/hopperCertChain.txt"),
        &root,
        NOW,
        &cache,
    )
    .unwrap();
    assert_eq!(nvtrust.ueid, NVTRUST_UEID);
    assert_eq!(
        nvtrust.subjects,
        vec![
            "GH100 A01 GSP FMC LF",
            "GH100 A01 GSP BROM",
            "NVIDIA GH100 Provisioner ICA 1",
            "NVIDIA GH100 Identity",
            "NVIDIA Device Identity CA"
        ]
    );
    assert_eq!(nvtrust.fwid_source, Some(FwidSource::HopperTcbInfo));
    assert_eq!(
        nvtrust.fwid_hex().unwrap(),
        "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d"
    );
    assert!(nvtrust.fwid_compared);

    // No opaque field 20 before the 550 drivers: nothing to compare, the leaf's FWID still read.
    let initial = verify(
        &hex_report("nvtrust-initial/attestationReport.txt"),
        &vector("nvtrust-initial/gpuAkCertChain.txt"),
        &root,
        NOW,
        &cache,
    )
    .unwrap();
    assert!(!initial.fwid_compared);
    assert_eq!(initial.fwid_source, Some(FwidSource::HopperTcbInfo));

    // Blackwell keeps the FWID in DiceTcbInfo fwids[0].
    let blackwell_bytes = hex_report("attestation-sdk/sample_blackwellAttestationReport.txt");
    let blackwell = verify(
        &blackwell_bytes,
        &vector("attestation-sdk/sample_blackwellCertChain.txt"),
        &root,
        NOW,
        &cache,
    )
    .unwrap();
    assert_eq!(blackwell.fwid_source, Some(FwidSource::DiceTcbInfo));
    assert!(blackwell.fwid_compared);
    assert_eq!(blackwell.fwid.as_deref(), parse(&blackwell_bytes).fwid());
    assert_eq!(blackwell.subjects[0], "GB100 A01 GSP FMC LF");

    // The JSON lists: the request nonce is the nonce beside the evidence, each GPU has its
    // own leaf, and the 4-GPU file holds the first four GPUs of the 8-GPU file.
    let eight: Vec<_> = json_entries("nvtrust/ppcie_gpu_evidence_8xH100.json")
        .into_iter()
        .map(|(ev, chain, nonce, _)| {
            assert_eq!(hex::encode(parse(&ev).request_nonce), nonce);
            verify(&ev, &chain, &root, NOW, &cache).unwrap().ueid
        })
        .collect();
    let mut distinct = eight.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8);
    let four: Vec<_> = json_entries("attestation-sdk/multi_gpu_hopper.json")
        .into_iter()
        .map(|(ev, chain, nonce, _)| {
            assert_eq!(hex::encode(parse(&ev).request_nonce), nonce);
            verify(&ev, &chain, &root, NOW, &cache).unwrap().ueid
        })
        .collect();
    assert_eq!(four, eight[..4]);
}

#[test]
fn invalid_signature_sample_fails_on_the_signature() {
    // NVIDIA pairs this report with a chain that was not copied (hopperCertChainExpired.txt);
    // its FWID matches no leaf in the vectors. With the 535 chain from the same directory every
    // certificate check passes and the evidence signature is what fails.
    let bytes = hex_report("attestation-sdk/sample_hopperAttestationReportInvalidSignature.txt");
    let chain = vector("attestation-sdk/sample_hopperCertChain_535.txt");
    let err = verify(&bytes, &chain, &nvidia_root(), NOW, &ChainCache::new()).unwrap_err();
    assert_eq!(
        err,
        GpuEvidenceError::EvidenceSignature {
            subject: "CN=GH100 A01 GSP FMC LF".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "evidence signature does not verify with the leaf key (CN=GH100 A01 GSP FMC LF)"
    );
    // Nor does it verify with any other real leaf.
    for (label, _, other_chain) in all_real() {
        let err = verify(
            &bytes,
            &other_chain,
            &nvidia_root(),
            NOW,
            &ChainCache::new(),
        )
        .unwrap_err();
        assert!(
            matches!(err, GpuEvidenceError::EvidenceSignature { .. }),
            "{label}: {err}"
        );
    }
}

#[test]
fn trustee_broken_chains_fail_naming_what_is_missing() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let root = nvidia_root();
    let cache = ChainCache::new();

    // Case 2: the root alone.
    let err = verify(
        &bytes,
        &vector("trustee/hopper_cert_chain_case2.txt"),
        &root,
        NOW,
        &cache,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        GpuEvidenceError::TooFewCertificates { found: 1, .. }
    ));
    assert_eq!(
        err.to_string(),
        "certificate chain has 1 certificate (CN=NVIDIA Device Identity CA), expected at least 2: \
         the device leaf and the certificates up to the nvidia device identity root"
    );

    // Case 3: the Provisioner ICA is missing between BROM and GH100 Identity.
    let err = verify(
        &bytes,
        &vector("trustee/hopper_cert_chain_case3.txt"),
        &root,
        NOW,
        &cache,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        GpuEvidenceError::IssuerMismatch { index: 1, .. }
    ));
    assert_eq!(
        err.to_string(),
        "certificate 1 (CN=GH100 A01 GSP BROM) is not issued by certificate 2 \
         (CN=NVIDIA GH100 Identity): it names CN=NVIDIA GH100 Provisioner ICA 1 as its issuer"
    );

    // Case 4: the leaf is missing, so the chain starts at a CA.
    let err = verify(
        &bytes,
        &vector("trustee/hopper_cert_chain_case4.txt"),
        &root,
        NOW,
        &cache,
    )
    .unwrap_err();
    assert!(matches!(err, GpuEvidenceError::LeafIsCa { .. }));
    assert_eq!(
        err.to_string(),
        "certificate 0 (CN=GH100 A01 GSP BROM) is a ca certificate, expected the device leaf: \
         the leaf certificate is missing from the chain"
    );
    // None of the broken chains was remembered.
    assert!(cache.is_empty());
}

#[test]
fn chain_may_omit_the_root_but_must_reach_it() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let ders = chain_ders(&vector("nvtrust/hopperCertChain.txt"));
    let root = nvidia_root();
    // Without the root copy the Identity certificate links to the pinned root directly.
    let device = verify(
        &bytes,
        &ders_to_pem(&ders[..4]),
        &root,
        NOW,
        &ChainCache::new(),
    )
    .unwrap();
    assert!(!device.root_included);
    assert_eq!(device.subjects.len(), 4);
    // Without the Identity certificate as well, the chain stops short of the root.
    let err = verify(
        &bytes,
        &ders_to_pem(&ders[..3]),
        &root,
        NOW,
        &ChainCache::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "chain does not reach the pinned nvidia device identity root: last certificate \
         CN=NVIDIA GH100 Provisioner ICA 1 issued by CN=NVIDIA GH100 Identity, expected a \
         certificate issued by CN=NVIDIA Device Identity CA or the root itself"
    );
    // Leaf first: reversed, the chain is refused.
    let mut reversed = ders.clone();
    reversed.reverse();
    assert!(
        verify(
            &bytes,
            &ders_to_pem(&reversed),
            &root,
            NOW,
            &ChainCache::new()
        )
        .is_err()
    );
}

#[test]
fn arriving_root_replaced_by_an_impostor_fails() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let mut ders = chain_ders(&vector("nvtrust/hopperCertChain.txt"));
    ders[4] = fixture("impostor_root.der");
    let err = verify(
        &bytes,
        &ders_to_pem(&ders),
        &nvidia_root(),
        NOW,
        &ChainCache::new(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        GpuEvidenceError::RootKeyMismatch {
            index: 4,
            subject: "CN=NVIDIA Device Identity CA".into()
        }
    );
    // Trusting the impostor instead does not help either: the real Identity certificate was
    // not signed by its key.
    let impostor = fixture("impostor_root.der");
    let err = verify(
        &bytes,
        &ders_to_pem(&ders),
        &impostor,
        NOW,
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, GpuEvidenceError::LinkSignature { index: 3, .. }),
        "{err}"
    );
}

#[test]
fn evidence_paired_with_another_gpus_chain_fails() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let err = verify(
        &bytes,
        &vector("trustee/hopper_coco_certs1.txt"),
        &nvidia_root(),
        NOW,
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(matches!(err, GpuEvidenceError::EvidenceSignature { .. }));
}

#[test]
fn parsed_must_be_the_parse_of_the_evidence() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let other = parse(&hex_report("trustee/hopper_coco_report1.txt"));
    let err = verify_gpu_evidence(
        &bytes,
        &other,
        &vector("nvtrust/hopperCertChain.txt"),
        &nvidia_root(),
        NOW,
        &ChainCache::new(),
    )
    .unwrap_err();
    assert_eq!(err, GpuEvidenceError::ParsedMismatch);
}

#[test]
fn unreadable_chains_and_roots_are_errors() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let parsed = parse(&bytes);
    let root = nvidia_root();
    let run = |chain: &[u8], root: &[u8]| {
        certs::verify_gpu_evidence(&bytes, &parsed, chain, root, NOW, &ChainCache::new())
            .unwrap_err()
    };
    assert_eq!(
        run(b"", &root),
        GpuEvidenceError::TooFewCertificates {
            found: 0,
            subjects: String::new()
        }
    );
    assert!(matches!(
        run(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            &root
        ),
        GpuEvidenceError::PemLabel { index: 0, .. }
    ));
    assert!(matches!(
        run(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &root
        ),
        GpuEvidenceError::CertificateDer { index: 0, .. }
    ));
    assert!(matches!(
        run(
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            &root
        ),
        GpuEvidenceError::Pem { index: 0, .. }
    ));
    let chain = vector("nvtrust/hopperCertChain.txt");
    assert!(matches!(
        run(&chain, b"not a certificate"),
        GpuEvidenceError::RootDer { .. }
    ));
    let mut padded_root = root.clone();
    padded_root.push(0);
    assert!(matches!(
        run(&chain, &padded_root),
        GpuEvidenceError::RootDer { .. }
    ));
    let mut ders = chain_ders(&chain);
    ders[1].push(0);
    assert_eq!(
        run(&ders_to_pem(&ders), &root),
        GpuEvidenceError::CertificateTrailingBytes { index: 1, count: 1 }
    );
}

#[test]
fn tampered_certificates_fail_their_link() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let ders = chain_ders(&vector("nvtrust/hopperCertChain.txt"));
    // Flip one bit of each certificate's serial number (inside the signed part), one at a time.
    for i in 0..4 {
        let mut tampered = ders.clone();
        let serial_at = 15; // SEQUENCE, SEQUENCE, [0] version, INTEGER tag and length
        tampered[i][serial_at] ^= 0x01;
        let err = verify(
            &bytes,
            &ders_to_pem(&tampered),
            &nvidia_root(),
            NOW,
            &ChainCache::new(),
        )
        .unwrap_err();
        assert!(
            matches!(err, GpuEvidenceError::LinkSignature { index, .. } if index == i),
            "certificate {i}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// certs: every bit of the signed region

#[test]
fn every_single_bit_flip_in_the_signed_region_fails() {
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let chain = vector("nvtrust/hopperCertChain.txt");
    let root = nvidia_root();
    // One cache shared by every thread: the chain's link signatures are verified once, and each
    // flip then costs one parse and one P-384 verification.
    let cache = ChainCache::new();
    verify(&bytes, &chain, &root, NOW, &cache).unwrap();
    let signed_len = parse(&bytes).signature_offset;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let counts: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (bytes, chain, root, cache) = (&bytes, &chain, &root, &cache);
                scope.spawn(move || {
                    let (mut parse_errors, mut signature_errors) = (0usize, 0usize);
                    for byte in (t..signed_len).step_by(threads) {
                        for bit in 0..8 {
                            let mut flipped = bytes.clone();
                            flipped[byte] ^= 1 << bit;
                            let Ok(parsed) = SpdmEvidence::parse(&flipped) else {
                                parse_errors += 1;
                                continue;
                            };
                            match verify_gpu_evidence(&flipped, &parsed, chain, root, NOW, cache) {
                                Ok(_) => panic!("flipping bit {bit} of byte {byte} still verifies"),
                                Err(GpuEvidenceError::EvidenceSignature { .. }) => {
                                    signature_errors += 1
                                }
                                Err(e) => panic!("bit {bit} of byte {byte}: unexpected error {e}"),
                            }
                        }
                    }
                    (parse_errors, signature_errors)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let parse_errors: usize = counts.iter().map(|c| c.0).sum();
    let signature_errors: usize = counts.iter().map(|c| c.1).sum();
    assert_eq!(parse_errors + signature_errors, signed_len * 8);
    assert_eq!(cache.len(), 1);
    eprintln!(
        "bit flips: {} in {:.2?} on {threads} threads ({parse_errors} parse errors, \
         {signature_errors} signature errors)",
        signed_len * 8,
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// certs: the generated test PKI

/// `evidence` with its signature replaced by the test leaf's signature over its signed region
/// (and any trailing bytes dropped).
fn resign(evidence: &[u8]) -> Vec<u8> {
    let parsed = parse(evidence);
    let signed = &evidence[..parsed.signature_offset];
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &fixture("leaf.pk8")).unwrap();
    let signature = key.sign(&SystemRandom::new(), signed).unwrap();
    assert_eq!(signature.as_ref().len(), 96);
    let mut out = signed.to_vec();
    out.extend_from_slice(signature.as_ref());
    out
}

fn test_chain(leaf: &str, with_root: bool) -> Vec<u8> {
    let mut pem = fixture(leaf);
    pem.extend(fixture("intermediate.pem"));
    if with_root {
        pem.extend(fixture("root.pem"));
    }
    pem
}

#[test]
fn test_pki_validity_windows() {
    let evidence = resign(&hex_report("nvtrust/hopperAttestationReport.txt"));
    let root = fixture("root.der");
    let cache = ChainCache::new();

    // Inside January 2026 the chain verifies, with or without the root copy, through a P-384
    // root → P-256 intermediate (ecdsa-with-SHA384) → P-384 leaf (ecdsa-with-SHA256) chain.
    for with_root in [true, false] {
        let device = verify(
            &evidence,
            &test_chain("leaf.pem", with_root),
            &root,
            JAN_15_2026,
            &cache,
        )
        .unwrap();
        assert!(device.fwid_compared);
        assert_eq!(device.root_included, with_root);
        assert_eq!(device.subjects[0], "teewatch test leaf");
        assert_eq!(device.subjects[1], "teewatch test intermediate");
    }

    // After the leaf expired.
    let err = verify(
        &evidence,
        &test_chain("leaf.pem", true),
        &root,
        MAR_01_2026,
        &cache,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate 0 (CN=teewatch test leaf) not valid at 2026-03-01T00:00:00Z: valid \
         2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z"
    );
    assert!(matches!(
        err,
        GpuEvidenceError::NotValid { index: Some(0), .. }
    ));

    // Before it became valid.
    let err = verify(
        &evidence,
        &test_chain("leaf.pem", true),
        &root,
        DEC_15_2025,
        &cache,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate 0 (CN=teewatch test leaf) not valid at 2025-12-15T00:00:00Z: valid \
         2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z"
    );

    // With the real NVIDIA root pinned, the test chain is not anchored at all.
    let err = verify(
        &evidence,
        &test_chain("leaf.pem", true),
        &nvidia_root(),
        JAN_15_2026,
        &cache,
    )
    .unwrap_err();
    assert!(matches!(err, GpuEvidenceError::NotRooted { .. }), "{err}");
    let err = verify(
        &evidence,
        &test_chain("leaf.pem", false),
        &nvidia_root(),
        JAN_15_2026,
        &cache,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "chain does not reach the pinned nvidia device identity root: last certificate \
         CN=teewatch test intermediate issued by CN=teewatch test root, expected a certificate \
         issued by CN=NVIDIA Device Identity CA or the root itself"
    );
}

#[test]
fn pinned_root_validity_is_judged() {
    // The pinned root is judged before the chain: in 2036 the test root itself has lapsed.
    let evidence = resign(&hex_report("nvtrust/hopperAttestationReport.txt"));
    let err = verify(
        &evidence,
        &test_chain("leaf.pem", false),
        &fixture("root.der"),
        2_082_758_400, // 2036-01-01T00:00:00Z
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        GpuEvidenceError::NotValid { index: None, .. }
    ));
    assert_eq!(
        err.to_string(),
        "the pinned root (CN=teewatch test root) not valid at 2036-01-01T00:00:00Z: valid \
         2025-01-01T00:00:00Z to 2035-01-01T00:00:00Z"
    );
}

#[test]
fn test_pki_fwid_rules() {
    let root = fixture("root.der");
    let cache = ChainCache::new();

    // A leaf without any FWID extension cannot vouch for opaque field 20.
    let evidence = resign(&hex_report("nvtrust/hopperAttestationReport.txt"));
    let err = verify(
        &evidence,
        &test_chain("leaf_nofwid.pem", true),
        &root,
        JAN_15_2026,
        &cache,
    )
    .unwrap_err();
    assert_eq!(err, GpuEvidenceError::LeafWithoutFwid);
    assert_eq!(
        err.to_string(),
        "leaf certificate has no fwid extension but the evidence carries opaque field 20"
    );

    // Evidence without field 20 verifies under that leaf, with nothing compared.
    let old = resign(&hex_report("nvtrust-initial/attestationReport.txt"));
    let device = verify(
        &old,
        &test_chain("leaf_nofwid.pem", true),
        &root,
        JAN_15_2026,
        &cache,
    )
    .unwrap();
    assert!(!device.fwid_compared);
    assert_eq!(device.fwid, None);
    assert_eq!(device.fwid_source, None);

    // A leaf whose FWID differs from a correctly signed field 20.
    let other = resign(&hex_report("attestation-sdk/hopperAttestationReport.txt"));
    let err = verify(
        &other,
        &test_chain("leaf.pem", true),
        &root,
        JAN_15_2026,
        &cache,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "leaf fwid f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d \
         differs from opaque field 20 f1ae7d0093a3f5689cced58045c9744f94eb2aa4ddca88135197fb41a7be45576c2881cf920e2cbcc090b1cb921f7b2d"
    );
}

// ---------------------------------------------------------------------------------------------
// certs: the chain cache

#[test]
fn cache_hits_give_identical_results() {
    let root = nvidia_root();
    let bytes = hex_report("nvtrust/hopperAttestationReport.txt");
    let chain = vector("nvtrust/hopperCertChain.txt");
    let cache = ChainCache::new();
    assert!(cache.is_empty());

    let miss = verify(&bytes, &chain, &root, NOW, &cache);
    assert_eq!((cache.len(), cache.hits()), (1, 0));
    let hit = verify(&bytes, &chain, &root, NOW, &cache);
    assert_eq!((cache.len(), cache.hits()), (1, 1));
    assert_eq!(miss, hit);
    assert_eq!(hit.unwrap().ueid, NVTRUST_UEID);

    // A failing evidence signature under a remembered chain is still a failure.
    let mut bad = bytes.clone();
    bad[200] ^= 1;
    let fresh = verify(&bad, &chain, &root, NOW, &ChainCache::new());
    let cached = verify(&bad, &chain, &root, NOW, &cache);
    assert_eq!(cache.hits(), 2);
    assert!(matches!(
        cached,
        Err(GpuEvidenceError::EvidenceSignature { .. })
    ));
    assert_eq!(fresh, cached);

    // A different chain misses and is remembered on its own.
    let other = verify(
        &hex_report("trustee/hopper_coco_report1.txt"),
        &vector("trustee/hopper_coco_certs1.txt"),
        &root,
        NOW,
        &cache,
    );
    assert!(other.is_ok());
    assert_eq!((cache.len(), cache.hits()), (2, 2));

    // The same certificates without the root copy are a different chain.
    let ders = chain_ders(&chain);
    verify(&bytes, &ders_to_pem(&ders[..4]), &root, NOW, &cache).unwrap();
    assert_eq!((cache.len(), cache.hits()), (3, 2));

    // A remembered chain is still judged at each instant: the test leaf verified in January
    // fails in March exactly as it does with an empty cache.
    let evidence = resign(&hex_report("nvtrust/hopperAttestationReport.txt"));
    let test_root = fixture("root.der");
    let test = test_chain("leaf.pem", true);
    verify(&evidence, &test, &test_root, JAN_15_2026, &cache).unwrap();
    assert_eq!(cache.len(), 4);
    let hits = cache.hits();
    let late_cached = verify(&evidence, &test, &test_root, MAR_01_2026, &cache);
    assert_eq!(cache.hits(), hits + 1);
    let late_fresh = verify(
        &evidence,
        &test,
        &test_root,
        MAR_01_2026,
        &ChainCache::new(),
    );
    assert_eq!(late_cached, late_fresh);
    assert!(matches!(
        late_cached,
        Err(GpuEvidenceError::NotValid { .. })
    ));

    // The same chain under another pinned root is another key.
    let err = verify(&evidence, &test, &nvidia_root(), JAN_15_2026, &cache).unwrap_err();
    assert!(matches!(err, GpuEvidenceError::NotRooted { .. }));
    assert_eq!(cache.len(), 4);
}
