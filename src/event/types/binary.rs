//! bytea and bit strings, and bytea as text under Debezium's `binary.handling.mode`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;

use super::{PgType, TypeError};

/// Debezium's `binary.handling.mode`: how bytea values travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum BinaryHandling {
    /// Connect BYTES.
    #[default]
    #[serde(rename = "bytes")]
    Bytes,
    /// A STRING in standard, padded base64.
    #[serde(rename = "base64")]
    Base64,
    /// A STRING in URL-safe, padded base64 (`-` and `_` for `+` and `/`).
    #[serde(rename = "base64-url-safe")]
    Base64UrlSafe,
    /// A STRING of lowercase hex digits.
    #[serde(rename = "hex")]
    Hex,
}

impl BinaryHandling {
    /// The text encoding bytea takes in this mode; `None` for bytes.
    pub fn encoding(self) -> Option<BinaryEncoding> {
        match self {
            BinaryHandling::Bytes => None,
            BinaryHandling::Base64 => Some(BinaryEncoding::Base64),
            BinaryHandling::Base64UrlSafe => Some(BinaryEncoding::Base64UrlSafe),
            BinaryHandling::Hex => Some(BinaryEncoding::Hex),
        }
    }
}

/// A text encoding of binary values, as Debezium's string `binary.handling.mode`s write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryEncoding {
    /// Java's `Base64.getEncoder()`: standard alphabet, padded.
    Base64,
    /// Java's `Base64.getUrlEncoder()`: URL-safe alphabet, padded.
    Base64UrlSafe,
    /// Debezium's `HexConverter`: two lowercase digits per byte.
    Hex,
}

impl BinaryEncoding {
    /// The mode's name in Debezium's configuration, which the schema parameter carries.
    pub fn name(self) -> &'static str {
        match self {
            BinaryEncoding::Base64 => "base64",
            BinaryEncoding::Base64UrlSafe => "base64-url-safe",
            BinaryEncoding::Hex => "hex",
        }
    }

    /// The encoding [`name`](Self::name)d `name`.
    pub fn from_name(name: &str) -> Option<BinaryEncoding> {
        [
            BinaryEncoding::Base64,
            BinaryEncoding::Base64UrlSafe,
            BinaryEncoding::Hex,
        ]
        .into_iter()
        .find(|encoding| encoding.name() == name)
    }

    /// `bytes` as text in this encoding.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            BinaryEncoding::Base64 => STANDARD.encode(bytes),
            BinaryEncoding::Base64UrlSafe => URL_SAFE.encode(bytes),
            BinaryEncoding::Hex => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let mut text = String::with_capacity(bytes.len() * 2);
                for &byte in bytes {
                    text.push(char::from(DIGITS[usize::from(byte >> 4)]));
                    text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
                }
                text
            }
        }
    }

    /// The bytes `text` encodes, into `out` (cleared first).
    pub fn decode(self, text: &str, out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        let decoded = match self {
            BinaryEncoding::Base64 => STANDARD.decode_vec(text, out).is_ok(),
            BinaryEncoding::Base64UrlSafe => URL_SAFE.decode_vec(text, out).is_ok(),
            BinaryEncoding::Hex => decode_hex(text.as_bytes())
                .map(|bytes| *out = bytes)
                .is_some(),
        };
        if decoded {
            Ok(())
        } else {
            Err(format!("invalid {} {text:?}", self.name()))
        }
    }
}

/// bytea in hex (`\x0a0b`, what `bytea_output=hex` prints) or the legacy escape format.
pub(super) fn parse_bytea(pg_type: &PgType, text: &[u8]) -> Result<Vec<u8>, TypeError> {
    match text.strip_prefix(b"\\x") {
        Some(hex) => parse_hex(pg_type, text, hex),
        None => parse_escaped(pg_type, text),
    }
}

fn parse_hex(pg_type: &PgType, text: &[u8], hex: &[u8]) -> Result<Vec<u8>, TypeError> {
    decode_hex(hex)
        .ok_or_else(|| TypeError::malformed(pg_type, text, "expected pairs of hex digits"))
}

/// Pairs of hex digits (either case) as bytes; `None` if any pair is not one.
fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let (pairs, rest) = hex.as_chunks::<2>();
    if !rest.is_empty() {
        return None;
    }
    pairs
        .iter()
        .map(|&[high, low]| Some(hex_digit(high)? << 4 | hex_digit(low)?))
        .collect()
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The escape format: `\\` is a backslash, `\ooo` an octal byte, anything else itself.
fn parse_escaped(pg_type: &PgType, text: &[u8]) -> Result<Vec<u8>, TypeError> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'\\' {
            out.push(byte);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', after @ ..] => {
                out.push(b'\\');
                rest = after;
            }
            [a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', after @ ..] => {
                out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                rest = after;
            }
            _ => return Err(TypeError::malformed(pg_type, text, "invalid escape")),
        }
    }
    Ok(out)
}

/// bit(1) (and varbit(1), which Debezium also maps to boolean). An empty varbit(1) has no bit
/// set, so it reads as false (Debezium's `Integer.valueOf("", 2)` would throw instead).
pub(super) fn parse_bit1(pg_type: &PgType, text: &[u8]) -> Result<bool, TypeError> {
    match text {
        b"1" => Ok(true),
        b"0" | b"" => Ok(false),
        _ => Err(TypeError::malformed(pg_type, text, "expected 0 or 1")),
    }
}

