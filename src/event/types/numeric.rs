//! numeric text → Debezium's precise decimals: an unscaled integer as minimal big-endian two's
//! complement bytes (Java's `BigInteger.toByteArray()`), plus a scale.
//!
//! numeric can carry up to 131072 digits before the point, so values that do not fit an `i128`
//! are converted with a small base-2³² long multiplication instead of a bignum crate.

use super::{PgType, TypeError, Value};

/// The most decimal digits that always fit an `i128` (10³⁸ − 1 < 2¹²⁷).
const I128_DIGITS: usize = 38;

/// Decimal digits folded into one limb multiplication (10⁹ < 2³²).
const CHUNK_DIGITS: usize = 9;

/// A numeric's sign and digits, split at the decimal point, as written.
struct DecimalText<'a> {
    negative: bool,
    integer: &'a [u8],
    fraction: &'a [u8],
}

/// numeric(p,s) → `Decimal` at the column's scale; `NaN`/`±Infinity` → `Null` (no precise form).
pub(super) fn parse_fixed(pg_type: &PgType, text: &[u8], scale: u32) -> Result<Value, TypeError> {
    if is_special(text) {
        return Ok(Value::Null);
    }
    let decimal = split(pg_type, text)?;
    let mut fraction = decimal.fraction;
    let wanted = usize::try_from(scale).map_err(|_| TypeError::out_of_range(pg_type, text))?;
    // Extra fractional digits can only be zeros that setScale drops without rounding.
    while fraction.len() > wanted {
        match fraction.split_last() {
            Some((b'0', rest)) => fraction = rest,
            _ => {
                return Err(TypeError::malformed(
                    pg_type,
                    text,
                    "more fractional digits than the column's scale",
                ))
            }
        }
    }
    let padding = wanted - fraction.len();
    let digits = decimal
        .integer
        .iter()
        .chain(fraction)
        .copied()
        .chain(std::iter::repeat_n(b'0', padding));
    Ok(Value::Decimal {
        unscaled: unscaled_bytes(decimal.negative, digits),
        scale,
    })
}

/// numeric → Debezium's VariableScaleDecimal: the value with trailing fractional zeros stripped
/// (`stripTrailingZeros`, then a negative scale reset to 0), so `1.50` → 15 × 10⁻¹, `100` → 100.
/// `NaN`/`±Infinity` → `Null`.
pub(super) fn parse_variable(pg_type: &PgType, text: &[u8]) -> Result<Value, TypeError> {
    if is_special(text) {
        return Ok(Value::Null);
    }
    let decimal = split(pg_type, text)?;
    let mut fraction = decimal.fraction;
    while let Some((b'0', rest)) = fraction.split_last() {
        fraction = rest;
    }
    let scale =
        i32::try_from(fraction.len()).map_err(|_| TypeError::out_of_range(pg_type, text))?;
    let digits = decimal.integer.iter().chain(fraction).copied();
    Ok(Value::VariableDecimal {
        unscaled: unscaled_bytes(decimal.negative, digits),
        scale,
    })
}

/// money as the source's sessions print it (`lc_monetary=C`: `$1,234.11`, `-$0.50`) → a
/// `Decimal` at `scale` (`money.fraction.digits`), as Debezium reads it: the currency sign and
/// group separators dropped, then `setScale(scale, HALF_UP)`.
pub(super) fn parse_money(pg_type: &PgType, text: &[u8], scale: u32) -> Result<Value, TypeError> {
    let malformed = || TypeError::malformed(pg_type, text, "expected [-]$digits[.digits]");
    let plain = money_plain(text).ok_or_else(malformed)?;
    let decimal = split(pg_type, plain.as_bytes()).map_err(|_| malformed())?;
    let wanted = usize::try_from(scale).map_err(|_| TypeError::out_of_range(pg_type, text))?;
    let kept = decimal.fraction.len().min(wanted);
    let mut digits: Vec<u8> = decimal
        .integer
        .iter()
        .chain(&decimal.fraction[..kept])
        .copied()
        .chain(std::iter::repeat_n(b'0', wanted - kept))
        .collect();
    // HALF_UP: a first dropped digit of 5 or more rounds the magnitude up.
    if decimal.fraction.get(wanted).is_some_and(|&d| d >= b'5') {
        round_up(&mut digits);
    }
    Ok(Value::Decimal {
        unscaled: unscaled_bytes(decimal.negative, digits.into_iter()),
        scale,
    })
}

