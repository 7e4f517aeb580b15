//! PostgreSQL's array text format: `{1,2,NULL}`, `{"a b","q\"uote"}`, `[0:1]={1,2}`,
//! `{{1,2},{3,4}}`. Elements are parsed with the element type; an unquoted `NULL` is SQL NULL,
//! a quoted `"NULL"` the string. Multi-dimensional arrays are flattened in row-major order,
//! since the Avro schema has one array level per column.

use std::borrow::Cow;

use super::{parse_text, PgType, TypeError, Value};

/// PostgreSQL's `MAXDIM`: deeper nesting is not a valid array.
const MAX_DIMENSIONS: usize = 6;

/// Parses an array value of `array_type`, whose elements are `element`s.
pub(super) fn parse_array(
    array_type: &PgType,
    element: &PgType,
    text: &[u8],
) -> Result<Value, TypeError> {
    let mut parser = ArrayParser {
        array_type,
        element,
        text,
        pos: skip_dimensions(text),
        delimiter: delimiter(element),
    };
    let mut values = Vec::new();
    parser.skip_spaces();
    if !parser.eat(b'{') {
        return Err(parser.malformed("expected '{'"));
    }
    parser.level(1, &mut values)?;
    parser.skip_spaces();
    if parser.pos != text.len() {
        return Err(parser.malformed("text after the closing '}'"));
    }
    Ok(Value::Array(values))
}

/// `box` is the only built-in type whose `typdelim` is not a comma.
fn delimiter(element: &PgType) -> u8 {
    match element {
        PgType::Other { type_name } if type_name == "box" => b';',
        _ => b',',
    }
}

/// Where the braces start, past an optional `[lower:upper]…=` bounds decoration.
fn skip_dimensions(text: &[u8]) -> usize {
    if text.first() != Some(&b'[') {
        return 0;
    }
    text.iter()
        .position(|&b| b == b'=')
        .filter(|&eq| {
            text.get(..eq)
                .is_some_and(|bounds| bounds.iter().all(|b| b"[]:-0123456789".contains(b)))
        })
        .map_or(0, |eq| eq + 1)
}

struct ArrayParser<'a> {
    array_type: &'a PgType,
    element: &'a PgType,
    text: &'a [u8],
    pos: usize,
    delimiter: u8,
}

