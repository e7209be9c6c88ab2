//! What a target's provider speaks: its profile (default base URL and API paths), the
//! `[target.paths]` overrides, and the `[target.canary]` completion that proves the signing key.

use toml::{Table, Value};

use super::describe;
use super::validator::{Reported, Validator};

pub(super) const PATHS_KEYS: [&str; 3] = ["attestation", "signature", "chat"];
pub(super) const CANARY_KEYS: [&str; 6] = [
    "every",
    "prompt",
    "max_tokens",
    "stream",
    "non_stream",
    "signature_wait_seconds",
];

/// How long a chat's signature is waited for when `signature_wait_seconds` is not given: proxies
/// may answer "not found" for a moment after the reply ends.
pub const DEFAULT_SIGNATURE_WAIT_SECONDS: u64 = 10;

/// The placeholder for the chat completion's id in the signature path.
pub const ID_PLACEHOLDER: &str = "{id}";
pub const DEFAULT_CANARY_PROMPT: &str = "Reply with the single word: ok.";
pub const DEFAULT_CANARY_MAX_TOKENS: u32 = 16;

/// The API dialect a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// NanoGPT's TEE API (`https://nano-gpt.com`, `/api/v1/tee/...`).
    Nanogpt,
    /// A vllm-proxy (Phala / RedPill style) deployment; no default base URL.
    VllmProxy,
    /// NEAR AI cloud (`https://cloud-api.near.ai`): the gateway format, or a NEAR inference
    /// proxy reached directly; ed25519 keys by default.
    Near,
}

impl Profile {
    /// The names written in `profile`.
    pub const NAMES: [&str; 3] = ["nanogpt", "vllm-proxy", "near"];

    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "nanogpt" => Some(Profile::Nanogpt),
            "vllm-proxy" => Some(Profile::VllmProxy),
            "near" => Some(Profile::Near),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Nanogpt => "nanogpt",
            Profile::VllmProxy => "vllm-proxy",
            Profile::Near => "near",
        }
    }

    /// The signing algorithm asked for when a target names none. NEAR AI's own default is
    /// ed25519; vllm-proxy and NanoGPT default to ECDSA.
    pub fn default_signing_algo(self) -> super::target::SigningAlgo {
        match self {
            Profile::Near => super::target::SigningAlgo::Ed25519,
            Profile::Nanogpt | Profile::VllmProxy => super::target::SigningAlgo::Ecdsa,
        }
    }

    /// Whether teewatch's TLS connection ends at the attested service itself, so that the
    /// peer's key can be compared with the attested TLS fingerprint. NanoGPT proxies the
    /// request: its certificate is NanoGPT's, never the TD's.
    pub fn connects_directly(self) -> bool {
        !matches!(self, Profile::Nanogpt)
    }

    /// The base URL used when a target names none.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Profile::Nanogpt => Some("https://nano-gpt.com"),
            Profile::VllmProxy => None,
            Profile::Near => Some("https://cloud-api.near.ai"),
        }
    }

    /// The profile's API paths.
    pub fn default_paths(self) -> ProviderPaths {
        let (attestation, signature, chat) = match self {
            Profile::Nanogpt => (
                "/api/v1/tee/attestation",
                "/api/v1/tee/signature/{id}",
                "/api/v1/chat/completions",
            ),
            Profile::VllmProxy | Profile::Near => (
                "/v1/attestation/report",
                "/v1/signature/{id}",
                "/v1/chat/completions",
            ),
        };
        ProviderPaths {
            attestation: attestation.into(),
            signature: signature.into(),
            chat: chat.into(),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's API paths, appended to the base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPaths {
    /// The attestation report (queried with `model` and `nonce`).
    pub attestation: String,
    /// A completion's signature; contains `{id}`.
    pub signature: String,
    /// Chat completions.
    pub chat: String,
}

impl ProviderPaths {
    /// The signature path for one chat completion id.
    pub fn signature_for(&self, id: &str) -> String {
        self.signature.replace(ID_PLACEHOLDER, id)
    }
}

/// `[target.canary]`: the completion whose signature proves the attested key signs responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    pub prompt: String,
    /// 1 to 4096.
    pub max_tokens: u32,
    /// Send a streaming completion.
    pub stream: bool,
    /// Send a non-streaming completion.
    pub non_stream: bool,
    /// How long the signature is retried for (1 to 120 seconds, default 10).
    pub signature_wait: std::time::Duration,
    /// The chats run on every `every`-th check of the target (1 to 10000, default 1: every
    /// check); the attestation and its binding are checked every time.
    pub every: u32,
}