/// Adds one to the number the ASCII `digits` spell, growing it when it carries out.
fn round_up(digits: &mut Vec<u8>) {
    for digit in digits.iter_mut().rev() {
        if *digit == b'9' {
            *digit = b'0';
        } else {
            *digit += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// A numeric's text as it is (`12.30`, `NaN`), or a money's without its currency sign and
/// group separators (`-1234.11`): Debezium's `decimal.handling.mode = string` form.
pub(super) fn plain_text(pg_type: &PgType, text: &[u8], money: bool) -> Result<String, TypeError> {
    let plain = if money {
        money_plain(text)
            .ok_or_else(|| TypeError::malformed(pg_type, text, "expected [-]$digits[.digits]"))?
    } else {
        std::str::from_utf8(text)
            .map_err(|_| TypeError::malformed(pg_type, text, "not valid UTF-8"))?
            .to_owned()
    };
    if !is_special(plain.as_bytes()) {
        split(pg_type, plain.as_bytes())?;
    }
    Ok(plain)
}

/// A money's text without its currency sign and group separators (`-$1,234.11` →
/// `-1234.11`), not yet checked to be a number; `None` without the `$`.
fn money_plain(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let amount = unsigned.strip_prefix('$')?;
    Some(
        sign.chars()
            .chain(amount.chars().filter(|&c| c != ','))
            .collect(),
    )
}

fn is_special(text: &[u8]) -> bool {
    matches!(text, b"NaN" | b"Infinity" | b"-Infinity")
}

fn split<'a>(pg_type: &PgType, text: &'a [u8]) -> Result<DecimalText<'a>, TypeError> {
    let (negative, unsigned) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (integer, fraction) = match unsigned.iter().position(|&b| b == b'.') {
        Some(point) => {
            let (integer, point_and_fraction) = unsigned.split_at(point);
            (integer, point_and_fraction.get(1..).unwrap_or_default())
        }
        None => (unsigned, &[][..]),
    };
    let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    if (integer.is_empty() && fraction.is_empty()) || !all_digits(integer) || !all_digits(fraction)
    {
        return Err(TypeError::malformed(pg_type, text, "not a decimal number"));
    }
    Ok(DecimalText {
        negative,
        integer,
        fraction,
    })
}

/// The integer spelled by ASCII `digits` (negated if asked), as minimal two's-complement bytes.
fn unscaled_bytes(negative: bool, digits: impl Iterator<Item = u8> + Clone) -> Vec<u8> {
    if digits.clone().count() <= I128_DIGITS {
        let magnitude = digits.fold(0i128, |acc, d| acc * 10 + i128::from(d - b'0'));
        let value = if negative { -magnitude } else { magnitude };
        return minimal(value.to_be_bytes().to_vec());
    }
    // Little-endian base-2³² limbs of the magnitude.
    let mut limbs: Vec<u32> = Vec::new();
    let mut chunk = 0u64;
    let mut chunk_len = 0usize;
    for d in digits {
        chunk = chunk * 10 + u64::from(d - b'0');
        chunk_len += 1;
        if chunk_len == CHUNK_DIGITS {
            multiply_add(&mut limbs, 1_000_000_000, chunk);
            chunk = 0;
            chunk_len = 0;
        }
    }
    if chunk_len > 0 {
        let exponent = u32::try_from(chunk_len).unwrap_or(0);
        multiply_add(&mut limbs, 10u64.pow(exponent), chunk);
    }
    // A leading zero byte keeps the sign bit clear before an optional negation.
    let mut bytes = Vec::with_capacity(limbs.len() * 4 + 1);
    bytes.push(0);
    for limb in limbs.iter().rev() {
        bytes.extend_from_slice(&limb.to_be_bytes());
    }
    if negative {
        negate(&mut bytes);
    }
    minimal(bytes)
}

/// `limbs = limbs × factor + addend`, with factor and addend below 2³².
fn multiply_add(limbs: &mut Vec<u32>, factor: u64, addend: u64) {
    let mut carry = addend;
    for limb in limbs.iter_mut() {
        let product = u64::from(*limb) * factor + carry;
        *limb = product as u32;
        carry = product >> 32;
    }
    if carry > 0 {
        limbs.push(carry as u32);
    }
}

/// Two's-complement negation of a big-endian integer in place.
fn negate(bytes: &mut [u8]) {
    let mut carry = true;
    for byte in bytes.iter_mut().rev() {
        let (sum, overflow) = (!*byte).overflowing_add(u8::from(carry));
        *byte = sum;
        carry = overflow;
    }
}

/// Drops leading bytes that only repeat the sign, keeping at least one (0 → `[0]`).
fn minimal(mut bytes: Vec<u8>) -> Vec<u8> {
    let redundant = bytes
        .windows(2)
        .take_while(|pair| match pair {
            [0x00, next] => *next < 0x80,
            [0xff, next] => *next >= 0x80,
            _ => false,
        })
        .count();
    bytes.drain(..redundant);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::types::parse_text;

    fn fixed(scale: u32, text: &str) -> Value {
        let pg_type = PgType::Decimal {
            precision: 1000,
            scale,
        };
        parse_text(&pg_type, text.as_bytes()).unwrap()
    }

    fn variable(text: &str) -> Value {
        parse_text(&PgType::VariableDecimal, text.as_bytes()).unwrap()
    }

    fn decimal(unscaled: &[u8], scale: u32) -> Value {
        Value::Decimal {
            unscaled: unscaled.to_vec(),
            scale,
        }
    }

    fn var(unscaled: &[u8], scale: i32) -> Value {
        Value::VariableDecimal {
            unscaled: unscaled.to_vec(),
            scale,
        }
    }

    #[test]
    fn money_reads_as_a_decimal_at_its_fraction_digits() {
        let money =
            |text: &str| parse_money(&PgType::Money { fraction_digits: 2 }, text.as_bytes(), 2);
        // 123411 = 0x01_E2_13; -123411 = 0xFE_1D_ED.
        assert_eq!(money("$1,234.11"), Ok(decimal(&[0x01, 0xe2, 0x13], 2)));
        assert_eq!(money("-$1,234.11"), Ok(decimal(&[0xfe, 0x1d, 0xed], 2)));
        assert_eq!(money("$0.00"), Ok(decimal(&[0x00], 2)));
        assert_eq!(money("-$0.50"), Ok(decimal(&[0xce], 2)));
        assert_eq!(
            money("-$92,233,720,368,547,758.08"),
            Ok(decimal(&i64::MIN.to_be_bytes(), 2))
        );
        for bad in ["1,234.11", "$", "$1.2.3", "€1.00"] {
            assert!(money(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_rounds_half_up_to_its_fraction_digits() {
        let money = |text: &str, scale| {
            parse_money(
                &PgType::Money {
                    fraction_digits: scale,
                },
                text.as_bytes(),
                scale,
            )
        };
        // 1235, -1235, 12346, 123456000.
        assert_eq!(money("$1,234.56", 0), Ok(decimal(&[0x04, 0xd3], 0)));
        assert_eq!(money("-$1,234.50", 0), Ok(decimal(&[0xfb, 0x2d], 0)));
        assert_eq!(money("$1,234.56", 1), Ok(decimal(&[0x30, 0x3a], 1)));
        assert_eq!(
            money("$1,234.56", 5),
            Ok(decimal(&[0x07, 0x5b, 0xca, 0x00], 5))
        );
        assert_eq!(money("$9.99", 0), Ok(decimal(&[0x0a], 0)));
        assert_eq!(money("$0.49", 0), Ok(decimal(&[0x00], 0)));
    }

    #[test]
    fn string_and_double_modes_read_the_plain_decimal() {
        let numeric = PgType::DecimalText { money: false };
        let money = PgType::DecimalText { money: true };
        let plain = |ty: &PgType, text: &str| {
            plain_text(
                ty,
                text.as_bytes(),
                matches!(ty, PgType::DecimalText { money: true }),
            )
        };
        assert_eq!(plain(&numeric, "12.30").unwrap(), "12.30");
        assert_eq!(plain(&numeric, "-0.001").unwrap(), "-0.001");
        assert_eq!(plain(&numeric, "NaN").unwrap(), "NaN");
        assert!(plain(&numeric, "12,30").is_err());
        assert_eq!(plain(&money, "-$1,234.11").unwrap(), "-1234.11");
        assert_eq!(plain(&money, "$0.00").unwrap(), "0.00");
        assert!(plain(&money, "1,234.11").is_err());
    }

    #[test]
    fn two_complement_matches_java_big_integer() {
        let cases: [(&str, &[u8]); 12] = [
            ("0", &[0x00]),
            ("127", &[0x7f]),
            ("128", &[0x00, 0x80]),
            ("255", &[0x00, 0xff]),
            ("256", &[0x01, 0x00]),
            ("-1", &[0xff]),
            ("-128", &[0x80]),
            ("-129", &[0xff, 0x7f]),
            ("-256", &[0xff, 0x00]),
            ("32767", &[0x7f, 0xff]),
            ("-32768", &[0x80, 0x00]),
            ("-32769", &[0xff, 0x7f, 0xff]),
        ];
        for (text, bytes) in cases {
            assert_eq!(fixed(0, text), decimal(bytes, 0), "{text}");
        }
    }

    #[test]
    fn numeric_with_scale_is_rescaled_to_the_column() {
        assert_eq!(fixed(2, "1.50"), decimal(&[0x00, 0x96], 2));
        assert_eq!(fixed(2, "1.5"), decimal(&[0x00, 0x96], 2));
        assert_eq!(fixed(2, "-1.50"), decimal(&[0xff, 0x6a], 2));
        assert_eq!(fixed(2, "0.00"), decimal(&[0x00], 2));
        assert_eq!(fixed(3, "12"), decimal(&[0x2e, 0xe0], 3));
        assert_eq!(fixed(2, ".5"), decimal(&[0x32], 2));
        assert_eq!(fixed(2, "7.500"), decimal(&[0x02, 0xee], 2));
        // numeric(38,0) extremes still take the i128 path.
        assert_eq!(
            fixed(0, "99999999999999999999999999999999999999"),
            decimal(
                &[
                    0x4b, 0x3b, 0x4c, 0xa8, 0x5a, 0x86, 0xc4, 0x7a, 0x09, 0x8a, 0x22, 0x3f, 0xff,
                    0xff, 0xff, 0xff
                ],
                0
            )
        );
    }

    #[test]
    fn numeric_beyond_i128_uses_long_multiplication() {
        // 2^128 = 340282366920938463463374607431768211456 (39 digits).
        let mut two_pow_128 = vec![0x01];
        two_pow_128.extend([0u8; 16]);
        assert_eq!(
            fixed(0, "340282366920938463463374607431768211456"),
            decimal(&two_pow_128, 0)
        );
        // -2^127 fits 16 bytes exactly, with 39 digits at scale 1.
        let mut minus_two_pow_127 = vec![0x80];
        minus_two_pow_127.extend([0u8; 15]);
        assert_eq!(
            fixed(1, "-17014118346046923173168730371588410572.8"),
            decimal(&minus_two_pow_127, 1)
        );
        // 10^1000: 1 followed by 1000 zeros is 2^1000 × 5^1000; its lowest 1000 bits are zero.
        let text = format!("1{}", "0".repeat(1000));
        let Value::Decimal { unscaled, scale } = fixed(0, &text) else {
            panic!("not a decimal");
        };
        assert_eq!(scale, 0);
        assert_eq!(unscaled.len(), 416);
        assert!(unscaled.iter().rev().take(125).all(|&b| b == 0));
        assert_eq!(unscaled.first(), Some(&0x03));
        // Its negation: the same magnitude in two's complement.
        let Value::Decimal {
            unscaled: negative, ..
        } = fixed(0, &format!("-{text}"))
        else {
            panic!("not a decimal");
        };
        assert_eq!(negative.len(), 416);
        assert_eq!(negative.first(), Some(&0xfc));
        assert!(negative.iter().rev().take(125).all(|&b| b == 0));
    }

    #[test]
    fn variable_scale_strips_trailing_zeros_like_debezium() {
        assert_eq!(variable("1.50"), var(&[0x0f], 1));
        assert_eq!(variable("-7"), var(&[0xf9], 0));
        assert_eq!(variable("100"), var(&[0x64], 0));
        assert_eq!(variable("0"), var(&[0x00], 0));
        assert_eq!(variable("0.000"), var(&[0x00], 0));
        assert_eq!(variable("-0.001"), var(&[0xff], 3));
        assert_eq!(variable("123.456"), var(&[0x01, 0xe2, 0x40], 3));
        assert_eq!(variable("12300"), var(&[0x30, 0x0c], 0));
    }

    #[test]
    fn special_values_have_no_precise_form() {
        for text in ["NaN", "Infinity", "-Infinity"] {
            assert_eq!(fixed(2, text), Value::Null);
            assert_eq!(variable(text), Value::Null);
        }
    }

    #[test]
    fn malformed_numerics_are_errors() {
        let pg_type = PgType::Decimal {
            precision: 5,
            scale: 2,
        };
        for text in ["", "-", ".", "1.2.3", "1e5", "abc", " 1", "1.234", "nan"] {
            assert!(
                parse_text(&pg_type, text.as_bytes()).is_err(),
                "{text:?} should fail"
            );
        }
        let err = parse_text(&pg_type, b"1.234").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read numeric(5,2) value \"1.234\": more fractional digits than the column's scale"
        );
        assert!(parse_text(&PgType::VariableDecimal, b"1-2").is_err());
    }
}
