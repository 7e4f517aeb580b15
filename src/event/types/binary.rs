//! bytea and bit strings.

use super::{PgType, TypeError};

/// bytea in hex (`\x0a0b`, what `bytea_output=hex` prints) or the legacy escape format.
pub(super) fn parse_bytea(pg_type: &PgType, text: &[u8]) -> Result<Vec<u8>, TypeError> {
    match text.strip_prefix(b"\\x") {
        Some(hex) => parse_hex(pg_type, text, hex),
        None => parse_escaped(pg_type, text),
    }
}

fn parse_hex(pg_type: &PgType, text: &[u8], hex: &[u8]) -> Result<Vec<u8>, TypeError> {
    let malformed = || TypeError::malformed(pg_type, text, "expected pairs of hex digits");
    let (pairs, rest) = hex.as_chunks::<2>();
    if !rest.is_empty() {
        return Err(malformed());
    }
    pairs
        .iter()
        .map(|&[high, low]| Some(hex_digit(high)? << 4 | hex_digit(low)?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(malformed)
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