/// bit(n)/varbit: the string read as a binary number (first character most significant),
/// written little-endian in as few bytes as its highest set bit needs: Debezium fills a `BitSet`
/// from the string and sends `BitSet.toByteArray()` (DBZ-2315), so all-zero bits give no bytes.
pub(super) fn parse_bits(pg_type: &PgType, text: &[u8]) -> Result<Vec<u8>, TypeError> {
    let mut out = Vec::with_capacity(text.len().div_ceil(8));
    for chunk in text.rchunks(8) {
        let mut byte = 0u8;
        for &bit in chunk {
            byte = byte << 1
                | match bit {
                    b'0' => 0,
                    b'1' => 1,
                    _ => return Err(TypeError::malformed(pg_type, text, "expected 0s and 1s")),
                };
        }
        out.push(byte);
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::BinaryEncoding;
    use crate::event::types::{parse_text, PgType};
    use crate::event::Value;

    fn parse(pg_type: PgType, text: &str) -> Value {
        parse_text(&pg_type, text.as_bytes()).unwrap()
    }

    #[test]
    fn bytea_hex_and_escape() {
        assert_eq!(
            parse(PgType::Bytea, "\\x0a0b"),
            Value::Bytes(vec![0x0a, 0x0b])
        );
        assert_eq!(parse(PgType::Bytea, "\\x"), Value::Bytes(vec![]));
        assert_eq!(
            parse(PgType::Bytea, "\\x00FFaB"),
            Value::Bytes(vec![0x00, 0xff, 0xab])
        );
        assert_eq!(
            parse(PgType::Bytea, "ab\\\\c\\000\\377"),
            Value::Bytes(vec![b'a', b'b', b'\\', b'c', 0x00, 0xff])
        );
        for bad in ["\\x0", "\\x0g", "\\x 0a", "\\4", "a\\"] {
            assert!(
                parse_text(&PgType::Bytea, bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn binary_encodings_match_java_and_debezium() {
        let bytes = [0xfb, 0xff, 0x00, 0x41];
        let cases = [
            (BinaryEncoding::Base64, "+/8AQQ=="),
            (BinaryEncoding::Base64UrlSafe, "-_8AQQ=="),
            (BinaryEncoding::Hex, "fbff0041"),
        ];
        let mut out = Vec::new();
        for (encoding, text) in cases {
            assert_eq!(encoding.encode(&bytes), text);
            assert_eq!(BinaryEncoding::from_name(encoding.name()), Some(encoding));
            encoding.decode(text, &mut out).unwrap();
            assert_eq!(out, bytes);
            assert_eq!(encoding.encode(&[]), "");
            encoding.decode("", &mut out).unwrap();
            assert!(out.is_empty());
        }
        BinaryEncoding::Hex.decode("FBFF", &mut out).unwrap();
        assert_eq!(out, [0xfb, 0xff]);
        for (encoding, bad) in [
            (BinaryEncoding::Base64, "-_8AQQ=="),
            (BinaryEncoding::Base64, "+/8AQQ"),
            (BinaryEncoding::Base64UrlSafe, "+/8AQQ=="),
            (BinaryEncoding::Hex, "fbf"),
            (BinaryEncoding::Hex, "zz"),
        ] {
            assert_eq!(
                encoding.decode(bad, &mut out).unwrap_err(),
                format!("invalid {} {bad:?}", encoding.name())
            );
        }
        assert_eq!(BinaryEncoding::from_name("bytes"), None);
    }

    #[test]
    fn bit1_is_a_boolean() {
        assert_eq!(parse(PgType::Bit1, "1"), Value::Bool(true));
        assert_eq!(parse(PgType::Bit1, "0"), Value::Bool(false));
        assert_eq!(parse(PgType::Bit1, ""), Value::Bool(false));
        assert!(parse_text(&PgType::Bit1, b"10").is_err());
        assert!(parse_text(&PgType::Bit1, b"t").is_err());
    }

    #[test]
    fn bits_are_little_endian_bitset_bytes() {
        let bits = |length| PgType::Bits { length };
        assert_eq!(parse(bits(Some(3)), "101"), Value::Bytes(vec![0x05]));
        assert_eq!(parse(bits(Some(8)), "10000000"), Value::Bytes(vec![0x80]));
        assert_eq!(
            parse(bits(Some(10)), "1000000001"),
            Value::Bytes(vec![0x01, 0x02])
        );
        assert_eq!(
            parse(bits(Some(16)), "0000000100000010"),
            Value::Bytes(vec![0x02, 0x01])
        );
        // Leading zero bits take no bytes, as BitSet.toByteArray() trims them.
        assert_eq!(
            parse(bits(Some(16)), "0000000000000001"),
            Value::Bytes(vec![0x01])
        );
        assert_eq!(parse(bits(Some(5)), "00000"), Value::Bytes(vec![]));
        assert_eq!(parse(bits(None), ""), Value::Bytes(vec![]));
        assert_eq!(
            parse(bits(None), "111111111"),
            Value::Bytes(vec![0xff, 0x01])
        );
        assert!(parse_text(&bits(Some(3)), b"102").is_err());
    }
}
