//! The Sigstore trust root: the Fulcio CA certificates (roots and intermediates) a signing
//! certificate must chain to, and the Rekor public keys, each known by its log id (the SHA-256
//! of its DER SubjectPublicKeyInfo). Production's is pinned in the binary
//! (`anchors/sigstore/`); tests and the simulator build one from PEM through `[dangerous]`.

use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::ProvenanceError;
use super::log::log_id;
use crate::gpu::cert_signature::{Curve, ec_curve};

/// Sigstore production's Fulcio root and intermediate (from sigstore/root-signing's
/// `trusted_root.json`; see `anchors/sigstore/PROVENANCE.md`).
const PRODUCTION_FULCIO: &str = include_str!("../../anchors/sigstore/fulcio_chain.pem");
/// Sigstore production's Rekor public key (log id `c0d23d6a…`).
const PRODUCTION_REKOR: &str = include_str!("../../anchors/sigstore/rekor.pem");

/// A Rekor log's public key (ECDSA P-256, as every Rekor v1 log of Sigstore signs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RekorKey {
    pub(crate) log_id: [u8; 32],
    /// The uncompressed EC point of the key.
    pub(crate) point: Vec<u8>,
}

/// Fulcio CA certificates and Rekor keys an entry must be proven against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreTrust {
    /// DER certificates: the self-signed roots and the intermediates they issued.
    pub(crate) fulcio: Vec<Vec<u8>>,
    pub(crate) rekor: Vec<RekorKey>,
}

impl SigstoreTrust {
    /// Sigstore's production trust root, pinned in the binary.
    pub fn production() -> Result<Self, ProvenanceError> {
        Self::from_pem(PRODUCTION_FULCIO, PRODUCTION_REKOR)
    }

    /// A trust root from PEM: `fulcio_chain_pems` holds one or more CERTIFICATE blocks (roots
    /// and intermediates, in any order), `rekor_key_pem` one or more PUBLIC KEY blocks. Test
    /// roots come this way, through `[dangerous]` only.
    pub fn from_pem(fulcio_chain_pems: &str, rekor_key_pem: &str) -> Result<Self, ProvenanceError> {
        let fulcio = pem_blocks(fulcio_chain_pems, "CERTIFICATE")?;
        for der in &fulcio {
            let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
                ProvenanceError::TrustRoot(format!(
                    "expected a der certificate in the fulcio pem, found {e}"
                ))
            })?;
            if !cert.is_ca() {
                return Err(ProvenanceError::TrustRoot(format!(
                    "expected ca certificates in the fulcio pem, found {} without the ca flag",
                    cert.subject()
                )));
            }
        }
        if fulcio.is_empty() {
            return Err(ProvenanceError::TrustRoot(
                "expected at least one fulcio certificate, found none".into(),
            ));
        }
        let mut rekor = Vec::new();
        for spki_der in pem_blocks(rekor_key_pem, "PUBLIC KEY")? {
            let (_, spki) = SubjectPublicKeyInfo::from_der(&spki_der).map_err(|e| {
                ProvenanceError::TrustRoot(format!(
                    "expected a der public key in the rekor pem, found {e}"
                ))
            })?;
            match ec_curve(&spki) {
                Ok(Curve::P256) => {}
                Ok(Curve::P384) => {
                    return Err(ProvenanceError::TrustRoot(
                        "expected an ecdsa p-256 rekor key, found ecdsa p-384".into(),
                    ));
                }
                Err(other) => {
                    return Err(ProvenanceError::TrustRoot(format!(
                        "expected an ecdsa p-256 rekor key, found {other}"
                    )));
                }
            }
            rekor.push(RekorKey {
                log_id: log_id(&spki_der),
                point: spki.subject_public_key.data.to_vec(),
            });
        }
        if rekor.is_empty() {
            return Err(ProvenanceError::TrustRoot(
                "expected at least one rekor public key, found none".into(),
            ));
        }
        Ok(Self { fulcio, rekor })
    }

    /// The log ids of the Rekor keys, hex, for messages and for the status page.
    pub fn rekor_log_ids(&self) -> Vec<String> {
        self.rekor.iter().map(|k| hex::encode(k.log_id)).collect()
    }

    /// Step 2: the Rekor key whose log id the entry names.
    pub(crate) fn rekor_key(&self, log_id: &[u8; 32]) -> Result<&RekorKey, ProvenanceError> {
        self.rekor
            .iter()
            .find(|k| &k.log_id == log_id)
            .ok_or_else(|| ProvenanceError::UnknownLog {
                expected: self.rekor_log_ids().join(" or "),
                found: hex::encode(log_id),
            })
    }
}

/// The DER contents of every PEM block labelled `label`; any other label is an error, so a
/// private key pasted by mistake is refused rather than ignored.
fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, ProvenanceError> {
    let mut out = Vec::new();
    for pem in Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| {
            ProvenanceError::TrustRoot(format!("expected pem {label} blocks, found {e}"))
        })?;
        if pem.label != label {
            return Err(ProvenanceError::TrustRoot(format!(
                "expected pem {label} blocks, found a {} block",
                pem.label
            )));
        }
        out.push(pem.contents);
    }
    Ok(out)
}
