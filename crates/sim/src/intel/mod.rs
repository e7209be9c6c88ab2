//! A test Intel DCAP PKI and TDX quotes that dcap-qvl verifies, under a TEST root CA.
//!
//! `IntelTestPki::generate` makes, at simulator start, everything Intel and a PCCS would
//! provide: a self-signed root ("teewatch TEST Intel SGX Root CA — not Intel"), a PCK Platform
//! CA, the TCB signing certificate, the root CA and PCK CRLs, the QE identity and, for each
//! simulated platform (`Platform`, in `platform.rs`), a PCK leaf carrying the SGX extension
//! (FMSPC, CPUSVN, PCESVN…), a QE attestation key with a QE report signed by that PCK key, and
//! the signed TCB info of the platform's FMSPC. Quotes built from a `TdBody` on a platform then
//! pass every check of dcap-qvl 0.7.1 when it is given this root instead of Intel's and that
//! platform's collateral, and fail with Intel's real root or another platform's TCB info:
//! nothing here can pass for genuine evidence.
//!
//! The simulated platforms are fixed (see the constants below and in `platform.rs`) so the TCB
//! info can be written to match them; the TCB status of a platform's level is chosen per
//! collateral (`TcbStatusChoice`). The TD quoting enclave's identity (MRSIGNER, ISVPRODID,
//! attributes) is Intel's published one, so the QE report looks like a real one; only the keys
//! differ.

mod certs;
mod collateral;
mod der;
mod platform;
mod quote;

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rcgen::{BasicConstraints, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256};

use certs::{SignedJson, cert_params, crl, raw_signer, signed_json};
pub use platform::Platform;
use platform::{PlatformIssuer, SimPlatform};

/// Why the test PKI or a quote could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("certificate or crl generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("ecdsa p-256 {0} failed")]
    Crypto(&'static str),
    #[error("json serialisation failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0} is outside the dates a certificate or collateral can carry")]
    Time(String),
    #[error("encoding failed: {0}")]
    Encoding(String),
}

/// Path of the root CA CRL on a PCCS, and the root certificate's CRL distribution point under
/// the simulator's base URL. A PCCS serves it hex-encoded (dcap-qvl's client hex-decodes this
/// path); a plain distribution point serves DER.
pub const ROOT_CA_CRL_PATH: &str = "/sgx/certification/v4/rootcacrl";
/// Path (with query) of the PCK Platform CA's CRL, DER-encoded, as Intel PCS v4 serves it.
pub const PCK_CRL_PATH: &str = "/sgx/certification/v4/pckcrl?ca=platform&encoding=der";
/// Path of the TDX TCB info; the query is `?fmspc=<12 hex>` (dcap-qvl adds `&update=standard`).
pub const TCB_INFO_PATH: &str = "/tdx/certification/v4/tcb";
/// Path of the TD QE identity.
pub const QE_IDENTITY_PATH: &str = "/tdx/certification/v4/qe/identity";
/// Response headers carrying the issuer chains (URL-encoded PEM, see `header_value`).
pub const TCB_INFO_ISSUER_CHAIN_HEADER: &str = "TCB-Info-Issuer-Chain";
pub const QE_IDENTITY_ISSUER_CHAIN_HEADER: &str = "SGX-Enclave-Identity-Issuer-Chain";
pub const PCK_CRL_ISSUER_CHAIN_HEADER: &str = "SGX-PCK-CRL-Issuer-Chain";

/// The advisory the platform's level carries when it is out of date or revoked.
pub const OUT_OF_DATE_ADVISORY: &str = "INTEL-SA-00999";

