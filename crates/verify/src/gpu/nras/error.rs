//! `NrasError`: why an NRAS answer is not accepted, one variant per failed requirement, each
//! documented with the `verify_token` step that detects it. Every message names what was
//! expected and what was found.

/// Why an NRAS answer is not accepted; one variant per failed requirement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NrasError {
    /// Step 1: the response is a JSON string whose content is not JSON.
    #[error("nras response: expected json, found a string that is not json: {0}")]
    ResponseNotJson(String),
    /// Step 1: the response is not `[["JWT", overall], {submod: token}]`.
    #[error(
        "nras response: expected [[\"JWT\", <overall token>], {{<submod>: <token>}}], found {0}"
    )]
    ResponseShape(String),
    /// Step 2: a token is not three dot-separated parts.
    #[error("token {token}: expected 3 dot-separated parts, found {found}")]
    JwtParts { token: String, found: usize },
    /// Step 2: a token part is not unpadded base64url.
    #[error("token {token}: expected the {part} to be unpadded base64url, found other characters")]
    JwtBase64 { token: String, part: &'static str },
    /// Step 2: a token's header or payload is not a JSON object.
    #[error("token {token}: expected the {part} to be a json object, found {found}")]
    JwtJson {
        token: String,
        part: &'static str,
        found: String,
    },
    /// Step 2: a token is signed with something other than ES384.
    #[error("token {token}: expected alg \"ES384\", found {alg}")]
    UnsupportedAlg { token: String, alg: String },
    /// Step 2: a token's header marks extensions critical, which this verifier cannot honour.
    #[error("token {token}: expected no crit header parameter, found {found}")]
    CriticalHeader { token: String, found: String },
    /// Step 2: a token's header has no string `kid`.
    #[error("token {token}: expected a string kid in the header, found {found}")]
    MissingKid { token: String, found: String },
    /// Step 3: the JWKS is not an object with a `keys` list.
    #[error("jwks: expected an object with a keys list, found {0}")]
    JwksShape(String),
    /// Step 3: no JWK carries the token's `kid`.
    #[error("token {token}: expected kid \"{kid}\" in the jwks, found no key with it")]
    UnknownKid { token: String, kid: String },
    /// Step 3: several JWKs carry the same `kid`, so which one signed is ambiguous.
    #[error("jwk {kid}: expected one key with this kid, found {count}")]
    DuplicateKid { kid: String, count: usize },
    /// Step 3: the JWK is not an elliptic-curve key.
    #[error("jwk {kid}: expected kty \"EC\", found {found}")]
    JwkKeyType { kid: String, found: String },
    /// Step 3: the JWK is not on P-384.
    #[error("jwk {kid}: expected crv \"P-384\", found {found}")]
    JwkCurve { kid: String, found: String },
    /// Step 3: the JWK names an algorithm other than ES384.
    #[error("jwk {kid}: expected alg \"ES384\" when present, found {found}")]
    JwkAlg { kid: String, found: String },
    /// Step 3: the JWK's x or y is not a 48-byte base64url coordinate.
    #[error("jwk {kid}: expected {coordinate} to be a 48-byte base64url coordinate, found {found}")]
    JwkCoordinate {
        kid: String,
        coordinate: &'static str,
        found: String,
    },
    /// Step 3: the JWK carries no certificate chain.
    #[error("jwk {kid}: expected x5c, a non-empty list of base64 certificates, found {found}")]
    X5cMissing { kid: String, found: String },
    /// Step 3: an `x5c` entry is not standard base64.
    #[error("jwk {kid}: expected x5c[{index}] to be standard base64, found other characters")]
    X5cBase64 { kid: String, index: usize },
    /// Step 3: an `x5c` entry is not a DER certificate.
    #[error("jwk {kid}: expected x5c[{index}] to be a der certificate, found {reason}")]
    X5cCertificate {
        kid: String,
        index: usize,
        reason: String,
    },
    /// Step 3: a pinned intermediate is not a DER certificate.
    #[error("pinned nras intermediate {index}: expected a der certificate, found {reason}")]
    AnchorCertificate { index: usize, reason: String },
    /// Step 3: neither `x5c[1]` nor the leaf's issuer is a pinned intermediate.
    #[error(
        "jwk {kid}: expected the x5c leaf to be issued by a pinned nras intermediate, found issuer \"{issuer}\", which is not pinned"
    )]
    UntrustedIssuer { kid: String, issuer: String },
    /// Step 3: the leaf's two signature-algorithm fields disagree.
    #[error(
        "jwk {kid}: expected the x5c leaf's signature algorithm fields to agree, found {outer} outside and {inner} inside"
    )]
    CertSignatureAlgorithmMismatch {
        kid: String,
        outer: String,
        inner: String,
    },
    /// Step 3: the leaf is signed with an algorithm this verifier does not implement.
    #[error(
        "jwk {kid}: expected the x5c leaf to be signed with rsa pkcs#1 sha-256/384/512 or ecdsa sha-256/384, found {found}"
    )]
    UnsupportedCertSignature { kid: String, found: String },
    /// Step 3: the pinned intermediate's key does not verify the leaf's signature.
    #[error(
        "jwk {kid}: expected the x5c leaf's signature to verify with the pinned intermediate \"{issuer}\", found it does not"
    )]
    LeafSignatureInvalid { kid: String, issuer: String },
    /// Step 3: the pinned intermediate is outside its validity window.
    #[error(
        "pinned nras intermediate \"{subject}\": expected validity to cover {now}, found {not_before} to {not_after}"
    )]
    IntermediateNotValidAt {
        subject: String,
        not_before: String,
        not_after: String,
        now: String,
    },
    /// Step 3: the leaf is outside its validity window.
    #[error(
        "jwk {kid}: expected the x5c leaf to be valid at {now}, found {not_before} to {not_after}"
    )]
    LeafNotValidAt {
        kid: String,
        not_before: String,
        not_after: String,
        now: String,
    },
    /// Step 3: the leaf's key is not a P-384 point.
    #[error("jwk {kid}: expected the x5c leaf to hold a p-384 public key, found {found}")]
    LeafKeyNotP384 { kid: String, found: String },
    /// Step 3: the JWK's coordinates are not the leaf certificate's key.
    #[error(
        "jwk {kid}: expected x and y to equal the x5c leaf's public key, found a different {coordinate}"
    )]
    JwkKeyMismatch {
        kid: String,
        coordinate: &'static str,
    },
    /// Step 4: the signature is not 96 bytes of r‖s.
    #[error("token {token}: expected a 96-byte r||s es384 signature, found {found} bytes")]
    SignatureLength { token: String, found: usize },
    /// Step 4: the signature does not verify.
    #[error(
        "token {token}: expected an es384 signature by jwk {kid}, found one that does not verify"
    )]
    SignatureInvalid { token: String, kid: String },
    /// Step 5: a required claim is absent.
    #[error("token {token}: expected claim {claim}, found it missing")]
    MissingClaim { token: String, claim: &'static str },
    /// Step 5: a claim has the wrong JSON type.
    #[error("token {token}: expected claim {claim} to be {expected}, found {found}")]
    ClaimType {
        token: String,
        claim: &'static str,
        expected: &'static str,
        found: String,
    },
    /// Step 5: the token names another issuer.
    #[error("token {token}: expected iss \"{expected}\", found \"{found}\"")]
    IssuerMismatch {
        token: String,
        expected: String,
        found: String,
    },
    /// Step 5: the token has expired.
    #[error("token {token}: expected exp at or after {now}, found {exp}")]
    Expired {
        token: String,
        exp: String,
        now: String,
    },
    /// Step 5: `nbf` or `iat` lies further in the future than the allowed skew.
    #[error("token {token}: expected {claim} at or before {latest} (now + 300 s), found {found}")]
    NotYetValid {
        token: String,
        claim: &'static str,
        latest: String,
        found: String,
    },
    /// Step 5: the token answers another nonce.
    #[error("token {token}: expected eat_nonce {expected}, found {found}")]
    NonceMismatch {
        token: String,
        expected: String,
        found: String,
    },
    /// Step 6: a `submods` entry is not `["DIGEST", [<alg>, <hex>]]`.
    #[error("submod {submod}: expected [\"DIGEST\", [\"SHA-256\", <hex>]], found {found}")]
    SubmodMalformed { submod: String, found: String },
    /// Step 6: a `submods` digest uses another hash.
    #[error("submod {submod}: expected digest algorithm \"SHA-256\", found {found}")]
    SubmodDigestAlgorithm { submod: String, found: String },
    /// Step 6: the overall token lists a GPU whose token is absent.
    #[error("submod {submod}: expected a token for it in the response, found none")]
    SubmodWithoutToken { submod: String },
    /// Step 6: a GPU token's digest is not the one the overall token lists.
    #[error(
        "submod {submod}: expected the token's sha-256 {expected} listed in the overall token, found {found}"
    )]
    SubmodDigestMismatch {
        submod: String,
        expected: String,
        found: String,
    },
    /// Step 6: a GPU token is not listed in the overall token, so nothing vouches for it.
    #[error("token {submod}: expected an entry in the overall token's submods, found none")]
    TokenWithoutSubmod { submod: String },
    /// Step 6: the answer speaks for a different number of GPUs than the evidence holds.
    #[error("expected {expected} gpu tokens, one per gpu in the evidence, found {found}")]
    GpuCountMismatch { expected: usize, found: usize },
    /// Step 7: a ueid occurs twice, in the tokens or in the evidence.
    #[error("ueid {ueid}: expected it once in the {side}, found it more than once")]
    DuplicateUeid { ueid: String, side: &'static str },
    /// Step 7: a token's ueid is not the serial of any GPU in the evidence.
    #[error(
        "token {submod}: expected its ueid to be a gpu of the evidence, found ueid {ueid}, which matches none"
    )]
    UnknownUeid { submod: String, ueid: String },
    /// Step 7: submod names cannot be matched by position.
    #[error("submods: expected GPU-0 to GPU-{last} to match gpus by order, found {found}")]
    SubmodNumbering { last: String, found: String },
    /// Step 7: matching by order paired a token with a GPU whose serial it does not carry.
    #[error(
        "token {submod}: expected ueid {evidence_ueid} of evidence gpu {evidence_index} it matches by order, found {ueid}"
    )]
    UeidOrderConflict {
        submod: String,
        ueid: String,
        evidence_index: usize,
        evidence_ueid: String,
    },
}
