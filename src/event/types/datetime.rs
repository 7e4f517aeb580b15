//! date, time, timestamp, timestamptz, timetz and interval in `DateStyle=ISO` /
//! `IntervalStyle=postgres` text, converted the way Debezium's microsecond mode does.
//!
//! Dates use the proleptic Gregorian calendar with astronomical years (`0044-03-15 BC` is year
//! −43), as PostgreSQL and `java.time` both do.

use std::fmt::Write;

use super::{PgType, TypeError};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Debezium's timestamp for `infinity` (pgjdbc's `DATE_POSITIVE_INFINITY` read as µs).
pub const TIMESTAMP_POSITIVE_INFINITY_MICROS: i64 = 9_223_372_036_825_200_000;
/// Debezium's timestamp for `-infinity`.
pub const TIMESTAMP_NEGATIVE_INFINITY_MICROS: i64 = -9_223_372_036_832_400_000;

/// Debezium's average month (`MicroDuration.DAYS_PER_MONTH_AVG`).
const DAYS_PER_MONTH_AVG: f64 = 365.25 / 12.0;

/// A parse position over a value's bytes.
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a [u8]) -> Self {
        Cursor { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    /// Between `min` and `max` decimal digits, as a number and the count read.
    fn digits(&mut self, min: usize, max: usize) -> Option<(i64, usize)> {
        let mut value = 0i64;
        let mut count = 0;
        while count < max {
            match self.peek() {
                Some(d) if d.is_ascii_digit() => {
                    value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
                    count += 1;
                    self.pos += 1;
                }
                _ => break,
            }
        }
        (count >= min).then_some((value, count))
    }

    fn number(&mut self, min: usize, max: usize) -> Option<i64> {
        self.digits(min, max).map(|(value, _)| value)
    }
}

/// A calendar date with an astronomical year.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
}

