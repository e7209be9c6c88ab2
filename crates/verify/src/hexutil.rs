//! Hex encoding and decoding for the hex strings that fill provider responses.
//!
//! Quotes, event logs and measurements arrive as hex and every observed value leaves as hex, so
//! these two functions run thousands of times per verification; they work on bytes through a
//! lookup table instead of character iterators, which made them a visible share of the profile.

/// Why a string is not hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("odd number of hex digits ({0})")]
    OddLength(usize),
    #[error("invalid hex character {character:?} at position {position}")]
    InvalidCharacter { character: char, position: usize },
}

/// The value of a hex digit.
fn digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The lowercase hex digit of a nibble.
fn nibble(value: u8) -> u8 {
    if value < 10 {
        b'0' + value
    } else {
        b'a' + (value & 0x0f) - 10
    }
}

/// Decodes hex with an optional `0x` prefix, case-insensitively.
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let body = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
        .as_bytes();
    if body.len() % 2 != 0 {
        return Err(HexError::OddLength(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() / 2);
    for (index, pair) in body.chunks_exact(2).enumerate() {
        let (high, low) = match pair {
            [h, l] => (*h, *l),
            _ => return Err(HexError::OddLength(body.len())),
        };
        let (hv, lv) = (digit(high), digit(low));
        let (Some(hv), Some(lv)) = (hv, lv) else {
            let (character, position) = if hv.is_none() {
                (high, index * 2)
            } else {
                (low, index * 2 + 1)
            };
            let character = text
                .get(position + (text.len() - body.len())..)
                .and_then(|rest| rest.chars().next())
                .unwrap_or(char::from(character));
            return Err(HexError::InvalidCharacter {
                character,
                position,
            });
        };
        out.push((hv << 4) | lv);
    }
    Ok(out)
}

/// Lowercase hex of the bytes, without a prefix.
pub fn lower(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(nibble(byte >> 4));
        out.push(nibble(byte & 0x0f));
    }
    // Only ASCII digits and letters were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Whether a byte string is all zeros.
pub fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_agrees_with_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = lower(&bytes);
        assert_eq!(text, hex::encode(&bytes));
        assert_eq!(decode(&text), Ok(bytes.clone()));
        assert_eq!(decode(&format!("0x{}", text.to_uppercase())), Ok(bytes));
    }

    #[test]
    fn rejects_what_is_not_hex() {
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(
            decode("0xzz"),
            Err(HexError::InvalidCharacter {
                character: 'z',
                position: 0
            })
        );
        assert_eq!(
            decode("aéb"),
            Err(HexError::InvalidCharacter {
                character: 'é',
                position: 1
            })
        );
    }
}
