//! Container image references in an attested compose: which images the application runs, and
//! whether each is named by digest (`repo@sha256:…`, immutable) or only by tag (`repo:tag`,
//! whatever the registry serves today).
//!
//! The images come from the dstack `app_compose` (the JSON whose SHA-256 the compose-hash event
//! binds): its `docker_compose_file` member is the compose YAML, read here line by line for its
//! `image:` entries. Only a compose bound to the quote proves anything; the caller decides that.

use serde_json::Value;

/// One `image:` entry of a compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The reference as written (quotes removed).
    pub reference: String,
    /// The repository, without tag or digest (`ghcr.io/org/image`).
    pub repository: String,
    /// `sha256:<64 lowercase hex>` when the reference is pinned by digest.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses an image reference: `repo[:tag]@sha256:<hex>` is pinned, `repo[:tag]` is not.
    /// A digest part that is not `sha256:` and 64 hex digits is an error, never "unpinned".
    pub fn parse(reference: &str) -> Result<ImageRef, String> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err("expected an image reference, found an empty string".into());
        }
        if reference.chars().any(char::is_whitespace) {
            return Err(format!(
                "expected an image reference without spaces, found \"{reference}\""
            ));
        }
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => {
                let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
                    format!("image {reference}: expected a sha256: digest, found \"{digest}\"")
                })?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "image {reference}: expected sha256: and 64 hex digits, found \"{digest}\""
                    ));
                }
                (name, Some(format!("sha256:{}", hex.to_ascii_lowercase())))
            }
            None => (reference, None),
        };
        Ok(ImageRef {
            reference: reference.to_string(),
            repository: strip_tag(name).to_string(),
            digest,
        })
    }
}

/// `repo:tag` → `repo`; a colon before the last `/` is a registry port, not a tag.
fn strip_tag(name: &str) -> &str {
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name.get(last_slash..).and_then(|tail| tail.rfind(':')) {
        Some(colon) => name.get(..last_slash + colon).unwrap_or(name),
        None => name,
    }
}

/// The `image:` values of an app compose (the dstack `app_compose` JSON text), in file order,
/// each once.
pub fn app_compose_images(app_compose: &str) -> Result<Vec<String>, String> {
    let value: Value = serde_json::from_str(app_compose)
        .map_err(|e| format!("app_compose: expected json, found invalid json ({e})"))?;
    let Some(compose) = value.get("docker_compose_file") else {
        return Err("app_compose: expected a `docker_compose_file` member, found none".into());
    };
    let Some(yaml) = compose.as_str() else {
        return Err(format!(
            "app_compose `docker_compose_file`: expected a string, found {}",
            super::bundle::json_kind(compose)
        ));
    };
    Ok(compose_images(yaml))
}

/// The `image:` values of a compose YAML, in file order, each once. A line-level read: compose
/// files name images only as `image: <reference>` under a service (quoted or not, with an
/// optional trailing comment), which is all that is looked for.
pub fn compose_images(yaml: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in yaml.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        let Some(rest) = line.strip_prefix("image:") else {
            continue;
        };
        // A comment starts at " #" outside quotes; image references never contain '#'.
        let value = rest.split(" #").next().unwrap_or_default().trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        if !value.is_empty() && !out.iter().any(|seen| seen == value) {
            out.push(value.to_string());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_digest_reference_is_pinned_and_a_tag_is_not() {
        let pinned = ImageRef::parse(&format!("ghcr.io/org/app:v1@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.repository, "ghcr.io/org/app");
        assert_eq!(
            pinned.digest.as_deref(),
            Some(format!("sha256:{HEX}").as_str())
        );
        let tagged = ImageRef::parse("localhost:5000/org/app:latest").unwrap();
        assert_eq!(tagged.repository, "localhost:5000/org/app");
        assert_eq!(tagged.digest, None);
        let bare = ImageRef::parse("nginx").unwrap();
        assert_eq!(bare.repository, "nginx");
    }

    #[test]
    fn a_malformed_digest_is_an_error() {
        let short = ImageRef::parse("ghcr.io/org/app@sha256:abc").unwrap_err();
        assert!(short.contains("64 hex digits"), "{short}");
        let other = ImageRef::parse(&format!("ghcr.io/org/app@sha512:{HEX}")).unwrap_err();
        assert!(other.contains("expected a sha256: digest"), "{other}");
    }

    #[test]
    fn compose_images_are_read_in_order_once_without_quotes_or_comments() {
        let yaml = format!(
            "services:\n  a:\n    image: \"ghcr.io/o/a@sha256:{HEX}\"\n  b:\n    image: 'o/b:1' # pinned later\n  c:\n    image: ghcr.io/o/a@sha256:{HEX}\n"
        );
        assert_eq!(
            compose_images(&yaml),
            vec![format!("ghcr.io/o/a@sha256:{HEX}"), "o/b:1".to_string()]
        );
    }

    #[test]
    fn an_app_compose_without_a_compose_file_is_an_error() {
        let e = app_compose_images("{\"runner\":\"docker-compose\"}").unwrap_err();
        assert!(e.contains("docker_compose_file"), "{e}");
        let e = app_compose_images("{\"docker_compose_file\":3}").unwrap_err();
        assert!(e.contains("expected a string, found a number"), "{e}");
    }
}
