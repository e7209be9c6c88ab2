//! The simulated TDX hosts: each platform has its own PCK certificate (under the one test PCK
//! Platform CA), FMSPC, quoting enclave and signed TCB info.
//!
//! A real NEAR AI gateway and the models behind it can run on different machine types, so their
//! quotes carry different FMSPCs and each must be verified with its own platform's collateral. The
//! simulator has two platforms to show that: `Platform::First` (FMSPC 7E5700000000), where the
//! model nodes and dstack TDs run (with the NEAR compose managers inside those nodes' TDs), and
//! `Platform::Second` (FMSPC 7E5700000001), where the NEAR gateway runs. Both FMSPCs start with
//! "7E57" (TEST), a prefix no Intel platform has. The platforms share their TCB components (CPUSVN,
//! PCESVN, TDX module); only the FMSPC, the PCK key, the PPID and the QE's attestation key differ,
//! as between two hosts whose only other difference is their model.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use chrono::{DateTime, Utc};
use rcgen::{CustomExtension, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256};

use super::certs::{SignedJson, cert_params, raw_signer, sign_raw, signed_json};
use super::{
    CPU_SVN, PCE_ID, PCE_SVN, SGX_TYPE, SimError, TcbStatusChoice, TdBody, collateral, der, quote,
};

/// The first platform's FMSPC: "7E57" (TEST) and zeros.
const FMSPC_FIRST: [u8; 6] = [0x7e, 0x57, 0x00, 0x00, 0x00, 0x00];
/// The second platform's FMSPC: the same TEST prefix, ending in one.
const FMSPC_SECOND: [u8; 6] = [0x7e, 0x57, 0x00, 0x00, 0x00, 0x01];

/// One of the simulated TDX hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// FMSPC 7E5700000000: model nodes and dstack TDs (and the compose managers inside NEAR
    /// model nodes) run here.
    First,
    /// FMSPC 7E5700000001: the NEAR gateway runs here.
    Second,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::First, Platform::Second];

    /// The FMSPC in this platform's PCK certificate and TCB info.
    pub fn fmspc(self) -> [u8; 6] {
        match self {
            Platform::First => FMSPC_FIRST,
            Platform::Second => FMSPC_SECOND,
        }
    }

    /// The platform whose FMSPC is `fmspc`, if it is one of the simulated ones.
    pub fn from_fmspc(fmspc: &[u8; 6]) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.fmspc() == *fmspc)
    }

    /// The platform named by twelve hex digits in either case, as a PCCS query carries it.
    pub fn from_fmspc_hex(text: &str) -> Option<Platform> {
        let bytes = hex::decode(text).ok()?;
        let fmspc = <[u8; 6]>::try_from(bytes).ok()?;
        Platform::from_fmspc(&fmspc)
    }
}

/// What the platforms take from the rest of the PKI: the PCK Platform CA that issues their PCK
/// certificates, the TCB signer of their TCB info, and the dates.
pub(super) struct PlatformIssuer<'a> {
    pub pck_ca: &'a Issuer<'a, &'a KeyPair>,
    /// PCK Platform CA, then root (PEM), which every PCK chain ends with.
    pub ca_chain_pem: String,
    pub pck_crl_url: &'a str,
    pub tcb_signer: &'a EcdsaKeyPair,
    pub valid_from: DateTime<Utc>,
    pub valid_to: DateTime<Utc>,
    pub issued: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// One platform's keys and documents: the PCK chain its quotes embed, its QE and its TCB info
/// for each status.
pub(super) struct SimPlatform {
    pck_chain_pem: String,
    /// The QE's attestation key, which signs every quote made on the platform.
    attestation_key: EcdsaKeyPair,
    attestation_public: [u8; 64],
    /// Certification data type 6 (QE report, its PCK signature, auth data, PCK chain): the same
    /// for every quote, as with a real QE whose attestation key does not change.
    qe_certification: Vec<u8>,
    qe_id: [u8; 16],
    tcb_up_to_date: SignedJson,
    tcb_out_of_date: SignedJson,
    tcb_revoked: SignedJson,
}

