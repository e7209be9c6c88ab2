//! Where a target's API key is read from: an environment variable, a file, or a systemd
//! credential. The configuration only ever names the place; the key is read when it is used, and
//! neither errors nor `Debug` output ever contain it.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable systemd sets to the folder holding a unit's `LoadCredential=` files.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Where an API key is read from (the place, never the key).
#[derive(Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `api_key_env`: the name of an environment variable.
    Env(String),
    /// `api_key_file`: a file holding only the key, resolved against the configuration's folder.
    File(PathBuf),
    /// `api_key_credential`: a systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

/// Why an API key could not be read. No variant carries the key or any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("environment variable {0} is not set")]
    EnvNotSet(String),
    #[error("environment variable {0} is not valid unicode")]
    EnvNotUnicode(String),
    #[error("cannot read api key file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "api_key_credential \"{0}\" needs ${CREDENTIALS_DIRECTORY}, which is not set: run under systemd with LoadCredential={0}:/path/to/key"
    )]
    NoCredentialsDirectory(String),
    #[error("cannot read systemd credential \"{name}\" from {path}: {reason}")]
    Credential {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("the api key from {0} is not valid utf-8")]
    NotUtf8(String),
    #[error("the api key from {0} is empty")]
    Empty(String),
    #[error("the api key from {0} contains whitespace or control characters inside it")]
    BadCharacters(String),
}

impl fmt::Debug for ApiKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The variants hold only places; written out by hand so that this stays true.
        match self {
            ApiKeySource::Env(name) => write!(f, "Env({name:?})"),
            ApiKeySource::File(path) => write!(f, "File({path:?})"),
            ApiKeySource::Credential(name) => write!(f, "Credential({name:?})"),
        }
    }
}

impl fmt::Display for ApiKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiKeySource::Env(name) => write!(f, "environment variable {name}"),
            ApiKeySource::File(path) => write!(f, "file {}", path.display()),
            ApiKeySource::Credential(name) => write!(f, "systemd credential \"{name}\""),
        }
    }
}

impl ApiKeySource {
    /// Reads the key now, from the process environment and files.
    pub fn resolve(&self) -> Result<String, ApiKeyError> {
        self.resolve_with(&|name| std::env::var_os(name))
    }

    /// Reads the key with `env` standing for the process environment (for tests and embedders).
    /// Surrounding whitespace is removed; an empty key or one with whitespace inside is an error.
    pub fn resolve_with(
        &self,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<String, ApiKeyError> {
        let raw = match self {
            ApiKeySource::Env(name) => env(name)
                .ok_or_else(|| ApiKeyError::EnvNotSet(name.clone()))?
                .into_string()
                .map_err(|_| ApiKeyError::EnvNotUnicode(name.clone()))?
                .into_bytes(),
            ApiKeySource::File(path) => std::fs::read(path).map_err(|e| ApiKeyError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            ApiKeySource::Credential(name) => {
                let dir = env(CREDENTIALS_DIRECTORY)
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| ApiKeyError::NoCredentialsDirectory(name.clone()))?;
                let path = Path::new(&dir).join(name);
                std::fs::read(&path).map_err(|e| ApiKeyError::Credential {
                    name: name.clone(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
        };
        // The bytes are dropped without being shown: a decoding error would quote them.
        let text = String::from_utf8(raw).map_err(|_| ApiKeyError::NotUtf8(self.to_string()))?;
        let key = text.trim();
        if key.is_empty() {
            return Err(ApiKeyError::Empty(self.to_string()));
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiKeyError::BadCharacters(self.to_string()));
        }
        Ok(key.to_string())
    }
}

impl ApiKeySource {
    /// A warning when the key is in a file that users other than its owner can access (any of
    /// the group and other permission bits), as ssh warns about a private key; `None` for a
    /// private file, for keys that are not in a file of the configuration (a systemd credential
    /// is systemd's own private copy), and when the file cannot be inspected (reading the key
    /// reports that).
    pub fn permission_warning(&self) -> Option<String> {
        let ApiKeySource::File(path) = self else {
            return None;
        };
        loose_mode(path).map(|mode| {
            format!(
                "api key file {path} is accessible by group or others: expected mode 0600 or \
                 stricter, found {mode:04o} (run chmod 600 {path})",
                path = path.display()
            )
        })
    }
}

/// The permission bits of a file that its group or others can access, `None` for a private one.
#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_path: &Path) -> Option<u32> {
    None
}

/// Whether `name` can be an environment variable name: letters, digits and `_`, not starting
/// with a digit.
pub(super) fn is_env_name(name: &str) -> bool {
    !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` can be a systemd credential name: one path component.
pub(super) fn is_credential_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_others_can_access_is_warned_about_and_a_private_one_is_not() {
        let dir = std::env::temp_dir().join(format!("teewatch-key-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "sk-test\n").unwrap();
        let source = ApiKeySource::File(path.clone());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(source.permission_warning(), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let warning = source.permission_warning().unwrap();
        assert!(
            warning.contains("expected mode 0600 or stricter, found 0640")
                && warning.contains(&format!("chmod 600 {}", path.display())),
            "{warning}"
        );
        assert!(!warning.contains("sk-test"), "{warning}");
        // The key itself is still read: the warning does not stop the check.
        assert_eq!(source.resolve().unwrap(), "sk-test");
        // A missing file is the read's error to report, not a permission warning.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(source.permission_warning(), None);
        assert_eq!(ApiKeySource::Env("X".into()).permission_warning(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