impl<'a> ArrayParser<'a> {
    fn malformed(&self, reason: &'static str) -> TypeError {
        TypeError::malformed(self.array_type, self.text, reason)
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

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// The contents of one `{…}` level, after its `{`, up to and including its `}`.
    fn level(&mut self, depth: usize, out: &mut Vec<Value>) -> Result<(), TypeError> {
        if depth > MAX_DIMENSIONS {
            return Err(self.malformed("more than 6 dimensions"));
        }
        self.skip_spaces();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.level(depth + 1, out)?;
                }
                Some(b'"') => {
                    self.pos += 1;
                    let item = self.quoted()?;
                    out.push(parse_text(self.element, &item)?);
                }
                Some(_) => {
                    let (item, escaped) = self.unquoted()?;
                    if !escaped && item.eq_ignore_ascii_case(b"NULL") {
                        out.push(Value::Null);
                    } else {
                        out.push(parse_text(self.element, &item)?);
                    }
                }
                None => return Err(self.malformed("unterminated array")),
            }
            self.skip_spaces();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b) if b == self.delimiter => self.pos += 1,
                _ => return Err(self.malformed("expected a delimiter or '}'")),
            }
        }
    }

    /// A `"…"` element after its opening quote; borrowed when it holds no backslash.
    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, TypeError> {
        let text = self.text;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let byte = self
                .peek()
                .ok_or_else(|| self.malformed("unterminated quoted element"))?;
            self.pos += 1;
            match byte {
                b'"' => {
                    return Ok(match owned {
                        Some(bytes) => Cow::Owned(bytes),
                        None => Cow::Borrowed(text.get(start..self.pos - 1).unwrap_or_default()),
                    })
                }
                b'\\' => {
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.malformed("unterminated quoted element"))?;
                    let buffer = owned.get_or_insert_with(|| {
                        text.get(start..self.pos - 1).unwrap_or_default().to_vec()
                    });
                    buffer.push(escaped);
                    self.pos += 1;
                }
                _ => {
                    if let Some(buffer) = owned.as_mut() {
                        buffer.push(byte);
                    }
                }
            }
        }
    }

    /// An unquoted element, up to the delimiter or `}`, trailing spaces dropped; also reports
    /// whether it used a backslash (then `NULL` is the string, not SQL NULL).
    fn unquoted(&mut self) -> Result<(Cow<'a, [u8]>, bool), TypeError> {
        let text = self.text;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        while let Some(byte) = self.peek() {
            if byte == self.delimiter || byte == b'}' {
                break;
            }
            if matches!(byte, b'{' | b'"') {
                return Err(self.malformed("unexpected '{' or '\"' in an unquoted element"));
            }
            self.pos += 1;
            if byte == b'\\' {
                let escaped = self
                    .peek()
                    .ok_or_else(|| self.malformed("unterminated array"))?;
                let buffer = owned.get_or_insert_with(|| {
                    text.get(start..self.pos - 1).unwrap_or_default().to_vec()
                });
                buffer.push(escaped);
                self.pos += 1;
            } else if let Some(buffer) = owned.as_mut() {
                buffer.push(byte);
            }
        }
        let escaped = owned.is_some();
        let mut item = match owned {
            Some(bytes) => Cow::Owned(bytes),
            None => Cow::Borrowed(text.get(start..self.pos).unwrap_or_default()),
        };
        // PostgreSQL ignores whitespace around unquoted elements.
        let trimmed = item.trim_ascii_end().len();
        match &mut item {
            Cow::Borrowed(slice) => *slice = slice.get(..trimmed).unwrap_or_default(),
            Cow::Owned(bytes) => bytes.truncate(trimmed),
        }
        if item.is_empty() {
            return Err(self.malformed("empty unquoted element"));
        }
        Ok((item, escaped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array_of(element: PgType) -> PgType {
        PgType::Array(Box::new(element))
    }

    fn parse(pg_type: &PgType, text: &str) -> Value {
        parse_text(pg_type, text.as_bytes()).unwrap()
    }

    fn strings(items: &[Option<&str>]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|item| item.map_or(Value::Null, |s| Value::String(s.to_owned())))
                .collect(),
        )
    }

    #[test]
    fn integer_arrays() {
        let ints = array_of(PgType::Int4);
        assert_eq!(parse(&ints, "{}"), Value::Array(vec![]));
        assert_eq!(
            parse(&ints, "{1,2,NULL}"),
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Null])
        );
        assert_eq!(
            parse(&ints, "{-2147483648,null,2147483647}"),
            Value::Array(vec![
                Value::Int(i32::MIN),
                Value::Null,
                Value::Int(i32::MAX)
            ])
        );
        assert_eq!(
            parse(&ints, "[0:1]={1,2}"),
            Value::Array(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(
            parse(&ints, "{{1,2},{3,4}}"),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(2),
                Value::Int(3),
                Value::Int(4)
            ])
        );
        assert_eq!(
            parse(&ints, "[1:2][-1:0]={{1,2},{3,4}}"),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(2),
                Value::Int(3),
                Value::Int(4)
            ])
        );
        assert_eq!(
            parse(&ints, " { 1 , 2 } "),
            Value::Array(vec![Value::Int(1), Value::Int(2)])
        );
    }

    #[test]
    fn text_arrays_with_quoting() {
        let texts = array_of(PgType::Text);
        assert_eq!(
            parse(
                &texts,
                r#"{"a b","with \"quote\"","back\\slash",NULL,"NULL",""}"#
            ),
            strings(&[
                Some("a b"),
                Some("with \"quote\""),
                Some("back\\slash"),
                None,
                Some("NULL"),
                Some(""),
            ])
        );
        assert_eq!(
            parse(&texts, r#"{plain,"{braces}","a,b",\NULL,日本語}"#),
            strings(&[
                Some("plain"),
                Some("{braces}"),
                Some("a,b"),
                Some("NULL"),
                Some("日本語"),
            ])
        );
        assert_eq!(parse(&texts, r#"{"",""}"#), strings(&[Some(""), Some("")]));
    }

    #[test]
    fn elements_use_their_type() {
        assert_eq!(
            parse(&array_of(PgType::Bytea), r#"{"\\x0a",NULL}"#),
            Value::Array(vec![Value::Bytes(vec![0x0a]), Value::Null])
        );
        assert_eq!(
            parse(
                &array_of(PgType::Timestamptz { fraction_digits: 6 }),
                r#"{"2024-01-01 00:00:00+00","2024-01-01 05:30:00+05:30"}"#
            ),
            strings(&[
                Some("2024-01-01T00:00:00.000000Z"),
                Some("2024-01-01T00:00:00.000000Z")
            ])
        );
        assert_eq!(
            parse(
                &array_of(PgType::Decimal {
                    precision: 5,
                    scale: 2
                }),
                "{1.50,-0.01}"
            ),
            Value::Array(vec![
                Value::Decimal {
                    unscaled: vec![0x00, 0x96],
                    scale: 2
                },
                Value::Decimal {
                    unscaled: vec![0xff],
                    scale: 2
                },
            ])
        );
        let moods = array_of(PgType::Enum {
            type_name: "l1.mood".into(),
            labels: vec!["sad".into(), "happy".into()],
        });
        assert_eq!(
            parse(&moods, "{happy,sad}"),
            strings(&[Some("happy"), Some("sad")])
        );
        assert_eq!(
            parse(&array_of(PgType::Bool), "{t,f}"),
            Value::Array(vec![Value::Bool(true), Value::Bool(false)])
        );
        let boxes = array_of(PgType::Other {
            type_name: "box".into(),
        });
        assert_eq!(
            parse(&boxes, "{(1,1),(0,0);(2,2),(1,1)}"),
            strings(&[Some("(1,1),(0,0)"), Some("(2,2),(1,1)")])
        );
    }

    #[test]
    fn malformed_arrays_are_errors() {
        let ints = array_of(PgType::Int4);
        for bad in [
            "",
            "1,2",
            "{1,2",
            "{1,2}}",
            "{1,,2}",
            "{1,}",
            "{,1}",
            r#"{"1}"#,
            "{1 2,3}",
            "{{{{{{{1}}}}}}}",
            "[0:1]{1,2}",
            "{x}",
            r#"{1"2"}"#,
            "{1}x",
        ] {
            assert!(
                parse_text(&ints, bad.as_bytes()).is_err(),
                "{bad:?} should fail"
            );
        }
        let err = parse_text(&ints, b"{1,x}").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot read integer value "x": not a number of this type"#
        );
        let err = parse_text(&ints, b"{1,2").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot read integer[] value "{1,2": expected a delimiter or '}'"#
        );
    }
}
