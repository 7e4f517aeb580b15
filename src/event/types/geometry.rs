//! point, as Debezium's `io.debezium.data.geometry.Point`: x, y and the point's well-known
//! binary (WKB), without an SRID.

use super::{PgType, TypeError};
use crate::event::Value;

/// Bytes of a WKB point: byte order, geometry type, x, y.
pub const POINT_WKB_LEN: usize = 21;
/// WKB's little-endian byte-order mark (NDR).
const WKB_LITTLE_ENDIAN: u8 = 1;
/// WKB's geometry type number for a point.
const WKB_POINT: u32 = 1;

/// point's text form `(x,y)` → [`Value::Point`].
pub(super) fn parse_point(pg_type: &PgType, text: &[u8]) -> Result<Value, TypeError> {
    let malformed = || TypeError::malformed(pg_type, text, "expected (x,y)");
    let inner = text
        .strip_prefix(b"(")
        .and_then(|rest| rest.strip_suffix(b")"))
        .and_then(|inner| std::str::from_utf8(inner).ok())
        .ok_or_else(malformed)?;
    let (x, y) = inner.split_once(',').ok_or_else(malformed)?;
    let coordinate = |text: &str| text.trim().parse::<f64>().map_err(|_| malformed());
    Ok(Value::Point {
        x: coordinate(x)?,
        y: coordinate(y)?,
    })
}

/// The point's WKB as Debezium's `Point.createValue` builds it: little-endian, type 1, x, y.
pub fn point_wkb(x: f64, y: f64) -> [u8; POINT_WKB_LEN] {
    let mut wkb = [0u8; POINT_WKB_LEN];
    wkb[0] = WKB_LITTLE_ENDIAN;
    wkb[1..5].copy_from_slice(&WKB_POINT.to_le_bytes());
    wkb[5..13].copy_from_slice(&x.to_le_bytes());
    wkb[13..21].copy_from_slice(&y.to_le_bytes());
    wkb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_from_their_text_form() {
        let parse = |text: &str| parse_point(&PgType::Point, text.as_bytes());
        assert_eq!(parse("(1,1)"), Ok(Value::Point { x: 1.0, y: 1.0 }));
        assert_eq!(parse("(1.5,-2.25)"), Ok(Value::Point { x: 1.5, y: -2.25 }));
        assert_eq!(
            parse("(1e+300,1e-300)"),
            Ok(Value::Point {
                x: 1e300,
                y: 1e-300
            })
        );
        for bad in ["1,1", "(1)", "(a,1)", "(1,1", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wkb_is_little_endian_type_one() {
        let wkb = point_wkb(1.0, 2.0);
        assert_eq!(wkb[..5], [1, 1, 0, 0, 0]);
        assert_eq!(wkb[5..13], 1.0f64.to_le_bytes());
        assert_eq!(wkb[13..], 2.0f64.to_le_bytes());
    }
}
