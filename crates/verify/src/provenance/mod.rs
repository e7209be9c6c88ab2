//! Container provenance from Sigstore: proves, offline and without a clock, that a Rekor entry
//! is genuine (signed entry timestamp, inclusion proof and checkpoint under a pinned Rekor key),
//! that its Fulcio certificate chains to a pinned Fulcio CA and was valid when the entry was
//! logged, who the certificate names (OIDC issuer and subject), and that the entry is about one
//! image digest, proven from the signed payload rather than from Rekor's unsigned search index.
//!
//! The fetching (Rekor look-ups, the payload from the registry or GitHub's attestation API), the
//! policy and the check wiring live elsewhere; this module is the pure core they call:
//! [`verify_entry`] then [`judge_identity`]. The helpers the simulator needs to build a valid
//! entry with test keys ([`set_payload`], [`leaf_hash`], [`node_hash`],
//! [`root_from_inclusion_proof`], [`checkpoint_body`], [`log_id`], [`dsse_pae`],
//! [`payload_names_digest`]) are exported so the two sides cannot drift.

mod binding;
mod body;
mod cert;
mod entry;
mod log;
mod trust;

pub use binding::{IN_TOTO_PAYLOAD_TYPE, dsse_pae, payload_names_digest};
pub use log::{
    checkpoint_body, leaf_hash, log_id, node_hash, root_from_inclusion_proof, set_payload,
};
pub use trust::SigstoreTrust;

/// An identity a target allows to have built an image.
///
/// `issuer` must equal the certificate's OIDC issuer exactly. `subject` must equal the
/// certificate's subject (a workflow URI or an e-mail address) exactly, or, when it ends with
/// `*`, the subject must start with everything before the `*` (so
/// `https://github.com/org/repo/.github/workflows/build.yml@refs/tags/*` allows any tag of that
/// workflow). A lone `*` is refused: it would allow anyone the issuer vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedIdentity {
    pub issuer: String,
    pub subject: String,
}

/// Who signed an entry, as the Fulcio certificate names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerIdentity {
    /// The OIDC issuer (`https://token.actions.githubusercontent.com` for GitHub Actions).
    pub issuer: String,
    /// The SAN: the workflow URI for GitHub Actions, an e-mail address otherwise.
    pub subject: String,
}

/// A Rekor entry every step of [`verify_entry`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    pub identity: SignerIdentity,
    /// When Rekor logged the entry (Unix seconds), as its signed entry timestamp says.
    pub integrated_time: i64,
    /// The entry's global index in Rekor (the one the signed entry timestamp covers).
    pub log_index: i64,
    /// The entry's UUID, the key of Rekor's answer.
    pub uuid: String,
}

/// Why an entry was not accepted: one variant per step of [`verify_entry`], plus the trust root
/// and the identity judgement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvenanceError {
    /// The pinned or configured trust root could not be read.
    #[error("sigstore trust root: {0}")]
    TrustRoot(String),
    /// Step 1: the Rekor answer is not a readable entry.
    #[error("rekor entry: {0}")]
    Entry(String),
    /// Step 2: the entry names a log whose key is not in the trust root.
    #[error("rekor log: expected a log id of the trust root ({expected}), found {found}")]
    UnknownLog { expected: String, found: String },
    /// Step 3: the signed entry timestamp does not verify.
    #[error("signed entry timestamp: {0}")]
    SignedEntryTimestamp(String),
    /// Step 4: the inclusion proof does not lead to its root hash.
    #[error("inclusion proof: {0}")]
    InclusionProof(String),
    /// Step 4: the checkpoint is unsigned, badly signed, or names another tree.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Step 5: the entry's body is of an unsupported kind or lacks its certificate.
    #[error("entry body: {0}")]
    Body(String),
    /// Step 6: the certificate does not chain to the trust root's Fulcio CA.
    #[error("certificate chain: {0}")]
    CertificateChain(String),
    /// Step 6: the entry was logged outside the certificate's (or its chain's) validity.
    #[error("certificate validity: {0}")]
    CertificateValidity(String),
    /// Step 7: the certificate names no readable OIDC issuer or subject.
    #[error("certificate identity: {0}")]
    Identity(String),
    /// Step 8: the entry cannot be proven to be about the image digest.
    #[error("image binding: {0}")]
    Binding(String),
    /// [`judge_identity`]: the signer is not among the allowed identities.
    #[error("signer identity: {0}")]
    IdentityNotAllowed(String),
}