/// The platforms' CPUSVN and PCESVN, those of a Sapphire Rapids host in dcap-qvl's sample PCK
/// certificate, so the TCB components look like a real TDX machine's.
const CPU_SVN: [u8; 16] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
const PCE_SVN: u16 = 11;
const PCE_ID: [u8; 2] = [0, 0];
/// Scalable SGX, the type of TDX-capable Xeons.
const SGX_TYPE: u8 = 1;
/// TEE_TCB_SVN of the simulated TDX module: ISVSVN 6, module version 1 (identity "TDX_01"),
/// TDX late microcode SVN 3 — as on the dstack host of dcap-qvl's sample quote.
const TEE_TCB_SVN: [u8; 16] = [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// MRSEAM of Intel's TDX module 1.5.16, as seen on real NanoGPT and NEAR nodes (REFERENCE.md §2)
/// and in the known-measurements table, so a simulated target with no pins of its own passes
/// `pin:mrseam` by name. dcap-qvl does not compare MRSEAM with TEE_TCB_SVN, so the pairing with
/// the SVN above is the simulator's, not a real host's.
const MRSEAM: [u8; 48] = hex_const(
    "7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d",
);
/// MRTD and RTMR0–2 of a dstack guest (dcap-qvl's sample quote), for `TdBody::default`.
const SAMPLE_MRTD: [u8; 48] = hex_const(
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7",
);
const SAMPLE_RTMR0: [u8; 48] = hex_const(
    "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0",
);
const SAMPLE_RTMR1: [u8; 48] = hex_const(
    "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378",
);
const SAMPLE_RTMR2: [u8; 48] = hex_const(
    "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132",
);

/// Intel's TD quoting enclave identity: MRSIGNER, ISVPRODID 2, and the report attributes
/// (INIT | MODE64BIT | PROVISIONKEY, XFRM 0xe7) a production TD QE has.
const QE_MRSIGNER: [u8; 32] =
    hex_const("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5");
const QE_MRENCLAVE: [u8; 32] =
    hex_const("e5a3a7b5d830c2953b98534c6c59a3a34fdc34e933f7f5898f0a85cf08846bca");
const QE_ISVPRODID: u16 = 2;
const QE_ISVSVN: u16 = 4;
const QE_ATTRIBUTES: [u8; 16] = [0x15, 0, 0, 0, 0, 0, 0, 0, 0xe7, 0, 0, 0, 0, 0, 0, 0];
const QE_IDENTITY_ATTRIBUTES: &str = "11000000000000000000000000000000";
const TCB_EVALUATION_DATA_NUMBER: u32 = 17;

/// TD attributes with only SEPT_VE_DISABLE (bit 28) set, as dstack guests run.
const TD_ATTRIBUTES_SEPT_VE_DISABLE: [u8; 8] = [0, 0, 0, 0x10, 0, 0, 0, 0];
/// XFAM of a dstack guest (x87, SSE, AVX, AVX-512 state, PK, AMX…): 0x00000000000602e7.
const XFAM_DSTACK: [u8; 8] = [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0];

/// Decodes a hex literal at compile time; only used to initialise constants, so a bad literal
/// is a build error, never a runtime panic.
#[allow(clippy::indexing_slicing)]
pub(crate) const fn hex_const<const N: usize>(text: &str) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let bytes = text.as_bytes();
    assert!(bytes.len() == 2 * N, "hex literal has the wrong length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// The TCB status the collateral gives the simulated platform's TCB level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcbStatusChoice {
    UpToDate,
    /// Out of date, with advisory `OUT_OF_DATE_ADVISORY`.
    OutOfDate,
    /// Revoked: dcap-qvl stops with "TCB status is invalid: Revoked" after all signatures pass.
    Revoked,
}

impl TcbStatusChoice {
    pub const ALL: [TcbStatusChoice; 3] = [
        TcbStatusChoice::UpToDate,
        TcbStatusChoice::OutOfDate,
        TcbStatusChoice::Revoked,
    ];

    /// The status as Intel writes it in a TCB level.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatusChoice::UpToDate => "UpToDate",
            TcbStatusChoice::OutOfDate => "OutOfDate",
            TcbStatusChoice::Revoked => "Revoked",
        }
    }
}

