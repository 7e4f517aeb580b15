//! `COPY … TO STDOUT` text format: one row per CopyData message, fields separated by tabs,
//! `\N` for NULL, and backslash escapes for the characters that would break the framing.
//! Fields without a backslash are borrowed as they are; only escaped ones are copied.

use std::borrow::Cow;

/// A COPY row that does not have the expected shape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("COPY row has {got} fields, expected {expected}")]
pub struct FieldCount {
    /// Fields found.
    pub got: usize,
    /// Columns selected.
    pub expected: usize,
}

/// Splits one row (with or without its newline) into `fields`: `None` for NULL, else the
/// unescaped bytes, which are the type's text output as pgoutput would send it.
pub fn split_row<'a>(
    row: &'a [u8],
    expected: usize,
    fields: &mut Vec<Option<Cow<'a, [u8]>>>,
) -> Result<(), FieldCount> {
    fields.clear();
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    // A row of zero columns is an empty line, not one empty field.
    if expected == 0 && row.is_empty() {
        return Ok(());
    }
    fields.extend(row.split(|&byte| byte == b'\t').map(field));
    if fields.len() == expected {
        Ok(())
    } else {
        Err(FieldCount {
            got: fields.len(),
            expected,
        })
    }
}

fn field(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    if raw == b"\\N" {
        return None;
    }
    if !raw.contains(&b'\\') {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'b') => out.push(0x08),
            Some(b'f') => out.push(0x0c),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'v') => out.push(0x0b),
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(row: &[u8], expected: usize) -> Result<Vec<Option<Vec<u8>>>, FieldCount> {
        let mut fields = Vec::new();
        split_row(row, expected, &mut fields)?;
        Ok(fields.into_iter().map(|f| f.map(Cow::into_owned)).collect())
    }

    #[test]
    fn plain_fields_are_borrowed_and_nulls_are_none() {
        let row = b"1\tabc\t\\N\t\n";
        let mut fields = Vec::new();
        split_row(row, 4, &mut fields).unwrap();
        assert!(matches!(fields[0], Some(Cow::Borrowed(b"1"))));
        assert!(matches!(fields[1], Some(Cow::Borrowed(b"abc"))));
        assert_eq!(fields[2], None);
        assert_eq!(fields[3].as_deref(), Some(&b""[..]));
    }

    #[test]
    fn escapes_are_undone() {
        assert_eq!(
            split(b"a\\tb\\nc\\\\d\\rE\\b\\f\\v\tx\\\\N\n", 2).unwrap(),
            vec![
                Some(b"a\tb\nc\\d\rE\x08\x0c\x0b".to_vec()),
                Some(b"x\\N".to_vec())
            ]
        );
    }

    #[test]
    fn a_wrong_field_count_is_an_error() {
        assert_eq!(
            split(b"1\t2\n", 3),
            Err(FieldCount {
                got: 2,
                expected: 3
            })
        );
        assert_eq!(split(b"\n", 0).unwrap(), Vec::<Option<Vec<u8>>>::new());
    }
}