/// The largest `[target.canary] every`: beyond it a target's chats would be weeks apart.
pub const MAX_CANARY_EVERY: i64 = 10_000;

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            prompt: DEFAULT_CANARY_PROMPT.into(),
            max_tokens: DEFAULT_CANARY_MAX_TOKENS,
            stream: true,
            non_stream: true,
            signature_wait: std::time::Duration::from_secs(DEFAULT_SIGNATURE_WAIT_SECONDS),
            every: 1,
        }
    }
}

/// Paths written in `[target.paths]`, laid over a profile's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PathOverrides {
    attestation: Option<String>,
    signature: Option<String>,
    chat: Option<String>,
}

impl PathOverrides {
    pub(super) fn over(self, defaults: ProviderPaths) -> ProviderPaths {
        ProviderPaths {
            attestation: self.attestation.unwrap_or(defaults.attestation),
            signature: self.signature.unwrap_or(defaults.signature),
            chat: self.chat.unwrap_or(defaults.chat),
        }
    }
}

/// Reads `[target.paths]`.
pub(super) fn path_overrides(
    v: &mut Validator,
    t: &Table,
    path: &str,
) -> Result<PathOverrides, Reported> {
    let at = format!("{path}.paths");
    if !t.contains_key("paths") {
        return Ok(PathOverrides::default());
    }
    let Some(table) = v.table(t, "paths", &at) else {
        return Err(Reported);
    };
    let before = v.issues.len();
    v.known_keys(&at, table, &PATHS_KEYS);
    let mut read = |key: &str, example: &str| -> Option<String> {
        let value = table.get(key)?;
        let key_path = format!("{at}.{key}");
        let needs_id = key == "signature";
        match value {
            Value::String(p)
                if p.starts_with('/')
                    && !p.contains(['?', '#'])
                    && !p.chars().any(|c| c.is_whitespace() || c.is_control())
                    && (!needs_id || p.contains(ID_PLACEHOLDER)) =>
            {
                Some(p.clone())
            }
            other => {
                let what = if needs_id {
                    format!(
                        "a path starting with / and containing {ID_PLACEHOLDER} (where the chat completion's id goes), such as \"{example}\""
                    )
                } else {
                    format!("a path starting with /, without query, such as \"{example}\"")
                };
                v.issue(
                    &key_path,
                    format!("expected {what}, found {}", describe(other)),
                );
                None
            }
        }
    };
    let overrides = PathOverrides {
        attestation: read("attestation", "/v1/attestation/report"),
        signature: read("signature", "/v1/signature/{id}"),
        chat: read("chat", "/v1/chat/completions"),
    };
    if v.issues.len() > before {
        Err(Reported)
    } else {
        Ok(overrides)
    }
}

/// Reads `[target.canary]`.
pub(super) fn canary(v: &mut Validator, t: &Table, path: &str) -> Result<CanaryConfig, Reported> {
    let at = format!("{path}.canary");
    let defaults = CanaryConfig::default();
    if !t.contains_key("canary") {
        return Ok(defaults);
    }
    let Some(table) = v.table(t, "canary", &at) else {
        return Err(Reported);
    };
    let before = v.issues.len();
    v.known_keys(&at, table, &CANARY_KEYS);
    let prompt = v.string(table, "prompt", &format!("{at}.prompt"), "a prompt");
    let max_tokens = v.integer(table, "max_tokens", &format!("{at}.max_tokens"), 1..=4096);
    let stream = v.boolean(table, "stream", &format!("{at}.stream"));
    let non_stream = v.boolean(table, "non_stream", &format!("{at}.non_stream"));
    let wait = v.integer(
        table,
        "signature_wait_seconds",
        &format!("{at}.signature_wait_seconds"),
        1..=120,
    );
    let every = v.integer(table, "every", &format!("{at}.every"), 1..=MAX_CANARY_EVERY);
    let canary = CanaryConfig {
        every: every
            .ok()
            .flatten()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(defaults.every),
        prompt: prompt
            .ok()
            .flatten()
            .map_or(defaults.prompt, str::to_string),
        max_tokens: max_tokens
            .ok()
            .flatten()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(defaults.max_tokens),
        stream: stream.ok().flatten().unwrap_or(defaults.stream),
        non_stream: non_stream.ok().flatten().unwrap_or(defaults.non_stream),
        signature_wait: wait
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .map_or(defaults.signature_wait, std::time::Duration::from_secs),
    };
    if let (Ok(_), Ok(_)) = (stream, non_stream) {
        if !canary.stream && !canary.non_stream {
            v.issue(
                &at,
                "expected stream or non_stream (or both) to be true, found both false".into(),
            );
        }
    }
    if v.issues.len() > before {
        Err(Reported)
    } else {
        Ok(canary)
    }
}