/// Verifies one Rekor entry as served by `GET /api/v1/log/entries/{uuid}` (a JSON object keyed
/// by the UUID), and proves that it is about `image_digest` (`sha256:<64 hex>`).
///
/// `payload` is the signed payload the entry's body commits to by hash, because Rekor does not
/// serve it for every kind: for `dsse` 0.0.1 and `intoto` 0.0.2 it is the in-toto statement (the
/// DSSE envelope's payload, decoded; GitHub's attestation API and `cosign download attestation`
/// give the envelope), for `hashedrekord` 0.0.1 it is cosign's simple-signing JSON (the `.sig`
/// image's layer). `None` is accepted only for `intoto` entries whose answer carries the
/// statement in `attestation.data`.
///
/// 1. parse the entry;
/// 2. its log id names a Rekor key of the trust root;
/// 3. the signed entry timestamp verifies with that key;
/// 4. the inclusion proof leads from the entry's leaf to the root hash of a checkpoint signed by
///    that key;
/// 5. the body's kind and its certificate;
/// 6. the certificate chains to a Fulcio CA of the trust root and the entry's time lies in every
///    validity of the chain;
/// 7. the identity the certificate names;
/// 8. the payload hashes to the body's commitment, its signature verifies with the certificate's
///    key, and it names `image_digest`.
pub fn verify_entry(
    entry_json: &str,
    payload: Option<&[u8]>,
    image_digest: &str,
    trust: &SigstoreTrust,
) -> Result<VerifiedEntry, ProvenanceError> {
    // 1. The entry, its body and its proofs.
    let entry = entry::parse(entry_json)?;
    // 2. The log that signed it.
    let rekor_key = trust.rekor_key(&entry.log_id)?;
    // 3. The signed entry timestamp.
    log::verify_set(&entry, rekor_key)?;
    // 4. The inclusion proof and the checkpoint naming its root.
    log::verify_inclusion(&entry, rekor_key)?;
    // 5. The body's kind and the signing certificate in it.
    let body = body::parse(&entry.body)?;
    // 6. The certificate's chain to Fulcio, valid when the entry was logged.
    cert::verify_chain(&body.certificate_der, entry.integrated_time, trust)?;
    // 7. Who the certificate names.
    let identity = cert::identity(&body.certificate_der)?;
    // 8. The binding to the image.
    let payload = match payload {
        Some(p) => p.to_vec(),
        None => entry.attestation.clone().ok_or_else(|| {
            ProvenanceError::Binding(format!(
                "expected the signed payload (rekor does not serve it for {}), found none",
                body.kind.name()
            ))
        })?,
    };
    binding::verify(&body, &payload, image_digest)?;
    Ok(VerifiedEntry {
        identity,
        integrated_time: entry.integrated_time,
        log_index: entry.log_index,
        uuid: entry.uuid,
    })
}

/// The SHA-256 of the signed payload `entry_json`'s body commits to, when Rekor serves the entry
/// without that payload (every kind but an `intoto` entry carrying its statement), so a caller
/// holding candidate payloads can pick the entry's own by hash before verifying. `None` when the
/// answer carries its payload or cannot be read (then [`verify_entry`] says why).
pub fn unserved_payload_hash(entry_json: &str) -> Option<[u8; 32]> {
    let entry = entry::parse(entry_json).ok()?;
    if entry.attestation.is_some() {
        return None;
    }
    body::parse(&entry.body).ok().map(|body| body.payload_hash)
}

/// Whether `found` is one of the `allowed` identities (see [`AllowedIdentity`] for the subject
/// pattern form).
pub fn judge_identity(
    found: &SignerIdentity,
    allowed: &[AllowedIdentity],
) -> Result<(), ProvenanceError> {
    let matches = |a: &AllowedIdentity| {
        a.issuer == found.issuer
            && match a.subject.strip_suffix('*') {
                // A bare `*` would allow anyone the issuer vouches for: never a match.
                Some("") => false,
                Some(prefix) => found.subject.starts_with(prefix),
                None => a.subject == found.subject,
            }
    };
    if allowed.iter().any(matches) {
        return Ok(());
    }
    let expected = if allowed.is_empty() {
        "an allowed identity (none configured)".to_string()
    } else {
        allowed
            .iter()
            .map(|a| format!("{} from {}", a.subject, a.issuer))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    Err(ProvenanceError::IdentityNotAllowed(format!(
        "expected {expected}, found {} from {}",
        found.subject, found.issuer
    )))
}

#[cfg(test)]
mod tests;
