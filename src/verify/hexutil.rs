//! Small helpers for the hex strings that fill provider responses.

/// Decodes hex with an optional `0x` prefix, case-insensitively.
pub fn decode(text: &str) -> Result<Vec<u8>, hex::FromHexError> {
    let body = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    hex::decode(body)
}

/// Lowercase hex of the bytes, without a prefix.
pub fn lower(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Whether a byte string is all zeros.
pub fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}
