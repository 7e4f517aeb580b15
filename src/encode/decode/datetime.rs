//! Dates, times and timestamps as PostgreSQL reads them: ISO with `BC` before year 1, the
//! infinity sentinels as `infinity`/`-infinity`.

use crate::event::types::{TIMESTAMP_NEGATIVE_INFINITY_MICROS, TIMESTAMP_POSITIVE_INFINITY_MICROS};

use super::text::push_padded;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// pgcdc's date sentinels (`i32::MAX`/`i32::MIN`) and Debezium's (pgjdbc's infinity dates).
const DATE_POSITIVE_INFINITY: [i64; 2] = [i32::MAX as i64, -2_147_472_692];
const DATE_NEGATIVE_INFINITY: [i64; 2] = [i32::MIN as i64, -2_147_472_691];

/// Java prints years beyond 9999 with `+` and years before 1 AD as negative astronomical
/// years; PostgreSQL wants neither, so those become plain years and `BC`.
pub(super) fn push_zoned_timestamp(out: &mut String, text: &str) {
    if let Some(rest) = text.strip_prefix('+') {
        out.push_str(rest);
        return;
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => (true, rest),
        _ => (false, text),
    };
    let digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    let year = unsigned
        .get(..digits)
        .and_then(|year| year.parse::<u64>().ok());
    match (year, unsigned.get(digits..)) {
        (Some(year), Some(rest)) if negative || year == 0 => {
            push_padded(out, year.saturating_add(1), 4);
            out.push_str(rest);
            out.push_str(" BC");
        }
        _ => out.push_str(text),
    }
}

/// `YYYY-MM-DD`, with `BC` before year 1; the infinity sentinels as `infinity`/`-infinity`.
pub(super) fn push_date(out: &mut String, days: i64) -> Result<(), String> {
    if DATE_POSITIVE_INFINITY.contains(&days) {
        out.push_str("infinity");
    } else if DATE_NEGATIVE_INFINITY.contains(&days) {
        out.push_str("-infinity");
    } else if i32::try_from(days).is_err() {
        return Err(format!("date {days} is not an int"));
    } else {
        let (year, month, day) = civil_from_days(days);
        push_civil(out, year, month, day);
        if year <= 0 {
            out.push_str(" BC");
        }
    }
    Ok(())
}

fn push_civil(out: &mut String, year: i64, month: i64, day: i64) {
    let era_year = if year <= 0 { 1 - year } else { year };
    push_padded(out, era_year.unsigned_abs(), 4);
    out.push('-');
    push_padded(out, month.unsigned_abs(), 2);
    out.push('-');
    push_padded(out, day.unsigned_abs(), 2);
}

/// `HH:MM:SS[.ffffff]`; `24:00:00` is the end of the day.
pub(super) fn push_time(out: &mut String, micros: i64) -> Result<(), String> {
    if !(0..=MICROS_PER_DAY).contains(&micros) {
        return Err(format!("time of day {micros} µs is out of range"));
    }
    push_time_of_day(out, micros);
    Ok(())
}

fn push_time_of_day(out: &mut String, micros: i64) {
    let micros = micros.unsigned_abs();
    let seconds = micros / MICROS_PER_SECOND.unsigned_abs();
    let fraction = micros % MICROS_PER_SECOND.unsigned_abs();
    push_padded(out, seconds / 3600, 2);
    out.push(':');
    push_padded(out, seconds / 60 % 60, 2);
    out.push(':');
    push_padded(out, seconds % 60, 2);
    if fraction != 0 {
        out.push('.');
        push_padded(out, fraction, 6);
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`; Debezium's infinity sentinels as `infinity`/`-infinity`.
pub(super) fn push_timestamp(out: &mut String, micros: i64) {
    match micros {
        TIMESTAMP_POSITIVE_INFINITY_MICROS => out.push_str("infinity"),
        TIMESTAMP_NEGATIVE_INFINITY_MICROS => out.push_str("-infinity"),
        _ => {
            let (year, month, day) = civil_from_days(micros.div_euclid(MICROS_PER_DAY));
            push_civil(out, year, month, day);
            out.push(' ');
            push_time_of_day(out, micros.rem_euclid(MICROS_PER_DAY));
            if year <= 0 {
                out.push_str(" BC");
            }
        }
    }
}

/// Days since 1970-01-01 → proleptic Gregorian (astronomical year, month, day), after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::decode::text::{push_scalar, Scalar, ScalarKind};

    fn text(kind: ScalarKind, scalar: Scalar<'_>) -> String {
        let mut out = String::new();
        push_scalar(&mut out, kind, &scalar).unwrap();
        out
    }

    #[test]
    fn dates_and_times() {
        let date = |days| text(ScalarKind::Date, Scalar::Int(days));
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(19_724), "2024-01-02");
        assert_eq!(date(-719_162), "0001-01-01");
        assert_eq!(date(-719_163), "0001-12-31 BC");
        assert_eq!(date(-735_160), "0044-03-15 BC");
        assert_eq!(date(2_145_042_905), "5874897-12-31");
        assert_eq!(date(i64::from(i32::MAX)), "infinity");
        assert_eq!(date(i64::from(i32::MIN)), "-infinity");
        assert_eq!(date(-2_147_472_692), "infinity");
        let ts = |micros| text(ScalarKind::Timestamp, Scalar::Int(micros));
        assert_eq!(ts(0), "1970-01-01 00:00:00");
        assert_eq!(ts(-1), "1969-12-31 23:59:59.999999");
        assert_eq!(ts(1_478_267_490_123_456), "2016-11-04 13:51:30.123456");
        assert_eq!(ts(-63_517_780_799_500_000), "0044-03-15 12:00:00.500000 BC");
        assert_eq!(ts(TIMESTAMP_POSITIVE_INFINITY_MICROS), "infinity");
        assert_eq!(ts(TIMESTAMP_NEGATIVE_INFINITY_MICROS), "-infinity");
        let time = |micros| text(ScalarKind::Time, Scalar::Int(micros));
        assert_eq!(time(49_890_123_000), "13:51:30.123000");
        assert_eq!(time(0), "00:00:00");
        assert_eq!(time(MICROS_PER_DAY), "24:00:00");
        let mut out = String::new();
        assert!(push_scalar(&mut out, ScalarKind::Time, &Scalar::Int(-1)).is_err());
        assert_eq!(
            text(ScalarKind::Interval, Scalar::Int(-123)),
            "-123 microseconds"
        );
    }

    #[test]
    fn zoned_timestamps_lose_java_year_signs() {
        let zoned = |s| text(ScalarKind::ZonedTimestamp, Scalar::Str(s));
        assert_eq!(zoned("2024-01-02T03:04:05.5Z"), "2024-01-02T03:04:05.5Z");
        assert_eq!(zoned("+10000-01-01T00:00:00Z"), "10000-01-01T00:00:00Z");
        assert_eq!(zoned("-0043-03-15T12:00:00Z"), "0044-03-15T12:00:00Z BC");
        assert_eq!(zoned("0000-06-01T00:00:00Z"), "0001-06-01T00:00:00Z BC");
        assert_eq!(zoned("infinity"), "infinity");
        assert_eq!(zoned("-infinity"), "-infinity");
    }
}
