//! GPU evidence signature and device certificate chain verification.
//!
//! A GPU proves its evidence with a certificate chain that the GPU itself sends: the leaf ("GSP
//! FMC LF") holds the key that signed the SPDM response, and the chain climbs through NVIDIA's
//! intermediates to the NVIDIA Device Identity CA. Because the chain arrives with the evidence,
//! nothing in it is trusted by being there: the only trust anchor is the pinned root the caller
//! passes in, a copy of the root in the chain is compared with it and never used, and every link
//! is checked by signature and by name. `verify_gpu_evidence` runs the steps in order and stops at
//! the first failure, naming the certificate and what was expected. It is pure: the instant every
//! validity window is judged at is an argument, and the only state is the caller's `ChainCache`,
//! which remembers chains whose link signatures verified so that repeated checks of one GPU skip
//! those signatures without changing any result.
//!
//! This module runs the steps and holds the public types and the chain's parsing; `x509` checks
//! the links (names, CA role, signatures by algorithm OID and curve) and validity windows and
//! names certificates for messages, and `fwid` reads the leaf's firmware id.

mod fwid;
mod x509;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

use super::spdm::{SpdmError, SpdmEvidence};
use fwid::leaf_fwid;
use x509::{
    Curve, OID_ECDSA_WITH_SHA256, OID_ECDSA_WITH_SHA384, check_leaf_role, check_links,
    check_validity, common_name, describe, describe_name, ec_curve, key_description,
};

/// The fewest certificates a device chain can have: a leaf and the certificate that issued it.
const MIN_CHAIN_LEN: usize = 2;

/// Chains whose link signatures verified, keyed by SHA-256 over the pinned root's DER followed by
/// each certificate's DER (leaf first). DER is self-delimiting, so the concatenation names one
/// root and one sequence of certificates.
///
/// Only the link signatures are skipped on a hit: names, CA flags, validity at the instant judged,
/// the FWID and the evidence signature are checked on every call, so a hit returns exactly what
/// a miss would. Failed chains are never stored.
#[derive(Debug, Default)]
pub struct ChainCache {
    verified: Mutex<HashSet<[u8; 32]>>,
    hits: AtomicU64,
}

impl ChainCache {
    /// An empty cache.
    pub fn new() -> ChainCache {
        ChainCache::default()
    }

    /// How many distinct chains are remembered.
    pub fn len(&self) -> usize {
        self.set().len()
    }

    /// Whether no chain is remembered yet.
    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }

    /// How many verifications skipped the link signatures because the chain was remembered.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The set, even after a panic elsewhere poisoned the lock: the set only ever grows by whole
    /// keys, so whatever it holds is still a set of verified chains.
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.set().contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        self.set().insert(key);
    }

    fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the leaf certificate keeps its firmware id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwidSource {
    /// Hopper: the last 48 bytes of extension 2.23.133.5.4.1.
    HopperTcbInfo,
    /// Blackwell: `fwids[0].digest` of the DiceTcbInfo extension 2.23.133.5.4.1.1.
    DiceTcbInfo,
}

/// What a verified GPU evidence proves about the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// The leaf certificate's serial number in decimal: NRAS reports it as the `ueid` claim.
    pub ueid: String,
    /// The common names of the certificates as they arrived, leaf first.
    pub subjects: Vec<String>,
    /// Whether the chain carried its own copy of the pinned root (compared, never trusted).
    pub root_included: bool,
    /// The leaf's firmware id, if its certificate carries one.
    pub fwid: Option<Vec<u8>>,
    /// Which extension the firmware id came from.
    pub fwid_source: Option<FwidSource>,
    /// Whether the leaf's firmware id was compared with opaque field 20 and found equal. False
    /// when the evidence has no field 20 (older drivers), which is then not checked at all.
    pub fwid_compared: bool,
}

impl GpuDevice {
    /// The leaf's firmware id in lowercase hex.
    pub fn fwid_hex(&self) -> Option<String> {
        self.fwid.as_deref().map(hex::encode)
    }
}