/// The TD report body fields a simulated guest chooses; MRSIGNERSEAM, SEAMATTRIBUTES, MROWNER
/// and MROWNERCONFIG are zero.
#[derive(Clone, PartialEq, Eq)]
pub struct TdBody {
    pub tee_tcb_svn: [u8; 16],
    pub mrseam: [u8; 48],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mrtd: [u8; 48],
    pub mrconfigid: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
}

impl Default for TdBody {
    /// A dstack-like guest: the TDX module the test TCB info knows (TEE_TCB_SVN, MRSEAM),
    /// SEPT_VE_DISABLE only, dstack's XFAM, a real dstack MRTD and RTMR0–2, and zero MRCONFIGID,
    /// RTMR3 and REPORTDATA for the caller to fill.
    fn default() -> Self {
        TdBody {
            tee_tcb_svn: TEE_TCB_SVN,
            mrseam: MRSEAM,
            td_attributes: TD_ATTRIBUTES_SEPT_VE_DISABLE,
            xfam: XFAM_DSTACK,
            mrtd: SAMPLE_MRTD,
            mrconfigid: [0; 48],
            rtmr: [SAMPLE_RTMR0, SAMPLE_RTMR1, SAMPLE_RTMR2, [0; 48]],
            report_data: [0; 64],
        }
    }
}

impl fmt::Debug for TdBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdBody")
            .field("mrtd", &hex::encode(self.mrtd))
            .field("report_data", &hex::encode(self.report_data))
            .finish_non_exhaustive()
    }
}

impl TdBody {
    /// The 584-byte TD 1.0 report body as it appears in a v4 quote.
    pub fn to_bytes(&self) -> Vec<u8> {
        quote::td10_body(self)
    }
}

/// The pieces a simulated PCCS (Intel PCS v4 API) serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PccsResponses {
    /// Body of `TCB_INFO_PATH?fmspc=…`: `{"tcbInfo":{…},"signature":"<hex r‖s>"}`.
    pub tcb_info_body: String,
    /// PEM chain for `TCB_INFO_ISSUER_CHAIN_HEADER`: TCB signing certificate, then root.
    pub tcb_info_issuer_chain: String,
    /// Body of `QE_IDENTITY_PATH`: `{"enclaveIdentity":{…},"signature":"<hex r‖s>"}`.
    pub qe_identity_body: String,
    /// PEM chain for `QE_IDENTITY_ISSUER_CHAIN_HEADER` (the same signer as the TCB info).
    pub qe_identity_issuer_chain: String,
    /// Body of `PCK_CRL_PATH` (DER).
    pub pck_crl_der: Vec<u8>,
    /// PEM chain for `PCK_CRL_ISSUER_CHAIN_HEADER`: PCK Platform CA, then root.
    pub pck_crl_issuer_chain: String,
    /// The root CA CRL (DER); a PCCS's `ROOT_CA_CRL_PATH` serves `hex(root_ca_crl_der)`.
    pub root_ca_crl_der: Vec<u8>,
}

impl PccsResponses {
    /// The root CA CRL as a PCCS's `/rootcacrl` returns it: lowercase hex of the DER.
    pub fn root_ca_crl_hex(&self) -> String {
        hex::encode(&self.root_ca_crl_der)
    }
}

/// An issuer chain as a header value: Intel PCS percent-encodes the PEM (dcap-qvl decodes it).
pub fn header_value(pem_chain: &str) -> String {
    let mut out = String::with_capacity(pem_chain.len().saturating_mul(3));
    for byte in pem_chain.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The test Intel PKI, its collateral and each platform's quoting enclave. Generate once; quotes
/// and collateral are then cheap.
pub struct IntelTestPki {
    root_der: Vec<u8>,
    root_pem: String,
    pck_ca_pem: String,
    tcb_signing_pem: String,
    root_crl_der: Vec<u8>,
    pck_crl_der: Vec<u8>,
    /// `Platform::First` and `Platform::Second`, in that order (see `platform`).
    first: SimPlatform,
    second: SimPlatform,
    qe_identity: SignedJson,
    issued: DateTime<Utc>,
    next_update: DateTime<Utc>,
}

impl fmt::Debug for IntelTestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fmspcs: Vec<String> = self.fmspcs().iter().map(hex::encode).collect();
        f.debug_struct("IntelTestPki")
            .field("fmspcs", &fmspcs)
            .field("issued", &self.issued)
            .field("next_update", &self.next_update)
            .finish_non_exhaustive()
    }
}

