//! `tls_server_config` of the web configuration file (`web.rs`): the certificate, key and
//! client CA it names are read and the rustls server configuration is built here, at load, so
//! that a certificate that does not match its key is a configuration error reported by `teewatch
//! config check`, not a failed handshake later. A file named `$CREDENTIALS_DIRECTORY/NAME` is a
//! systemd credential; outside a unit that loads it, the configuration is kept without a server
//! configuration and the listener refuses to start (see [`WebTls::server_config`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_norway::{Mapping, Value};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::CREDENTIALS_DIRECTORY;
use super::validator::Validator;
use super::web::{CREDENTIAL_PREFIX, kind, known_keys, string};

/// The keys of `tls_server_config` teewatch reads.
pub const TLS_KEYS: [&str; 6] = [
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
];
/// exporter-toolkit settings of `tls_server_config` teewatch does not implement, with what to
/// do instead.
const UNSUPPORTED_TLS_KEYS: [(&str, &str); 7] = [
    (
        "cert",
        "write the certificate to a file and name it in cert_file",
    ),
    ("key", "write the key to a file and name it in key_file"),
    (
        "client_ca",
        "write the CA certificates to a file and name it in client_ca_file",
    ),
    (
        "cipher_suites",
        "rustls's suites apply (TLS 1.3, and TLS 1.2 with ECDHE and AEAD only); remove it",
    ),
    (
        "curve_preferences",
        "rustls's key exchange groups apply (X25519, P-256, P-384); remove it",
    ),
    (
        "prefer_server_cipher_suites",
        "rustls always prefers the server's order; remove it",
    ),
    (
        "client_allowed_sans",
        "any client certificate signed by client_ca_file is accepted; give the clients their own CA",
    ),
];

/// What the listener asks of a client's certificate (`client_auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for (the default).
    NoClientCert,
    /// A certificate is asked for; when one is sent it must be signed by `client_ca_file`.
    VerifyClientCertIfGiven,
    /// Every client must present a certificate signed by `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }
}

/// `tls_server_config`: the rustls server configuration built from it.
#[derive(Clone)]
pub struct WebTls {
    pub client_auth: ClientAuth,
    /// The server configuration, or why it could not be built here (a credential file outside
    /// the systemd unit that loads it).
    server: Result<Arc<ServerConfig>, String>,
    /// SHA-256 over every setting and file read, so that equal configurations compare equal
    /// (rustls's configuration has no equality) and a renewed certificate does not.
    fingerprint: [u8; 32],
}

impl WebTls {
    /// The rustls configuration (TLS 1.2 and 1.3 through ring, HTTP/1.1 as ALPN), or why it is
    /// not available in this process.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, &str> {
        match &self.server {
            Ok(config) => Ok(config.clone()),
            Err(reason) => Err(reason),
        }
    }
}

impl PartialEq for WebTls {
    fn eq(&self, other: &Self) -> bool {
        self.client_auth == other.client_auth
            && self.fingerprint == other.fingerprint
            && self.server.is_ok() == other.server.is_ok()
    }
}

impl Eq for WebTls {}

impl fmt::Debug for WebTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebTls")
            .field("client_auth", &self.client_auth)
            .field("available", &self.server.is_ok())
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish()
    }
}