/// Why GPU evidence or its certificate chain is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuEvidenceError {
    #[error("evidence does not parse: {0}")]
    Spdm(#[from] SpdmError),
    #[error(
        "the parsed evidence passed in is not the parse of the evidence bytes: expected them to agree"
    )]
    ParsedMismatch,
    #[error("certificate chain pem block {index} is unreadable: {reason}")]
    Pem { index: usize, reason: String },
    #[error("certificate chain pem block {index} is labelled {found}, expected CERTIFICATE")]
    PemLabel { index: usize, found: String },
    #[error("certificate {index} is not an x.509 certificate: {reason}")]
    CertificateDer { index: usize, reason: String },
    #[error("certificate {index} has {count} bytes after its der encoding, expected none")]
    CertificateTrailingBytes { index: usize, count: usize },
    #[error("pinned root is not an x.509 certificate: {reason}")]
    RootDer { reason: String },
    #[error(
        "certificate chain has {found} certificate{plural}{subjects}, expected at least 2: the device leaf and the certificates up to the nvidia device identity root",
        plural = if *.found == 1 { "" } else { "s" }
    )]
    TooFewCertificates { found: usize, subjects: String },
    #[error(
        "chain does not reach the pinned nvidia device identity root: last certificate {last} issued by {issuer}, expected a certificate issued by {root} or the root itself"
    )]
    NotRooted {
        last: String,
        issuer: String,
        root: String,
    },
    #[error(
        "certificate {index} ({subject}) has the pinned root's subject but a different public key: it is not the pinned nvidia device identity root"
    )]
    RootKeyMismatch { index: usize, subject: String },
    #[error(
        "certificate {index} ({subject}) is not issued by {issuer}: it names {named_issuer} as its issuer"
    )]
    IssuerMismatch {
        index: usize,
        subject: String,
        issuer: String,
        named_issuer: String,
    },
    #[error("{issuer} issues certificate {index} but is not a ca: basic constraints ca is {found}")]
    IssuerNotCa {
        index: usize,
        issuer: String,
        found: &'static str,
    },
    #[error(
        "{issuer} issues certificate {index} but its key usage lacks keyCertSign, expected it set"
    )]
    IssuerKeyUsage { index: usize, issuer: String },
    #[error(
        "certificate 0 ({subject}) is a ca certificate, expected the device leaf: the leaf certificate is missing from the chain"
    )]
    LeafIsCa { subject: String },
    #[error(
        "certificate 0 ({subject}) has a key usage without digitalSignature, expected it to sign evidence"
    )]
    LeafKeyUsage { subject: String },
    #[error("certificate {index} ({subject}) has an unreadable extension: {reason}")]
    Extension {
        index: usize,
        subject: String,
        reason: String,
    },
    #[error(
        "certificate {index} ({subject}) is signed with {found}, expected ecdsa-with-SHA384 ({OID_ECDSA_WITH_SHA384}) or ecdsa-with-SHA256 ({OID_ECDSA_WITH_SHA256})"
    )]
    UnsupportedSignatureAlgorithm {
        index: usize,
        subject: String,
        found: String,
    },
    #[error(
        "certificate {index} ({subject}) names signature algorithm {outer} outside its signed part and {inner} inside, expected the same"
    )]
    SignatureAlgorithmMismatch {
        index: usize,
        subject: String,
        outer: String,
        inner: String,
    },
    #[error("{issuer} has a {found} key, expected an ecdsa p-384 or p-256 key")]
    UnsupportedIssuerKey { issuer: String, found: String },
    #[error("certificate {index} ({subject}) signature does not verify with the key of {issuer}")]
    LinkSignature {
        index: usize,
        subject: String,
        issuer: String,
    },
    #[error("{certificate} not valid at {at}: valid {not_before} to {not_after}")]
    NotValid {
        /// The position in the chain, or `None` for the pinned root.
        index: Option<usize>,
        certificate: String,
        at: String,
        not_before: String,
        not_after: String,
    },
    #[error("leaf certificate ({subject}) has a {found} key, expected an ecdsa p-384 key")]
    LeafKeyNotP384 { subject: String, found: String },
    #[error("evidence signature does not verify with the leaf key ({subject})")]
    EvidenceSignature { subject: String },
    #[error("leaf certificate carries {count} fwid extensions, expected at most one")]
    DuplicateFwidExtension { count: usize },
    #[error("leaf fwid extension {oid} is malformed: {reason}")]
    FwidExtensionMalformed { oid: &'static str, reason: String },
    #[error("leaf certificate has no fwid extension but the evidence carries opaque field 20")]
    LeafWithoutFwid,
    #[error("leaf fwid {leaf} differs from opaque field 20 {opaque}")]
    FwidMismatch { leaf: String, opaque: String },
}