impl IntelTestPki {
    /// Generates the PKI, CRLs, collateral and each platform's PCK certificate and QE.
    ///
    /// `crl_base_url`: loopback base URL the simulator serves; the root's CRL distribution point
    /// is `{crl_base_url}/sgx/certification/v4/rootcacrl`. `now`: certificates valid from
    /// now-1day to now+5years; TCB info and QE identity issued at now-1h, nextUpdate now+30 days;
    /// CRLs thisUpdate now-1h nextUpdate now+30d.
    pub fn generate(crl_base_url: &str, now: DateTime<Utc>) -> Result<Self, SimError> {
        let base = crl_base_url.trim_end_matches('/');
        let root_crl_url = format!("{base}{ROOT_CA_CRL_PATH}");
        let pck_crl_url = format!("{base}{PCK_CRL_PATH}");
        let valid_from = now - Duration::days(1);
        let valid_to = now + Duration::days(5 * 365);
        let issued = now - Duration::hours(1);
        let next_update = now + Duration::days(30);
        let ca_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];

        // 1. Root CA: self-signed, path length 1 (PCK Platform CA below it), CRL at the
        //    simulator. Its CRL covers itself, the PCK Platform CA and the TCB signing cert.
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut root_params = cert_params(
            "teewatch TEST Intel SGX Root CA — not Intel",
            IsCa::Ca(BasicConstraints::Constrained(1)),
            ca_usages.clone(),
            &root_crl_url,
            valid_from,
            valid_to,
        )?;
        root_params.use_authority_key_identifier_extension = false;
        let root = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::from_params(&root_params, &root_key);

        // 2. PCK Platform CA ("Platform" in the name is how dcap-qvl tells the CA type).
        let pck_ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let pck_ca_params = cert_params(
            "teewatch TEST Intel SGX PCK Platform CA — not Intel",
            IsCa::Ca(BasicConstraints::Constrained(0)),
            ca_usages,
            &root_crl_url,
            valid_from,
            valid_to,
        )?;
        let pck_ca = pck_ca_params.signed_by(&pck_ca_key, &root_issuer)?;
        let pck_ca_issuer = Issuer::from_params(&pck_ca_params, &pck_ca_key);

        // 3. TCB signing certificate, issued directly by the root as dcap-qvl requires.
        let tcb_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let tcb_params = cert_params(
            "teewatch TEST Intel SGX TCB Signing — not Intel",
            IsCa::ExplicitNoCa,
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            &root_crl_url,
            valid_from,
            valid_to,
        )?;
        let tcb_signing = tcb_params.signed_by(&tcb_key, &root_issuer)?;
        let tcb_signer = raw_signer(&tcb_key)?;

        // 4. CRLs, empty: nothing in the test PKI is revoked.
        let root_crl_der = crl(&root_issuer, issued, next_update)?;
        let pck_crl_der = crl(&pck_ca_issuer, issued, next_update)?;

        // 5. Each platform: its PCK leaf under the one PCK Platform CA, its QE and its TCB info.
        let platform_issuer = PlatformIssuer {
            pck_ca: &pck_ca_issuer,
            ca_chain_pem: [pck_ca.pem(), root.pem()].concat(),
            pck_crl_url: &pck_crl_url,
            tcb_signer: &tcb_signer,
            valid_from,
            valid_to,
            issued,
            next_update,
            now,
        };
        let first = SimPlatform::generate(Platform::First, &platform_issuer)?;
        let second = SimPlatform::generate(Platform::Second, &platform_issuer)?;

