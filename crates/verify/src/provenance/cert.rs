//! Steps 6 and 7 of [`super::verify_entry`]: the signing certificate chains to a Fulcio CA of
//! the trust root, with every certificate of the chain valid at the entry's integrated time
//! (Fulcio's leaves live ten minutes, so this proves the signature was made while the leaf
//! was valid: Rekor vouches for the time), and the identity the leaf names.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use super::{ProvenanceError, SignerIdentity, SigstoreTrust};
use crate::gpu::cert_signature::{Issuers, verify_issued_by};

/// Fulcio's OIDC issuer extension (v2, a DER UTF8String).
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// Fulcio's older OIDC issuer extension (the raw string).
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// A chain never needs more than root, intermediate and leaf; the bound stops a loop.
const MAX_DEPTH: usize = 4;

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, ProvenanceError> {
    X509Certificate::from_der(der).map(|(_, c)| c).map_err(|e| {
        ProvenanceError::CertificateChain(format!("expected a der certificate, found {e}"))
    })
}

fn valid_at(
    cert: &X509Certificate<'_>,
    at: ASN1Time,
    integrated_time: i64,
    role: &str,
) -> Result<(), ProvenanceError> {
    let v = cert.validity();
    if v.is_valid_at(at) {
        return Ok(());
    }
    Err(ProvenanceError::CertificateValidity(format!(
        "expected the entry's time {} ({integrated_time}) within the {role}'s validity {} .. {}, found it outside",
        at, v.not_before, v.not_after
    )))
}

/// Step 6: the chain from `leaf_der` to a self-signed Fulcio root of the trust root, each link
/// signed by the next and valid at `integrated_time`.
pub(crate) fn verify_chain(
    leaf_der: &[u8],
    integrated_time: i64,
    trust: &SigstoreTrust,
) -> Result<(), ProvenanceError> {
    let at = ASN1Time::from_timestamp(integrated_time).map_err(|e| {
        ProvenanceError::CertificateValidity(format!(
            "expected a representable integrated time, found {integrated_time} ({e})"
        ))
    })?;
    let leaf = parse(leaf_der)?;
    valid_at(&leaf, at, integrated_time, "signing certificate")?;
    // A CA certificate (Fulcio's intermediate carries the code-signing usage too) never signs
    // an artifact itself.
    if leaf.is_ca() {
        return Err(ProvenanceError::CertificateChain(format!(
            "expected an end-entity signing certificate, found the ca certificate {}",
            leaf.subject()
        )));
    }
    match leaf.extended_key_usage() {
        Ok(Some(eku)) if eku.value.code_signing => {}
        _ => {
            return Err(ProvenanceError::CertificateChain(
                "expected a code-signing extended key usage on the signing certificate, found none"
                    .into(),
            ));
        }
    }
    let anchors = trust
        .fulcio
        .iter()
        .map(|der| parse(der))
        .collect::<Result<Vec<_>, _>>()?;
    let mut current = leaf;
    for _ in 0..MAX_DEPTH {
        let issuer = anchors.iter().find(|a| {
            a.subject() == current.issuer()
                && verify_issued_by(&current, a, Issuers::EcdsaOnly).is_ok()
        });
        let Some(issuer) = issuer else {
            return Err(ProvenanceError::CertificateChain(format!(
                "expected {} to be issued by a fulcio ca of the trust root, found no ca of that name whose key signed it",
                if current.issuer().to_string().is_empty() {
                    "<empty name>".to_string()
                } else {
                    current.issuer().to_string()
                }
            )));
        };
        valid_at(
            issuer,
            at,
            integrated_time,
            &format!("ca {}", issuer.subject()),
        )?;
        let self_signed = issuer.subject() == issuer.issuer()
            && verify_issued_by(issuer, issuer, Issuers::EcdsaOnly).is_ok();
        if self_signed {
            return Ok(());
        }
        current = issuer.clone();
    }
    Err(ProvenanceError::CertificateChain(format!(
        "expected a root within {MAX_DEPTH} certificates, found a longer chain"
    )))
}

/// Step 7: the OIDC issuer (from the v2 extension, else the v1 one) and the subject (the SAN's
/// URI, else its e-mail address) the leaf names.
pub(crate) fn identity(leaf_der: &[u8]) -> Result<SignerIdentity, ProvenanceError> {
    let leaf = parse(leaf_der).map_err(|e| ProvenanceError::Identity(e.to_string()))?;
    let mut v2 = None;
    let mut v1 = None;
    for ext in leaf.extensions() {
        match ext.oid.to_id_string().as_str() {
            OID_ISSUER_V2 => v2 = Some(der_utf8_string(ext.value)?),
            OID_ISSUER_V1 => v1 = Some(raw_string(ext.value)?),
            _ => {}
        }
    }
    let issuer = v2.or(v1).ok_or_else(|| {
        ProvenanceError::Identity(format!(
            "expected a fulcio oidc issuer extension ({OID_ISSUER_V2} or {OID_ISSUER_V1}), found none"
        ))
    })?;
    let san = leaf
        .subject_alternative_name()
        .map_err(|e| {
            ProvenanceError::Identity(format!(
                "expected a readable subject alternative name, found {e}"
            ))
        })?
        .ok_or_else(|| {
            ProvenanceError::Identity("expected a subject alternative name, found none".into())
        })?;
    let names = &san.value.general_names;
    let uri = names.iter().find_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let email = names.iter().find_map(|n| match n {
        GeneralName::RFC822Name(e) => Some(*e),
        _ => None,
    });
    let subject = uri.or(email).ok_or_else(|| {
        ProvenanceError::Identity(
            "expected a uri or e-mail subject alternative name, found neither".into(),
        )
    })?;
    Ok(SignerIdentity {
        issuer,
        subject: subject.to_string(),
    })
}

fn raw_string(value: &[u8]) -> Result<String, ProvenanceError> {
    String::from_utf8(value.to_vec()).map_err(|_| {
        ProvenanceError::Identity(format!(
            "expected a utf-8 issuer in {OID_ISSUER_V1}, found other bytes"
        ))
    })
}

/// A DER UTF8String (tag 12, short or long length form), as Fulcio writes its v2 extensions.
fn der_utf8_string(value: &[u8]) -> Result<String, ProvenanceError> {
    let bad = || {
        ProvenanceError::Identity(format!(
            "expected a der utf8string in {OID_ISSUER_V2}, found {}",
            hex::encode(value)
        ))
    };
    let (&tag, rest) = value.split_first().ok_or_else(bad)?;
    if tag != 0x0c {
        return Err(bad());
    }
    let (&len0, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 2 {
            return Err(bad());
        }
        let (len_bytes, rest) = rest.split_at_checked(n).ok_or_else(bad)?;
        (
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
            rest,
        )
    };
    if rest.len() != len {
        return Err(bad());
    }
    String::from_utf8(rest.to_vec()).map_err(|_| bad())
}