/// Verifies GPU evidence: its signature by the leaf of `chain_pem`, that chain up to the pinned
/// root `root_der`, every certificate's validity at `now` (unix seconds), and the leaf's firmware
/// id against the evidence's opaque field 20.
///
/// `parsed` must be `SpdmEvidence::parse(evidence)`; it is parsed again here and compared, so
/// that the signed bytes and the fields judged cannot come from two different evidences.
pub fn verify_gpu_evidence(
    evidence: &[u8],
    parsed: &SpdmEvidence,
    chain_pem: &[u8],
    root_der: &[u8],
    now: i64,
    cache: &ChainCache,
) -> Result<GpuDevice, GpuEvidenceError> {
    // The fields judged below must come from the very bytes whose signature is checked.
    if SpdmEvidence::parse(evidence)? != *parsed {
        return Err(GpuEvidenceError::ParsedMismatch);
    }

    // Step 1: the chain, leaf first, and the pinned root.
    let ders = pem_certificates(chain_pem)?;
    let certs = ders
        .iter()
        .enumerate()
        .map(|(index, der)| parse_certificate(der, index))
        .collect::<Result<Vec<_>, _>>()?;
    let root = parse_root(root_der)?;
    if certs.len() < MIN_CHAIN_LEN {
        let subjects = certs.iter().map(describe).collect::<Vec<_>>().join(", ");
        return Err(GpuEvidenceError::TooFewCertificates {
            found: certs.len(),
            subjects: if subjects.is_empty() {
                String::new()
            } else {
                format!(" ({subjects})")
            },
        });
    }
    let (leaf, last) = match (certs.first(), certs.last()) {
        (Some(leaf), Some(last)) => (leaf, last),
        _ => {
            return Err(GpuEvidenceError::TooFewCertificates {
                found: 0,
                subjects: String::new(),
            });
        }
    };

    // Step 2: anchor the chain at the pinned root. A last certificate with the root's subject
    // and key is the root itself and is only compared; otherwise the last certificate must name
    // the pinned root as its issuer. Either way the last link is checked with the pinned root's
    // key in step 3, never with a key that arrived with the evidence.
    let root_included = if last.subject().as_raw() == root.subject().as_raw() {
        if last.public_key().raw != root.public_key().raw {
            return Err(GpuEvidenceError::RootKeyMismatch {
                index: certs.len().saturating_sub(1),
                subject: describe(last),
            });
        }
        true
    } else if last.issuer().as_raw() == root.subject().as_raw() {
        false
    } else {
        return Err(GpuEvidenceError::NotRooted {
            last: describe(last),
            issuer: describe_name(last.issuer()),
            root: describe(&root),
        });
    };
    let linked_len = if root_included {
        certs.len().saturating_sub(1)
    } else {
        certs.len()
    };
    let linked = certs.get(..linked_len).unwrap_or_default();

    // Step 3: every link. The leaf must be an end-entity certificate; each certificate names
    // its issuer's subject as issuer, each issuer is a CA, and each signature verifies with the
    // issuer's key. The signatures alone are skipped for a chain the cache already verified.
    check_leaf_role(leaf)?;
    let key = cache_key(root_der, &ders);
    let cached = cache.contains(&key);
    check_links(linked, &root, !cached)?;
    if cached {
        cache.record_hit();
    } else {
        cache.insert(key);
    }

    // Step 4: every certificate is valid at `now`, the pinned root first because nothing it
    // vouches for counts once it has lapsed, then the chain leaf first.
    check_validity(&root, None, now)?;
    for (index, cert) in certs.iter().enumerate() {
        check_validity(cert, Some(index), now)?;
    }

    // Step 5: the evidence signature with the leaf's key. This comes before the firmware id
    // comparison because opaque field 20 is only the GPU's word once the signature covering it
    // has verified; comparing it earlier would report attacker-chosen bytes as a mismatch.
    let signed = parsed
        .signed_region(evidence)
        .ok_or(GpuEvidenceError::ParsedMismatch)?;
    let leaf_key = leaf.public_key();
    let curve = ec_curve(leaf_key);
    if curve != Ok(Curve::P384) {
        return Err(GpuEvidenceError::LeafKeyNotP384 {
            subject: describe(leaf),
            found: key_description(leaf_key),
        });
    }
    UnparsedPublicKey::new(
        &ECDSA_P384_SHA384_FIXED,
        leaf_key.subject_public_key.data.as_ref(),
    )
    .verify(signed, &parsed.signature)
    .map_err(|_| GpuEvidenceError::EvidenceSignature {
        subject: describe(leaf),
    })?;

    // Step 6: the leaf's firmware id equals opaque field 20 when the evidence carries it. A
    // leaf without any firmware id cannot vouch for the field, so that is a failure too; only
    // evidence without field 20 (drivers before it existed) skips the comparison.
    let leaf_fwid = leaf_fwid(leaf)?;
    let fwid_compared = match (parsed.fwid(), &leaf_fwid) {
        (None, _) => false,
        (Some(_), None) => return Err(GpuEvidenceError::LeafWithoutFwid),
        (Some(opaque), Some((_, fwid))) => {
            if opaque != fwid.as_slice() {
                return Err(GpuEvidenceError::FwidMismatch {
                    leaf: hex::encode(fwid),
                    opaque: hex::encode(opaque),
                });
            }
            true
        }
    };

    let (fwid_source, fwid) = match leaf_fwid {
        Some((source, fwid)) => (Some(source), Some(fwid)),
        None => (None, None),
    };
    Ok(GpuDevice {
        ueid: leaf.tbs_certificate.serial.to_str_radix(10),
        subjects: certs.iter().map(common_name).collect(),
        root_included,
        fwid,
        fwid_source,
        fwid_compared,
    })
}