/// The protocol versions named by `min_version` and `max_version`.
fn versions(
    v: &mut Validator,
    map: &Mapping,
    at: &str,
) -> Option<Vec<&'static SupportedProtocolVersion>> {
    let mut read = |key: &str| -> Result<Option<u8>, ()> {
        let Some(text) = string(v, map, key, at) else {
            return if map.contains_key(key) {
                Err(())
            } else {
                Ok(None)
            };
        };
        match text {
            "TLS12" => Ok(Some(2)),
            "TLS13" => Ok(Some(3)),
            "TLS10" | "TLS11" => {
                v.issue(
                    &format!("{at}.{key}"),
                    format!("{text} is not supported: teewatch speaks TLS12 and TLS13 only"),
                );
                Err(())
            }
            other => {
                v.issue(
                    &format!("{at}.{key}"),
                    format!("expected TLS12 or TLS13, found \"{other}\""),
                );
                Err(())
            }
        }
    };
    let min = read("min_version");
    let max = read("max_version");
    let (Ok(min), Ok(max)) = (min, max) else {
        return None;
    };
    let (min, max) = (min.unwrap_or(2), max.unwrap_or(3));
    if min > max {
        v.issue(
            &format!("{at}.min_version"),
            "min_version is above max_version".into(),
        );
        return None;
    }
    Some(
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(n, _)| (min..=max).contains(n))
            .map(|(_, version)| version)
            .collect(),
    )
}

/// `tls_server_config`, with file names relative to `base`.
pub(super) fn read(
    v: &mut Validator,
    value: &Value,
    at: &str,
    base: &Path,
    credentials: Option<&Path>,
) -> Option<WebTls> {
    let Value::Mapping(map) = value else {
        v.issue(
            at,
            format!(
                "expected a mapping with cert_file and key_file, found {}",
                kind(value)
            ),
        );
        return None;
    };
    let issues_before = v.issues.len();
    known_keys(v, map, at, &TLS_KEYS, &UNSUPPORTED_TLS_KEYS);
    let cert_file = string(v, map, "cert_file", at);
    let key_file = string(v, map, "key_file", at);
    for (key, given) in [("cert_file", cert_file), ("key_file", key_file)] {
        if given.is_none() && !map.contains_key(key) {
            v.issue(
                &format!("{at}.{key}"),
                "required: TLS needs both cert_file and key_file".into(),
            );
        }
    }
    let client_ca_file = string(v, map, "client_ca_file", at);
    let client_auth = match string(v, map, "client_auth_type", at) {
        None | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(name @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            v.issue(
                &format!("{at}.client_auth_type"),
                format!(
                    "{name} accepts client certificates nobody verified, which proves nothing; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"
                ),
            );
            ClientAuth::NoClientCert
        }
        Some(other) => {
            v.issue(
                &format!("{at}.client_auth_type"),
                format!(
                    "expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert, found \"{other}\""
                ),
            );
            ClientAuth::NoClientCert
        }
    };
    match (client_auth, client_ca_file) {
        (ClientAuth::NoClientCert, Some(_)) if !map.contains_key("client_auth_type") => v.issue(
            &format!("{at}.client_ca_file"),
            "client certificates are not asked for: add client_auth_type: RequireAndVerifyClientCert (exporter-toolkit refuses a client CA without a client auth policy too)".into(),
        ),
        (ClientAuth::NoClientCert, Some(_)) => v.issue(
            &format!("{at}.client_ca_file"),
            "client_auth_type NoClientCert asks for no client certificate: remove client_ca_file, or set client_auth_type: RequireAndVerifyClientCert".into(),
        ),
        (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert, None)
            if !map.contains_key("client_ca_file") =>
        {
            v.issue(
                &format!("{at}.client_ca_file"),
                format!(
                    "required by client_auth_type {}: the CA certificates client certificates are verified against",
                    client_auth.name()
                ),
            )
        }
        _ => {}
    }
    let versions = versions(v, map, at);

    // The files: every one that can be read is read and checked, even when a setting above was
    // wrong, so that one run reports them all.
    let mut hasher = Sha256::new();
    hasher.update(client_auth.name());
    let mut pending = Vec::new();
    let mut read_one = |v: &mut Validator, key: &str, name: Option<&str>| -> Option<Vec<u8>> {
        let name = name?;
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key);
        match read_file(name, base, credentials) {
            Ok(bytes) => {
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(&bytes);
                Some(bytes)
            }
            Err(FileError::Pending) => {
                hasher.update(name);
                pending.push(key.to_string());
                None
            }
            Err(FileError::Unreadable(message)) => {
                v.issue(&format!("{at}.{key}"), message);
                None
            }
        }
    };
    let cert = read_one(v, "cert_file", cert_file);
    let key = read_one(v, "key_file", key_file);
    let ca = read_one(v, "client_ca_file", client_ca_file);
    if let Some(versions) = &versions {
        for version in versions {
            hasher.update(format!("{:?}", version.version));
        }
    }
    let fingerprint: [u8; 32] = hasher.finalize().into();

    let cert = cert.and_then(|bytes| certificates(v, &bytes, &format!("{at}.cert_file")));
    let key = key.and_then(|bytes| match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Some(key),
        Err(e) => {
            v.issue(
                &format!("{at}.key_file"),
                format!("expected a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            );
            None
        }
    });
    let ca = ca.and_then(|bytes| certificates(v, &bytes, &format!("{at}.client_ca_file")));
    if v.issues.len() > issues_before {
        return None;
    }
    if !pending.is_empty() {
        return Some(WebTls {
            client_auth,
            server: Err(format!(
                "{at}: {} {} read from ${CREDENTIALS_DIRECTORY}, which is not set: run under systemd with LoadCredential= (docs/systemd.md)",
                pending.join(" and "),
                if pending.len() == 1 { "is" } else { "are" },
            )),
            fingerprint,
        });
    }
    let (Some(cert), Some(key), Some(versions)) = (cert, key, versions) else {
        return None;
    };
    match server_config(cert, key, ca, client_auth, &versions) {
        Ok(config) => Some(WebTls {
            client_auth,
            server: Ok(config),
            fingerprint,
        }),
        Err((key, message)) => {
            v.issue(&format!("{at}.{key}"), message);
            None
        }
    }
}