        // 6. The QE identity, shared by every platform's QE, signed once like the TCB info.
        let qe_identity = signed_json(
            &tcb_signer,
            collateral::qe_identity(issued, next_update, now)?,
        )?;
        Ok(IntelTestPki {
            root_der: root.der().to_vec(),
            root_pem: root.pem(),
            pck_ca_pem: pck_ca.pem(),
            tcb_signing_pem: tcb_signing.pem(),
            root_crl_der,
            pck_crl_der,
            first,
            second,
            qe_identity,
            issued,
            next_update,
        })
    }

    fn platform(&self, platform: Platform) -> &SimPlatform {
        match platform {
            Platform::First => &self.first,
            Platform::Second => &self.second,
        }
    }

    /// The test root CA certificate (DER), the trust anchor to verify simulated quotes with.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// The first platform's FMSPC, in its PCK certificate and TCB info: 7E5700000000.
    pub fn fmspc(&self) -> [u8; 6] {
        Platform::First.fmspc()
    }

    /// Every simulated platform's FMSPC, `Platform::ALL`'s order: 7E5700000000, 7E5700000001.
    pub fn fmspcs(&self) -> [[u8; 6]; 2] {
        Platform::ALL.map(Platform::fmspc)
    }

    /// The first platform's PCK leaf, PCK Platform CA, root: the chain its quotes embed.
    pub fn pck_chain_pem(&self) -> String {
        self.pck_chain_pem_on(Platform::First)
    }

    /// `platform`'s PCK leaf, PCK Platform CA, root: the chain its quotes embed.
    pub fn pck_chain_pem_on(&self, platform: Platform) -> String {
        self.platform(platform).pck_chain_pem().to_string()
    }

    /// TCB signing certificate, then root: the issuer chain of the TCB info and QE identity.
    pub fn tcb_signing_chain_pem(&self) -> String {
        [self.tcb_signing_pem.as_str(), &self.root_pem].concat()
    }

    /// PCK Platform CA, then root: the issuer chain of the PCK CRL.
    pub fn pck_crl_issuer_chain_pem(&self) -> String {
        [self.pck_ca_pem.as_str(), &self.root_pem].concat()
    }

    /// When the TCB info, QE identity and CRLs were issued (now-1h at generation).
    pub fn issued(&self) -> DateTime<Utc> {
        self.issued
    }

    /// When the TCB info, QE identity and CRLs expire (now+30 days at generation).
    pub fn next_update(&self) -> DateTime<Utc> {
        self.next_update
    }

    /// The first platform's QE attestation public key (x‖y) that signs its quotes.
    pub fn attestation_public_key(&self) -> [u8; 64] {
        self.attestation_public_key_on(Platform::First)
    }

    /// `platform`'s QE attestation public key (x‖y) that signs its quotes.
    pub fn attestation_public_key_on(&self, platform: Platform) -> [u8; 64] {
        self.platform(platform).attestation_public_key()
    }

    /// The first platform's collateral (see `collateral_on`).
    pub fn collateral(&self, status: TcbStatusChoice) -> Result<serde_json::Value, SimError> {
        self.collateral_on(Platform::First, status)
    }

    /// `platform`'s collateral exactly as dcap-qvl's `QuoteCollateralV3` JSON, the platform's TCB
    /// level having `status`. `pck_certificate_chain` is left out: quotes carry their chain.
    pub fn collateral_on(
        &self,
        platform: Platform,
        status: TcbStatusChoice,
    ) -> Result<serde_json::Value, SimError> {
        let tcb = self.platform(platform).tcb_info(status);
        let chain = self.tcb_signing_chain_pem();
        let collateral = dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain_pem(),
            root_ca_crl: self.root_crl_der.clone(),
            pck_crl: self.pck_crl_der.clone(),
            tcb_info_issuer_chain: chain.clone(),
            tcb_info: tcb.json.clone(),
            tcb_info_signature: tcb.signature.to_vec(),
            qe_identity_issuer_chain: chain,
            qe_identity: self.qe_identity.json.clone(),
            qe_identity_signature: self.qe_identity.signature.to_vec(),
            pck_certificate_chain: None,
        };
        Ok(serde_json::to_value(collateral)?)
    }

    /// What the simulator's PCCS serves for the first platform (see `pccs_on`).
    pub fn pccs(&self, status: TcbStatusChoice) -> Result<PccsResponses, SimError> {
        self.pccs_on(Platform::First, status)
    }

    /// What the simulator's PCCS serves, in Intel PCS v4 shapes, for `platform`'s FMSPC and
    /// `status`. Only the TCB info differs between platforms; the CRLs and the QE identity are
    /// shared.
    pub fn pccs_on(
        &self,
        platform: Platform,
        status: TcbStatusChoice,
    ) -> Result<PccsResponses, SimError> {
        let tcb = self.platform(platform).tcb_info(status);
        // Written by hand around the exact signed string: re-serialising a parsed object could
        // reorder or reformat it and break the signature.
        let body = |key: &str, doc: &SignedJson| {
            format!(
                "{{\"{key}\":{},\"signature\":\"{}\"}}",
                doc.json,
                hex::encode(doc.signature)
            )
        };
        Ok(PccsResponses {
            tcb_info_body: body("tcbInfo", tcb),
            tcb_info_issuer_chain: self.tcb_signing_chain_pem(),
            qe_identity_body: body("enclaveIdentity", &self.qe_identity),
            qe_identity_issuer_chain: self.tcb_signing_chain_pem(),
            pck_crl_der: self.pck_crl_der.clone(),
            pck_crl_issuer_chain: self.pck_crl_issuer_chain_pem(),
            root_ca_crl_der: self.root_crl_der.clone(),
        })
    }

    /// A TDX v4 quote of `body` made on the first platform (see `quote_v4_on`).
    pub fn quote_v4(&self, body: &TdBody) -> Result<Vec<u8>, SimError> {
        self.quote_v4_on(Platform::First, body)
    }

    /// A first-platform quote with its ECDSA quote signature corrupted (see
    /// `quote_v4_bad_signature_on`).
    pub fn quote_v4_bad_signature(&self, body: &TdBody) -> Result<Vec<u8>, SimError> {
        self.quote_v4_bad_signature_on(Platform::First, body)
    }

    /// A TDX v4 quote of `body` made on `platform`: signed by that platform's attestation key,
    /// with the QE report certification data (type 6) holding its PCK chain (type 5).
    pub fn quote_v4_on(&self, platform: Platform, body: &TdBody) -> Result<Vec<u8>, SimError> {
        self.platform(platform).quote(body, false)
    }

    /// The same quote as `quote_v4_on` with its ECDSA quote signature corrupted: every other part
    /// still verifies.
    pub fn quote_v4_bad_signature_on(
        &self,
        platform: Platform,
        body: &TdBody,
    ) -> Result<Vec<u8>, SimError> {
        self.platform(platform).quote(body, true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn constants_decode_and_body_has_td10_length() {
        assert_eq!(MRSEAM.first(), Some(&0x7b));
        assert_eq!(QE_MRSIGNER.last(), Some(&0xc5));
        assert_eq!(TdBody::default().to_bytes().len(), quote::TD10_BODY_LEN);
        assert_eq!(quote::header(&[0; 16]).len(), quote::HEADER_LEN);
    }

    #[test]
    fn header_values_are_percent_encoded() {
        assert_eq!(
            header_value("-----BEGIN A+/=\n"),
            "-----BEGIN%20A%2B%2F%3D%0A"
        );
    }
}