/// Which device a chain's leaf certificate names, read without verifying anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafIdentity {
    /// SHA-256 of the leaf certificate's DER.
    pub sha256: [u8; 32],
    /// The leaf's serial number in decimal, which NRAS reports as the GPU's `ueid`.
    pub ueid: String,
}

/// The identity of the first certificate of `chain_pem` (the device leaf). Nothing is verified
/// here: whether this certificate is the device's is `verify_gpu_evidence`'s question; this only
/// says which certificate the evidence presents, so that two GPUs presenting the same one can be
/// told apart from two different ones.
pub fn leaf_identity(chain_pem: &[u8]) -> Result<LeafIdentity, GpuEvidenceError> {
    let ders = pem_certificates(chain_pem)?;
    let Some(der) = ders.first() else {
        return Err(GpuEvidenceError::TooFewCertificates {
            found: 0,
            subjects: String::new(),
        });
    };
    let leaf = parse_certificate(der, 0)?;
    Ok(LeafIdentity {
        sha256: Sha256::digest(der).into(),
        ueid: leaf.tbs_certificate.serial.to_str_radix(10),
    })
}

/// The DER of every PEM block, in order; any block that is not a certificate is an error.
fn pem_certificates(chain_pem: &[u8]) -> Result<Vec<Vec<u8>>, GpuEvidenceError> {
    Pem::iter_from_buffer(chain_pem)
        .enumerate()
        .map(|(index, block)| {
            let pem = block.map_err(|e| GpuEvidenceError::Pem {
                index,
                reason: e.to_string().to_lowercase(),
            })?;
            if pem.label != "CERTIFICATE" {
                return Err(GpuEvidenceError::PemLabel {
                    index,
                    found: pem.label,
                });
            }
            Ok(pem.contents)
        })
        .collect()
}

/// One certificate of the chain, with nothing after its DER.
fn parse_certificate(der: &[u8], index: usize) -> Result<X509Certificate<'_>, GpuEvidenceError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| GpuEvidenceError::CertificateDer {
            index,
            reason: e.to_string().to_lowercase(),
        })?;
    // Trailing bytes would make the cache key's concatenation ambiguous and mean the PEM block
    // carried something no check looked at.
    if !rest.is_empty() {
        return Err(GpuEvidenceError::CertificateTrailingBytes {
            index,
            count: rest.len(),
        });
    }
    Ok(cert)
}

/// The pinned root, with nothing after its DER.
fn parse_root(der: &[u8]) -> Result<X509Certificate<'_>, GpuEvidenceError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(GpuEvidenceError::RootDer {
            reason: format!("{} bytes after its der encoding, expected none", rest.len()),
        }),
        Err(e) => Err(GpuEvidenceError::RootDer {
            reason: e.to_string().to_lowercase(),
        }),
    }
}

/// SHA-256 over the pinned root's DER followed by each certificate's DER.
fn cache_key(root_der: &[u8], ders: &[Vec<u8>]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(root_der);
    for der in ders {
        hasher.update(der);
    }
    hasher.finalize().into()
}