/// Why a file named in the web configuration was not read.
enum FileError {
    /// A `$CREDENTIALS_DIRECTORY/` file outside a unit that loads credentials.
    Pending,
    Unreadable(String),
}

/// Reads a file of the web configuration: relative to its folder, or from the systemd
/// credentials folder for a `$CREDENTIALS_DIRECTORY/NAME`.
fn read_file(name: &str, base: &Path, credentials: Option<&Path>) -> Result<Vec<u8>, FileError> {
    let path = match name.strip_prefix(CREDENTIAL_PREFIX) {
        Some(credential) => {
            if credential.is_empty() || credential.contains('/') {
                return Err(FileError::Unreadable(format!(
                    "expected {CREDENTIAL_PREFIX}NAME with one credential name, found \"{name}\""
                )));
            }
            credentials.ok_or(FileError::Pending)?.join(credential)
        }
        None => base.join(name),
    };
    std::fs::read(&path)
        .map_err(|e| FileError::Unreadable(format!("cannot read {}: {e}", path.display())))
}

/// Every PEM certificate of a file, at least one.
fn certificates(v: &mut Validator, bytes: &[u8], at: &str) -> Option<Vec<CertificateDer<'static>>> {
    match CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Some(certs),
        Ok(_) => {
            v.issue(at, "expected PEM certificates, found none".into());
            None
        }
        Err(e) => {
            v.issue(at, format!("expected PEM certificates: {e}"));
            None
        }
    }
}

/// The rustls server configuration; an error names the key it is about.
fn server_config(
    cert: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: Option<Vec<CertificateDer<'static>>>,
    client_auth: ClientAuth,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ServerConfig>, (&'static str, String)> {
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let builder = match (client_auth, ca) {
        (ClientAuth::NoClientCert, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in ca {
                roots.add(cert).map_err(|e| {
                    (
                        "client_ca_file",
                        format!("not a usable CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::VerifyClientCertIfGiven => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| ("client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(cert, key).map_err(|e| {
        (
            "key_file",
            format!("the key does not go with cert_file's certificate, or is not usable: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