impl Civil {
    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    fn epoch_days(self) -> i64 {
        let year = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let march_month = i64::from((self.month + 9) % 12);
        let day_of_year = (153 * march_month + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date `days` after 1970-01-01 (Hinnant's `civil_from_days`).
    fn from_epoch_days(days: i64) -> Civil {
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
        Civil {
            year: year_of_era + era * 400 + i64::from(month <= 2),
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
        }
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        _ => 28,
    }
}

/// Splits off PostgreSQL's ` BC` suffix.
fn strip_era(text: &[u8]) -> (&[u8], bool) {
    match text.strip_suffix(b" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

/// `YYYY-MM-DD` (four or more year digits); `bc` turns year N BC into astronomical 1 − N.
fn read_date(cursor: &mut Cursor<'_>, bc: bool) -> Option<Civil> {
    let year = cursor.number(4, 9)?;
    if !cursor.eat(b'-') {
        return None;
    }
    let month = u32::try_from(cursor.number(2, 2)?).ok()?;
    if !cursor.eat(b'-') {
        return None;
    }
    let day = u32::try_from(cursor.number(2, 2)?).ok()?;
    if year == 0 || !(1..=12).contains(&month) {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    (day >= 1 && day <= days_in_month(year, month)).then_some(Civil { year, month, day })
}

/// `HH:MM:SS[.ffffff]` as µs since midnight; hour 24 only as `24:00:00` when `allow_24`.
fn read_time(cursor: &mut Cursor<'_>, allow_24: bool) -> Option<i64> {
    let hour = cursor.number(2, 2)?;
    if !cursor.eat(b':') {
        return None;
    }
    let minute = cursor.number(2, 2)?;
    if !cursor.eat(b':') {
        return None;
    }
    let second = cursor.number(2, 2)?;
    let micros = read_fraction(cursor)?;
    let in_range = minute < 60 && second < 60 && hour < 24;
    let end_of_day = allow_24 && hour == 24 && minute == 0 && second == 0 && micros == 0;
    (in_range || end_of_day)
        .then_some(((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND + micros)
}

/// An optional `.f` to `.ffffff` as µs.
fn read_fraction(cursor: &mut Cursor<'_>) -> Option<i64> {
    if !cursor.eat(b'.') {
        return Some(0);
    }
    let (value, count) = cursor.digits(1, 6)?;
    let scale = 10i64.pow(u32::try_from(6 - count).ok()?);
    Some(value * scale)
}

/// A UTC offset `±HH[:MM[:SS]]` as seconds east of UTC.
fn read_offset(cursor: &mut Cursor<'_>) -> Option<i64> {
    let sign = match cursor.peek()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    cursor.pos += 1;
    let hours = cursor.number(2, 2)?;
    let mut minutes = 0;
    let mut seconds = 0;
    if cursor.eat(b':') {
        minutes = cursor.number(2, 2)?;
        if cursor.eat(b':') {
            seconds = cursor.number(2, 2)?;
        }
    }
    (hours <= 18 && minutes < 60 && seconds < 60)
        .then_some(sign * (hours * 3600 + minutes * 60 + seconds))
}

/// date → days since 1970-01-01. `infinity`/`-infinity` → −2147472692 / −2147472691, what
/// Debezium's streaming sends: pgjdbc's infinity dates (−5877611-06-21/22, PostgreSQL's
/// `INT32_MAX`/`INT32_MIN` days since 2000 wrapped around when moved to 1970) as epoch days.
/// No real date is that far back (PostgreSQL's first is 4714-11-24 BC), so a sink can tell.
pub(super) fn parse_date(pg_type: &PgType, text: &[u8]) -> Result<i32, TypeError> {
    match text {
        b"infinity" => return Ok(DATE_POSITIVE_INFINITY_DAYS),
        b"-infinity" => return Ok(DATE_NEGATIVE_INFINITY_DAYS),
        _ => {}
    }
    let (body, bc) = strip_era(text);
    let mut cursor = Cursor::new(body);
    let date = read_date(&mut cursor, bc)
        .filter(|_| cursor.at_end())
        .ok_or_else(|| TypeError::malformed(pg_type, text, "expected YYYY-MM-DD [BC]"))?;
    i32::try_from(date.epoch_days()).map_err(|_| TypeError::out_of_range(pg_type, text))
}

/// time → µs since midnight; `24:00:00` is 86400000000.
pub(super) fn parse_time(pg_type: &PgType, text: &[u8]) -> Result<i64, TypeError> {
    let mut cursor = Cursor::new(text);
    read_time(&mut cursor, true)
        .filter(|_| cursor.at_end())
        .ok_or_else(|| TypeError::malformed(pg_type, text, "expected HH:MM:SS[.ffffff]"))
}

/// Debezium's epoch days for date `infinity`.
pub const DATE_POSITIVE_INFINITY_DAYS: i32 = -2_147_472_692;
/// Debezium's epoch days for date `-infinity`.
pub const DATE_NEGATIVE_INFINITY_DAYS: i32 = -2_147_472_691;

/// timestamp → µs since the epoch; `infinity`/`-infinity` → Debezium's sentinels.
pub(super) fn parse_timestamp(pg_type: &PgType, text: &[u8]) -> Result<i64, TypeError> {
    match text {
        b"infinity" => return Ok(TIMESTAMP_POSITIVE_INFINITY_MICROS),
        b"-infinity" => return Ok(TIMESTAMP_NEGATIVE_INFINITY_MICROS),
        _ => {}
    }
    let (body, bc) = strip_era(text);
    let mut cursor = Cursor::new(body);
    let (date, time) = read_date(&mut cursor, bc)
        .filter(|_| cursor.eat(b' '))
        .and_then(|date| Some((date, read_time(&mut cursor, false)?)))
        .filter(|_| cursor.at_end())
        .ok_or_else(|| {
            TypeError::malformed(pg_type, text, "expected YYYY-MM-DD HH:MM:SS[.ffffff] [BC]")
        })?;
    date.epoch_days()
        .checked_mul(MICROS_PER_DAY)
        .and_then(|micros| micros.checked_add(time))
        .ok_or_else(|| TypeError::out_of_range(pg_type, text))
}

/// timestamptz → the instant in UTC, as Debezium's `ZonedTimestamp` prints it with the column's
/// precision as fraction width: exactly `fraction_digits` digits (`2024-01-02T03:04:05.120000Z`
/// for a plain timestamptz, zeros included); width 0 is Java's `ISO_OFFSET_DATE_TIME` (a
/// fraction only when not zero). Years beyond 9999 with `+`, before year 0 with `-`.
/// `infinity`/`-infinity` stay as they are, as in Debezium.
pub(super) fn parse_timestamptz(
    pg_type: &PgType,
    text: &[u8],
    fraction_digits: u32,
) -> Result<String, TypeError> {
    match text {
        b"infinity" => return Ok("infinity".to_owned()),
        b"-infinity" => return Ok("-infinity".to_owned()),
        _ => {}
    }
    let (body, bc) = strip_era(text);
    let mut cursor = Cursor::new(body);
    let (date, time, offset) = read_date(&mut cursor, bc)
        .filter(|_| cursor.eat(b' '))
        .and_then(|date| {
            let time = read_time(&mut cursor, false)?;
            Some((date, time, read_offset(&mut cursor)?))
        })
        .filter(|_| cursor.at_end())
        .ok_or_else(|| {
            TypeError::malformed(
                pg_type,
                text,
                "expected YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]] [BC]",
            )
        })?;
    let utc_micros = time - offset * MICROS_PER_SECOND;
    let days = date.epoch_days() + utc_micros.div_euclid(MICROS_PER_DAY);
    let utc = Civil::from_epoch_days(days);
    let mut out = String::with_capacity(32);
    push_year(&mut out, utc.year);
    let _ = write!(out, "-{:02}-{:02}T", utc.month, utc.day);
    let micros_of_day = utc_micros.rem_euclid(MICROS_PER_DAY);
    if fraction_digits == 0 {
        push_time_z(&mut out, micros_of_day);
    } else {
        push_hms(&mut out, micros_of_day / MICROS_PER_SECOND);
        // PostgreSQL already rounded the value to the column's precision; the digits past it
        // are zeros.
        let width = fraction_digits.min(6) as usize;
        let fraction = format!("{:06}", micros_of_day % MICROS_PER_SECOND);
        out.push('.');
        out.push_str(&fraction[..width]);
        out.push('Z');
    }
    Ok(out)
}

/// timetz → the time shifted to UTC, printed as Java's `ISO_OFFSET_TIME`: `03:04:05.5Z`.
/// `24:00:00` at offset zero stays `24:00:00Z`, as Debezium's boundary rule has it.
pub(super) fn parse_timetz(pg_type: &PgType, text: &[u8]) -> Result<String, TypeError> {
    let mut cursor = Cursor::new(text);
    let (time, offset) = read_time(&mut cursor, true)
        .and_then(|time| Some((time, read_offset(&mut cursor)?)))
        .filter(|_| cursor.at_end())
        .ok_or_else(|| {
            TypeError::malformed(pg_type, text, "expected HH:MM:SS[.ffffff]±HH[:MM[:SS]]")
        })?;
    if time == MICROS_PER_DAY && offset == 0 {
        return Ok("24:00:00Z".to_owned());
    }
    let mut out = String::with_capacity(20);
    push_time_z(
        &mut out,
        (time - offset * MICROS_PER_SECOND).rem_euclid(MICROS_PER_DAY),
    );
    Ok(out)
}

/// Java's `ISO_LOCAL_DATE` year: at least four digits, `+` above 9999, `-` below zero.
fn push_year(out: &mut String, year: i64) {
    let _ = if year > 9999 {
        write!(out, "+{year}")
    } else if year < 0 {
        write!(out, "-{:04}", year.unsigned_abs())
    } else {
        write!(out, "{year:04}")
    };
}

/// `HH:MM:SS` of a second of the day.
fn push_hms(out: &mut String, seconds: i64) {
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
}

/// `HH:MM:SS[.f…]Z` as Java's `ISO_LOCAL_TIME` plus a zero offset prints it.
fn push_time_z(out: &mut String, micros_of_day: i64) {
    let micros = micros_of_day % MICROS_PER_SECOND;
    push_hms(out, micros_of_day / MICROS_PER_SECOND);
    if micros != 0 {
        let mut fraction = format!("{micros:06}");
        while fraction.ends_with('0') {
            fraction.pop();
        }
        out.push('.');
        out.push_str(&fraction);
    }
    out.push('Z');
}

/// interval (`IntervalStyle=postgres`: `1 year 2 mons -3 days +04:05:06.789`) → µs, exactly as
/// Debezium computes it: pgjdbc's `PGInterval` splits the text into years, months, days, hours,
/// minutes and seconds (whole seconds + µs as a double), then `MicroDuration.durationMicros`
/// evaluates in doubles `days' = (years*12 + months) * 365.25/12 + days`,
/// `secs = ((days'*24 + hours)*60 + minutes)*60 + seconds` and truncates `secs * 1e6` to a long
/// (a Java `(long)` cast: toward zero, saturating). A month is thus 30.4375 days.
pub(super) fn parse_interval(pg_type: &PgType, text: &[u8]) -> Result<i64, TypeError> {
    let malformed = || {
        TypeError::malformed(
            pg_type,
            text,
            "expected [N years] [N mons] [N days] [±HH:MM:SS[.ffffff]]",
        )
    };
    let parts = interval_parts(text).ok_or_else(malformed)?;
    let months = parts
        .years
        .checked_mul(12)
        .and_then(|m| m.checked_add(parts.months))
        .ok_or_else(malformed)?;
    let whole_seconds = parts.micros / MICROS_PER_SECOND;
    let micros = parts.micros % MICROS_PER_SECOND;
    let seconds = whole_seconds as f64 + micros as f64 / 1e6;
    let days = months as f64 * DAYS_PER_MONTH_AVG + parts.days as f64;
    let total_seconds =
        ((days * 24.0 + parts.hours as f64) * 60.0 + parts.minutes as f64) * 60.0 + seconds;
    Ok((total_seconds * 1e6) as i64)
}

/// interval → Debezium's `Interval.toIsoString` of pgjdbc's `PGInterval`: `P{years}Y{months}M
/// {days}DT{hours}H{minutes}M{seconds}S`, each field as PostgreSQL printed it (not normalized).
/// The seconds are `new BigDecimal(double)` of whole seconds plus µs / 1e6, cut (toward zero)
/// to 9 fraction digits and stripped of trailing zeros, so `0.3` reads `0.299999999`, as in
/// Debezium.
pub(super) fn parse_interval_iso(pg_type: &PgType, text: &[u8]) -> Result<String, TypeError> {
    let parts = interval_parts(text).ok_or_else(|| {
        TypeError::malformed(
            pg_type,
            text,
            "expected [N years] [N mons] [N days] [±HH:MM:SS[.ffffff]]",
        )
    })?;
    let seconds =
        (parts.micros / MICROS_PER_SECOND) as f64 + (parts.micros % MICROS_PER_SECOND) as f64 / 1e6;
    Ok(format!(
        "P{}Y{}M{}DT{}H{}M{}S",
        parts.years,
        parts.months,
        parts.days,
        parts.hours,
        parts.minutes,
        java_seconds(seconds)
    ))
}

/// `new BigDecimal(seconds).setScale(9, DOWN).stripTrailingZeros().toPlainString()`. Thirty
/// correctly rounded digits cut to nine equal the exact binary value cut to nine unless
/// digits ten to thirty are all nines, which no whole-µs value reaches.
fn java_seconds(seconds: f64) -> String {
    let wide = format!("{seconds:.30}");
    let (integer, fraction) = wide.split_once('.').unwrap_or((&wide, ""));
    let fraction = fraction.get(..9).unwrap_or(fraction).trim_end_matches('0');
    let integer = match integer {
        "-0" if fraction.is_empty() => "0",
        other => other,
    };
    if fraction.is_empty() {
        integer.to_string()
    } else {
        format!("{integer}.{fraction}")
    }
}

/// An interval's fields as PostgreSQL prints them (each signed on its own).
#[derive(Debug, Default, PartialEq)]
struct IntervalParts {
    years: i64,
    months: i64,
    days: i64,
    hours: i64,
    minutes: i64,
    /// Seconds and their fraction, in µs.
    micros: i64,
}

fn interval_parts(text: &[u8]) -> Option<IntervalParts> {
    let mut parts = IntervalParts::default();
    let mut tokens = text.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let mut any = false;
    while let Some(token) = tokens.next() {
        any = true;
        let (negative, unsigned) = match token.split_first()? {
            (b'-', rest) => (true, rest),
            (b'+', rest) => (false, rest),
            _ => (false, token),
        };
        let sign = if negative { -1 } else { 1 };
        if unsigned.contains(&b':') {
            let mut cursor = Cursor::new(unsigned);
            let hours = cursor.number(1, 18)?;
            let minutes = cursor.eat(b':').then(|| cursor.number(2, 2))??;
            let seconds = cursor.eat(b':').then(|| cursor.number(2, 2))??;
            let fraction = read_fraction(&mut cursor)?;
            if !cursor.at_end() || minutes >= 60 || seconds >= 60 {
                return None;
            }
            parts.hours = sign * hours;
            parts.minutes = sign * minutes;
            parts.micros = sign * (seconds * MICROS_PER_SECOND + fraction);
            continue;
        }
        let mut cursor = Cursor::new(unsigned);
        let value = sign * cursor.number(1, 18)?;
        if !cursor.at_end() {
            return None;
        }
        match tokens.next()? {
            b"year" | b"years" => parts.years = value,
            b"mon" | b"mons" => parts.months = value,
            b"day" | b"days" => parts.days = value,
            _ => return None,
        }
    }
    any.then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::types::parse_text;
    use crate::event::Value;

    fn parse(pg_type: PgType, text: &str) -> Value {
        parse_text(&pg_type, text.as_bytes()).unwrap()
    }

    fn fails(pg_type: PgType, text: &str) {
        assert!(
            parse_text(&pg_type, text.as_bytes()).is_err(),
            "{text:?} should not parse as {pg_type}"
        );
    }

    #[test]
    fn civil_round_trip_across_eras() {
        for days in [-2_147_483_648i64, -719_528, -1, 0, 1, 10_957, 2_147_483_647] {
            let date = Civil::from_epoch_days(days);
            assert_eq!(date.epoch_days(), days, "{date:?}");
        }
        // pgjdbc's infinity dates are PostgreSQL's INT32_MAX / INT32_MIN days since 2000, wrapped.
        let positive = Civil {
            year: -5_877_611,
            month: 6,
            day: 21,
        };
        assert_eq!(positive.epoch_days(), -2_147_472_692);
        assert_eq!(
            Civil::from_epoch_days(i64::from(i32::MIN)),
            Civil {
                year: -5_877_641,
                month: 6,
                day: 23
            }
        );
    }

    #[test]
    fn date() {
        assert_eq!(parse(PgType::Date, "1970-01-01"), Value::Int(0));
        assert_eq!(parse(PgType::Date, "1969-12-31"), Value::Int(-1));
        assert_eq!(parse(PgType::Date, "2000-02-29"), Value::Int(11_016));
        assert_eq!(parse(PgType::Date, "2024-01-02"), Value::Int(19_724));
        assert_eq!(parse(PgType::Date, "0001-01-01"), Value::Int(-719_162));
        // 1 BC is astronomical year 0, a leap year.
        assert_eq!(parse(PgType::Date, "0001-12-31 BC"), Value::Int(-719_163));
        assert_eq!(parse(PgType::Date, "0001-02-29 BC"), Value::Int(-719_469));
        assert_eq!(parse(PgType::Date, "0044-03-15 BC"), Value::Int(-735_160));
        assert_eq!(parse(PgType::Date, "4713-01-01 BC"), Value::Int(-2_440_550));
        assert_eq!(parse(PgType::Date, "10000-01-01"), Value::Int(2_932_897));
        assert_eq!(
            parse(PgType::Date, "5874897-12-31"),
            Value::Int(2_145_042_905)
        );
        assert_eq!(parse(PgType::Date, "infinity"), Value::Int(-2_147_472_692));
        assert_eq!(parse(PgType::Date, "-infinity"), Value::Int(-2_147_472_691));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "0000-01-01",
            "24-01-01",
            "2024-1-01",
            "2024-01-01 ",
            "2024-01-01 AD",
            "Infinity",
            "",
        ] {
            fails(PgType::Date, bad);
        }
    }

    #[test]
    fn time() {
        assert_eq!(parse(PgType::Time, "00:00:00"), Value::Long(0));
        assert_eq!(parse(PgType::Time, "13:51:30"), Value::Long(49_890_000_000));
        assert_eq!(
            parse(PgType::Time, "13:51:30.123"),
            Value::Long(49_890_123_000)
        );
        assert_eq!(
            parse(PgType::Time, "23:59:59.999999"),
            Value::Long(86_399_999_999)
        );
        assert_eq!(parse(PgType::Time, "00:00:00.000001"), Value::Long(1));
        assert_eq!(parse(PgType::Time, "24:00:00"), Value::Long(86_400_000_000));
        for bad in [
            "24:00:01",
            "24:00:00.5",
            "12:60:00",
            "12:00:60",
            "12:00",
            "12:00:00.1234567",
            "12:00:00.",
            "12:00:00+00",
        ] {
            fails(PgType::Time, bad);
        }
    }

    #[test]
    fn timestamp() {
        assert_eq!(
            parse(PgType::Timestamp, "1970-01-01 00:00:00"),
            Value::Long(0)
        );
        assert_eq!(
            parse(PgType::Timestamp, "2016-11-04 13:51:30.123456"),
            Value::Long(1_478_267_490_123_456)
        );
        assert_eq!(
            parse(PgType::Timestamp, "1969-12-31 23:59:59.999999"),
            Value::Long(-1)
        );
        assert_eq!(
            parse(PgType::Timestamp, "1936-10-25 22:10:12.608"),
            Value::Long(-1_047_174_587_392_000)
        );
        assert_eq!(
            parse(PgType::Timestamp, "0044-03-15 12:00:00.5 BC"),
            Value::Long(-63_517_780_799_500_000)
        );
        // Debezium's own test values: 4713-12-31 23:59:59.999999 BC and year 294247.
        assert_eq!(
            parse(PgType::Timestamp, "4713-12-31 23:59:59.999999 BC"),
            Value::Long(-210_831_897_600_000_001)
        );
        assert_eq!(
            parse(PgType::Timestamp, "294247-01-01 23:59:59.999999"),
            Value::Long(9_223_371_331_199_999_999)
        );
        assert_eq!(
            parse(PgType::Timestamp, "infinity"),
            Value::Long(9_223_372_036_825_200_000)
        );
        assert_eq!(
            parse(PgType::Timestamp, "-infinity"),
            Value::Long(-9_223_372_036_832_400_000)
        );
        // PostgreSQL's last timestamp is beyond i64 µs since 1970.
        assert!(matches!(
            parse_text(&PgType::Timestamp, b"294276-12-31 23:59:59.999999"),
            Err(TypeError::OutOfRange { .. })
        ));
        for bad in [
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:00+00",
            "2024-01-01  00:00:00",
        ] {
            fails(PgType::Timestamp, bad);
        }
    }

    #[test]
    fn intervals_in_iso_8601_as_debezium_prints_them() {
        let iso = |text: &str| parse_interval_iso(&PgType::IntervalText, text.as_bytes()).unwrap();
        assert_eq!(iso("1 year 2 mons 3 days 04:05:06.78"), "P1Y2M3DT4H5M6.78S");
        assert_eq!(iso("00:00:00"), "P0Y0M0DT0H0M0S");
        assert_eq!(iso("-1 mons"), "P0Y-1M0DT0H0M0S");
        assert_eq!(iso("-00:00:00.3"), "P0Y0M0DT0H0M-0.299999999S");
        assert_eq!(iso("1 day -01:02:03.5"), "P0Y0M1DT-1H-2M-3.5S");
        // 1e-6 as a double is just below it: Debezium cuts it to 0.000000999.
        assert_eq!(iso("00:00:00.000001"), "P0Y0M0DT0H0M0.000000999S");
        assert!(parse_interval_iso(&PgType::IntervalText, b"1 fortnight").is_err());
    }

    #[test]
    fn timestamptz() {
        let tz = |text| parse(PgType::Timestamptz { fraction_digits: 6 }, text);
        let s = |text: &str| Value::String(text.to_owned());
        assert_eq!(
            tz("2024-01-02 03:04:05+00"),
            s("2024-01-02T03:04:05.000000Z")
        );
        assert_eq!(
            tz("2024-01-02 03:04:05.123456+00"),
            s("2024-01-02T03:04:05.123456Z")
        );
        assert_eq!(
            tz("2024-01-02 03:04:05.12+00"),
            s("2024-01-02T03:04:05.120000Z")
        );
        assert_eq!(
            tz("2024-01-02 03:04:05.000001+00"),
            s("2024-01-02T03:04:05.000001Z")
        );
        assert_eq!(
            tz("2024-01-02 03:04:05+05:30"),
            s("2024-01-01T21:34:05.000000Z")
        );
        assert_eq!(
            tz("2024-12-31 20:00:00-08"),
            s("2025-01-01T04:00:00.000000Z")
        );
        assert_eq!(
            tz("2024-01-02 03:04:05.5+05:30:15"),
            s("2024-01-01T21:33:50.500000Z")
        );
        assert_eq!(
            tz("2024-03-01 00:00:00+01"),
            s("2024-02-29T23:00:00.000000Z")
        );
        assert_eq!(
            tz("0044-03-15 06:30:00+00 BC"),
            s("-0043-03-15T06:30:00.000000Z")
        );
        assert_eq!(
            tz("0001-01-01 00:00:00+01"),
            s("0000-12-31T23:00:00.000000Z")
        );
        assert_eq!(
            tz("4714-12-31 23:59:59.999999+00 BC"),
            s("-4713-12-31T23:59:59.999999Z")
        );
        assert_eq!(
            tz("10000-01-01 00:00:00+00"),
            s("+10000-01-01T00:00:00.000000Z")
        );
        assert_eq!(
            tz("294276-12-31 23:59:59.999999+00"),
            s("+294276-12-31T23:59:59.999999Z")
        );
        // timestamptz(3) prints three digits; timestamptz(0) as ISO_OFFSET_DATE_TIME does.
        let tz3 = |text| parse(PgType::Timestamptz { fraction_digits: 3 }, text);
        assert_eq!(
            tz3("2024-01-02 03:04:05.12+00"),
            s("2024-01-02T03:04:05.120Z")
        );
        assert_eq!(tz3("2024-01-02 03:04:05+00"), s("2024-01-02T03:04:05.000Z"));
        let tz0 = |text| parse(PgType::Timestamptz { fraction_digits: 0 }, text);
        assert_eq!(tz0("2024-01-02 03:04:05+00"), s("2024-01-02T03:04:05Z"));
        assert_eq!(tz("infinity"), s("infinity"));
        assert_eq!(tz("-infinity"), s("-infinity"));
        for bad in [
            "2024-01-02 03:04:05",
            "2024-01-02 03:04:05Z",
            "2024-01-02 03:04:05+5",
            "2024-01-02 03:04:05+05:3",
            "2024-01-02 03:04:05+19",
            "2024-01-02T03:04:05+00",
            "2024-01-02 03:04:05+00 AD",
        ] {
            fails(PgType::Timestamptz { fraction_digits: 6 }, bad);
        }
    }

    #[test]
    fn timetz() {
        let tz = |text| parse(PgType::Timetz, text);
        let s = |text: &str| Value::String(text.to_owned());
        assert_eq!(tz("03:04:05+00"), s("03:04:05Z"));
        assert_eq!(tz("03:04:05.123456+00"), s("03:04:05.123456Z"));
        assert_eq!(tz("03:04:05.120+00"), s("03:04:05.12Z"));
        assert_eq!(tz("13:51:30.123789+02"), s("11:51:30.123789Z"));
        assert_eq!(tz("03:04:05+05:30"), s("21:34:05Z"));
        assert_eq!(tz("20:00:00-08"), s("04:00:00Z"));
        assert_eq!(tz("12:00:00+05:30:15"), s("06:29:45Z"));
        assert_eq!(tz("00:00:00+00"), s("00:00:00Z"));
        assert_eq!(tz("24:00:00+00"), s("24:00:00Z"));
        assert_eq!(tz("24:00:00-03"), s("03:00:00Z"));
        for bad in ["03:04:05", "03:04:05 +00", "25:00:00+00", "03:04+00"] {
            fails(PgType::Timetz, bad);
        }
    }

    #[test]
    fn interval() {
        let micros = |text| parse(PgType::Interval, text);
        assert_eq!(micros("00:00:00"), Value::Long(0));
        assert_eq!(micros("00:00:00.000001"), Value::Long(1));
        assert_eq!(micros("-00:00:01"), Value::Long(-1_000_000));
        assert_eq!(micros("-00:00:00.5"), Value::Long(-500_000));
        assert_eq!(micros("1 day"), Value::Long(86_400_000_000));
        assert_eq!(micros("1 day -00:00:01"), Value::Long(86_399_000_000));
        assert_eq!(micros("-1 days +02:03:00"), Value::Long(-79_020_000_000));
        assert_eq!(micros("3 mons"), Value::Long(7_889_400_000_000));
        assert_eq!(micros("1 mon"), Value::Long(2_629_800_000_000));
        assert_eq!(micros("1 year"), Value::Long(31_557_600_000_000));
        assert_eq!(micros("-1 years -2 mons"), Value::Long(-36_817_200_000_000));
        assert_eq!(
            micros("1 year 2 mons 3 days 04:05:06.789"),
            Value::Long(37_091_106_789_000)
        );
        // Debezium's own test interval: durationMicros(1, 2, 3, 4, 5, 6.78).
        assert_eq!(
            micros("1 year 2 mons 3 days 04:05:06.78"),
            Value::Long(37_091_106_780_000)
        );
        // Beyond i64 the double saturates, as Java's (long) cast does.
        assert_eq!(micros("2562047788:00:54.775807"), Value::Long(i64::MAX));
        assert_eq!(micros("178000000 years"), Value::Long(i64::MAX));
        assert_eq!(micros("-178000000 years"), Value::Long(i64::MIN));
        for bad in [
            "",
            "1",
            "1 fortnight",
            "1 day 2",
            "01:02",
            "1:60:00",
            "00:00:00.1234567",
            "P1D",
            "1 day 00:00:00 x",
        ] {
            fails(PgType::Interval, bad);
        }
    }
}
