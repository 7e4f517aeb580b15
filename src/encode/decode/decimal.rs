//! Decimals (Connect Decimal and VariableScaleDecimal) as exact text: the unscaled value is
//! big-endian two's complement of any length, so no f64 and no bignum crate.

use super::text::{digits, push_padded};

/// PostgreSQL's numeric holds at most 131072 digits before the point and 16383 after it;
/// 64 KiB of two's complement is more than that, and bounds the quadratic conversion.
const MAX_DECIMAL_BYTES: usize = 64 * 1024;
const MAX_DECIMAL_SCALE: i64 = 16_383;
const MAX_DECIMAL_NEGATIVE_SCALE: i64 = -131_072;
/// Ten to the ninth: decimal digits per limb when printing big decimals.
const TEN_POW_9: u64 = 1_000_000_000;

/// A big-endian two's-complement unscaled integer at `scale` as exact decimal text.
pub(super) fn push_decimal(out: &mut String, unscaled: &[u8], scale: i64) -> Result<(), String> {
    if unscaled.len() > MAX_DECIMAL_BYTES {
        return Err(format!("a decimal of {} bytes", unscaled.len()));
    }
    if !(MAX_DECIMAL_NEGATIVE_SCALE..=MAX_DECIMAL_SCALE).contains(&scale) {
        return Err(format!(
            "decimal scale {scale} is beyond PostgreSQL's numeric"
        ));
    }
    let negative = unscaled.first().is_some_and(|&b| b & 0x80 != 0);
    let mut small = [0; 20];
    let mut big = String::new();
    let digits = match magnitude_u64(unscaled, negative) {
        Some(magnitude) => digits(&mut small, magnitude),
        None => {
            big_magnitude_digits(&mut big, unscaled, negative);
            big.as_str()
        }
    };
    if negative {
        out.push('-');
    }
    let scale_digits = usize::try_from(scale.unsigned_abs()).map_err(|_| "scale out of range")?;
    if scale <= 0 {
        out.push_str(digits);
        if digits != "0" {
            out.extend(std::iter::repeat_n('0', scale_digits));
        }
    } else if digits.len() > scale_digits {
        let (integer, fraction) = digits.split_at(digits.len() - scale_digits);
        out.push_str(integer);
        out.push('.');
        out.push_str(fraction);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale_digits - digits.len()));
        out.push_str(digits);
    }
    Ok(())
}

/// The magnitude of a two's-complement integer of at most 8 bytes.
fn magnitude_u64(unscaled: &[u8], negative: bool) -> Option<u64> {
    if unscaled.len() > 8 {
        return None;
    }
    let fill = if negative { 0xff } else { 0 };
    let mut wide = [fill; 8];
    wide.get_mut(8 - unscaled.len()..)?
        .copy_from_slice(unscaled);
    Some(i64::from_be_bytes(wide).unsigned_abs())
}

/// The magnitude of a long two's-complement integer in decimal, by repeated division by 10⁹
/// of its base-2³² limbs.
fn big_magnitude_digits(out: &mut String, unscaled: &[u8], negative: bool) {
    let mut magnitude = unscaled.to_vec();
    if negative {
        let mut carry = true;
        for byte in magnitude.iter_mut().rev() {
            let (sum, overflow) = (!*byte).overflowing_add(u8::from(carry));
            *byte = sum;
            carry = overflow;
        }
    }
    // Big-endian u32 limbs, the first one padded on the left.
    let mut limbs: Vec<u32> = Vec::with_capacity(magnitude.len() / 4 + 1);
    let head = magnitude.len() % 4;
    let (first, rest) = magnitude.split_at(head);
    if !first.is_empty() {
        limbs.push(first.iter().fold(0, |acc, &b| acc << 8 | u32::from(b)));
    }
    for chunk in rest.chunks_exact(4) {
        limbs.push(chunk.iter().fold(0, |acc, &b| acc << 8 | u32::from(b)));
    }
    let mut chunks: Vec<u32> = Vec::new();
    while limbs.iter().any(|&limb| limb != 0) {
        let mut remainder = 0u64;
        for limb in limbs.iter_mut() {
            let current = remainder << 32 | u64::from(*limb);
            *limb = (current / TEN_POW_9) as u32;
            remainder = current % TEN_POW_9;
        }
        chunks.push(remainder as u32);
        let zeros = limbs.iter().take_while(|&&limb| limb == 0).count();
        limbs.drain(..zeros);
    }
    match chunks.split_last() {
        None => out.push('0'),
        Some((most, rest)) => {
            push_padded(out, u64::from(*most), 1);
            for chunk in rest.iter().rev() {
                push_padded(out, u64::from(*chunk), 9);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::decode::text::{push_scalar, Scalar, ScalarKind};

    fn decimal(bytes: &[u8], scale: i64) -> String {
        let mut out = String::new();
        push_scalar(
            &mut out,
            ScalarKind::Decimal { scale },
            &Scalar::Bytes(bytes),
        )
        .unwrap();
        out
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(&[0x30, 0x39], 2), "123.45");
        assert_eq!(decimal(&[0xff, 0x6a], 2), "-1.50");
        assert_eq!(decimal(&[0x00], 2), "0.00");
        assert_eq!(decimal(&[0x05], 3), "0.005");
        assert_eq!(decimal(&[0xfb], 3), "-0.005");
        assert_eq!(decimal(&[0x80], 0), "-128");
        assert_eq!(decimal(&[], 0), "0");
        assert_eq!(decimal(&[0x0c], -2), "1200");
        assert_eq!(decimal(&[0x00], -2), "0");
        // i128::MIN takes the fast path's unsigned_abs.
        let mut min = vec![0x80];
        min.extend([0; 15]);
        assert_eq!(decimal(&min, 0), i128::MIN.to_string());
        // 2^128 and -2^128 need the long division.
        let mut two_pow_128 = vec![0x01];
        two_pow_128.extend([0; 16]);
        assert_eq!(
            decimal(&two_pow_128, 5),
            "3402823669209384634633746074317682.11456"
        );
        let mut minus = vec![0xff];
        minus.extend([0; 16]);
        assert_eq!(
            decimal(&minus, 0),
            "-340282366920938463463374607431768211456"
        );
        // 10^1000 round-trips through the encoder's parser.
        let ten_pow = format!("1{}", "0".repeat(1000));
        let crate::event::Value::Decimal { unscaled, .. } = crate::event::types::parse_text(
            &crate::event::PgType::Decimal {
                precision: 1000,
                scale: 0,
            },
            format!("-{ten_pow}").as_bytes(),
        )
        .unwrap() else {
            panic!("not a decimal")
        };
        assert_eq!(decimal(&unscaled, 0), format!("-{ten_pow}"));
        let mut out = String::new();
        assert!(push_decimal(&mut out, &[1], 1_000_000).is_err());
        assert!(push_decimal(&mut out, &vec![1; MAX_DECIMAL_BYTES + 1], 0).is_err());
    }
}