impl SimPlatform {
    /// Issues the platform's PCK certificate, makes its QE and signs its TCB info.
    pub(super) fn generate(
        platform: Platform,
        issuer: &PlatformIssuer<'_>,
    ) -> Result<SimPlatform, SimError> {
        let fmspc = platform.fmspc();

        // The PCK leaf with the SGX extension describing the platform.
        let description = der::PckPlatform {
            ppid: rand::random(),
            cpu_svn: CPU_SVN,
            pce_svn: PCE_SVN,
            pce_id: PCE_ID,
            fmspc,
            sgx_type: SGX_TYPE,
            platform_instance_id: rand::random(),
        };
        let pck_leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut pck_leaf_params = cert_params(
            &format!(
                "teewatch TEST Intel SGX PCK Certificate {} — not Intel",
                hex::encode_upper(fmspc)
            ),
            IsCa::ExplicitNoCa,
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            issuer.pck_crl_url,
            issuer.valid_from,
            issuer.valid_to,
        )?;
        pck_leaf_params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &der::SGX_EXTENSION,
                der::sgx_extension(&description)?,
            ));
        let pck_leaf = pck_leaf_params.signed_by(&pck_leaf_key, issuer.pck_ca)?;
        let pck_chain_pem = [pck_leaf.pem().as_str(), &issuer.ca_chain_pem].concat();

        // The QE: an attestation key, and its report signed by the PCK key, binding the key.
        let attestation_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| SimError::Crypto("key generation"))?;
        let attestation_public: [u8; 64] = attestation_key
            .public_key()
            .as_ref()
            .get(1..)
            .and_then(|xy| <[u8; 64]>::try_from(xy).ok())
            .ok_or(SimError::Crypto("attestation public key encoding"))?;
        let qe_report = quote::qe_report(&attestation_public);
        let qe_report_signature = sign_raw(&raw_signer(&pck_leaf_key)?, &qe_report)?;
        let qe_certification =
            quote::qe_certification_data(&qe_report, &qe_report_signature, &pck_chain_pem)?;

        // The TCB info for each status, signed once so that the collateral and the PCCS hand
        // out the same bytes.
        let tcb_for = |status| -> Result<SignedJson, SimError> {
            signed_json(
                issuer.tcb_signer,
                collateral::tcb_info(
                    &fmspc,
                    status,
                    issuer.issued,
                    issuer.next_update,
                    issuer.now,
                )?,
            )
        };
        Ok(SimPlatform {
            pck_chain_pem,
            attestation_key,
            attestation_public,
            qe_certification,
            qe_id: rand::random(),
            tcb_up_to_date: tcb_for(TcbStatusChoice::UpToDate)?,
            tcb_out_of_date: tcb_for(TcbStatusChoice::OutOfDate)?,
            tcb_revoked: tcb_for(TcbStatusChoice::Revoked)?,
        })
    }

    /// PCK leaf, PCK Platform CA, root: the chain every quote of the platform embeds.
    pub(super) fn pck_chain_pem(&self) -> &str {
        &self.pck_chain_pem
    }

    /// The QE attestation public key (x‖y) that signs the platform's quotes.
    pub(super) fn attestation_public_key(&self) -> [u8; 64] {
        self.attestation_public
    }

    /// The platform's signed TCB info, its level having `status`.
    pub(super) fn tcb_info(&self, status: TcbStatusChoice) -> &SignedJson {
        match status {
            TcbStatusChoice::UpToDate => &self.tcb_up_to_date,
            TcbStatusChoice::OutOfDate => &self.tcb_out_of_date,
            TcbStatusChoice::Revoked => &self.tcb_revoked,
        }
    }

    /// A TDX v4 quote of `body` from the platform's QE; with `corrupt` its ECDSA quote signature
    /// is wrong while every other part still verifies.
    pub(super) fn quote(&self, body: &TdBody, corrupt: bool) -> Result<Vec<u8>, SimError> {
        let mut signed = quote::header(&self.qe_id);
        signed.extend_from_slice(&quote::td10_body(body));
        let mut signature = sign_raw(&self.attestation_key, &signed)?;
        if corrupt {
            // Flip a bit of s: still a well-formed 64-byte signature, but not of these bytes.
            if let Some(last) = signature.last_mut() {
                *last ^= 0x01;
            }
        }
        quote::assemble(
            &signed,
            &signature,
            &self.attestation_public,
            &self.qe_certification,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use dcap_qvl::QuoteCollateralV3;
    use dcap_qvl::verify::QuoteVerifier;
    use serde_json::Value;

    use super::super::IntelTestPki;
    use super::*;

    fn collateral_on(
        pki: &IntelTestPki,
        platform: Platform,
        status: TcbStatusChoice,
    ) -> QuoteCollateralV3 {
        serde_json::from_value(pki.collateral_on(platform, status).unwrap()).unwrap()
    }

    fn secs(t: DateTime<Utc>) -> u64 {
        u64::try_from(t.timestamp()).unwrap()
    }

    fn quote_fmspc(quote: &[u8]) -> [u8; 6] {
        let parsed = dcap_qvl::quote::Quote::parse(quote).unwrap();
        dcap_qvl::intel::quote_fmspc(&parsed).unwrap()
    }

    #[test]
    fn each_platforms_quote_verifies_only_with_its_own_collateral() {
        let now = Utc::now();
        let pki = IntelTestPki::generate("http://127.0.0.1:9/", now).unwrap();
        let verifier = QuoteVerifier::new(pki.root_der().to_vec());
        assert_eq!(
            pki.fmspcs(),
            [[0x7e, 0x57, 0, 0, 0, 0], [0x7e, 0x57, 0, 0, 0, 1]]
        );
        assert_eq!(pki.fmspc(), Platform::First.fmspc());
        for (platform, other) in [
            (Platform::Second, Platform::First),
            (Platform::First, Platform::Second),
        ] {
            let quote = pki.quote_v4_on(platform, &TdBody::default()).unwrap();
            assert_eq!(quote_fmspc(&quote), platform.fmspc());

            let own = collateral_on(&pki, platform, TcbStatusChoice::UpToDate);
            let report = verifier.verify(&quote, &own, secs(now)).unwrap();
            assert_eq!(report.status, "UpToDate");
            let outdated = collateral_on(&pki, platform, TcbStatusChoice::OutOfDate);
            let report = verifier.verify(&quote, &outdated, secs(now)).unwrap();
            assert_eq!(report.status, "OutOfDate");

            // The other platform's TCB info is signed by the same TCB signer and matches the
            // same SVNs; only its FMSPC differs, and dcap-qvl refuses it for that.
            let foreign = collateral_on(&pki, other, TcbStatusChoice::UpToDate);
            let error = verifier.verify(&quote, &foreign, secs(now)).unwrap_err();
            assert!(format!("{error:#}").contains("Fmspc mismatch"), "{error:#}");

            let bad = pki
                .quote_v4_bad_signature_on(platform, &TdBody::default())
                .unwrap();
            assert_eq!(quote_fmspc(&bad), platform.fmspc());
            assert!(verifier.verify(&bad, &own, secs(now)).is_err());
        }
        // The first platform's quotes are what `quote_v4` has always made.
        let first = pki.quote_v4(&TdBody::default()).unwrap();
        assert_eq!(quote_fmspc(&first), Platform::First.fmspc());
    }

    #[test]
    fn platforms_share_the_pck_ca_but_not_their_keys() {
        let pki = IntelTestPki::generate("http://127.0.0.1:9/", Utc::now()).unwrap();
        let [first, second] = Platform::ALL.map(|p| pki.pck_chain_pem_on(p));
        assert_ne!(first, second);
        assert_eq!(first, pki.pck_chain_pem());
        for chain in [&first, &second] {
            assert!(chain.ends_with(&pki.pck_crl_issuer_chain_pem()));
        }
        let second_ext =
            dcap_qvl::intel::parse_pck_extension_from_pem(second.as_bytes()).expect("extension");
        assert_eq!(second_ext.fmspc, Platform::Second.fmspc());
        assert_ne!(
            pki.attestation_public_key_on(Platform::First),
            pki.attestation_public_key_on(Platform::Second)
        );
        assert_eq!(
            pki.attestation_public_key(),
            pki.attestation_public_key_on(Platform::First)
        );

        // The TCB info served for each platform names that platform's FMSPC; the rest of the
        // PCCS answers are shared.
        for status in TcbStatusChoice::ALL {
            let [a, b] = Platform::ALL.map(|p| pki.pccs_on(p, status).unwrap());
            for (platform, answers) in [(Platform::First, &a), (Platform::Second, &b)] {
                let tcb: Value = serde_json::from_str(&answers.tcb_info_body).unwrap();
                assert_eq!(
                    tcb.pointer("/tcbInfo/fmspc").and_then(Value::as_str),
                    Some(hex::encode_upper(platform.fmspc()).as_str())
                );
            }
            assert_eq!(a.qe_identity_body, b.qe_identity_body);
            assert_eq!(a.pck_crl_der, b.pck_crl_der);
            assert_eq!(a.root_ca_crl_der, b.root_ca_crl_der);
            assert_eq!(a, pki.pccs(status).unwrap());
        }
    }

    #[test]
    fn fmspcs_keep_the_test_prefix_and_parse_back() {
        for platform in Platform::ALL {
            let fmspc = platform.fmspc();
            assert_eq!(fmspc.get(..2), Some(&[0x7e, 0x57][..]));
            assert_eq!(Platform::from_fmspc(&fmspc), Some(platform));
            assert_eq!(
                Platform::from_fmspc_hex(&hex::encode_upper(fmspc)),
                Some(platform)
            );
            assert_eq!(
                Platform::from_fmspc_hex(&hex::encode(fmspc)),
                Some(platform)
            );
        }
        assert_eq!(hex::encode_upper(Platform::Second.fmspc()), "7E5700000001");
        for other in ["7E5700000002", "B0C06F000000", "7E57", "", "7E570000000G"] {
            assert_eq!(Platform::from_fmspc_hex(other), None, "{other}");
        }
    }
}
