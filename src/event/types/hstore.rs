//! hstore (the extension's key/value type) → a JSON object, as Debezium's
//! `hstore.handling.mode = json` sends it, or a map of its pairs (`map`).

use super::{PgType, TypeError};

/// Debezium's `hstore.handling.mode`: how hstore values travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HstoreHandling {
    /// `io.debezium.data.Json`: a JSON object as a string.
    #[default]
    Json,
    /// A Connect MAP of string keys to optional string values.
    Map,
}

/// hstore's text form (`"a"=>"1", "b"=>NULL`) → its pairs in the order the server printed them.
pub(super) fn parse_pairs(
    pg_type: &PgType,
    text: &[u8],
) -> Result<Vec<(String, Option<String>)>, TypeError> {
    let malformed = |reason| TypeError::malformed(pg_type, text, reason);
    let text = std::str::from_utf8(text).map_err(|_| malformed("not valid UTF-8"))?;
    let mut rest = text.trim_start();
    let mut pairs = Vec::new();
    while !rest.is_empty() {
        let (key, after_key) = quoted(rest).ok_or_else(|| malformed("expected a quoted key"))?;
        let after_arrow = after_key
            .trim_start()
            .strip_prefix("=>")
            .ok_or_else(|| malformed("expected => after a key"))?
            .trim_start();
        let (value, after_value) = match after_arrow.strip_prefix("NULL") {
            Some(after) => (None, after),
            None => {
                let (value, after) = quoted(after_arrow)
                    .ok_or_else(|| malformed("expected a quoted value or NULL"))?;
                (Some(value), after)
            }
        };
        pairs.push((key, value));
        rest = after_value.trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma.trim_start();
        } else if !rest.is_empty() {
            return Err(malformed("expected , between pairs"));
        }
    }
    Ok(pairs)
}

/// hstore's text form → the JSON object Debezium writes for it: `{"a":"1","b":null}`.
pub(super) fn parse_json(pg_type: &PgType, text: &[u8]) -> Result<String, TypeError> {
    let pairs = parse_pairs(pg_type, text)?;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('{');
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(&mut out, key);
        out.push(':');
        match value {
            Some(value) => push_json_string(&mut out, value),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    Ok(out)
}

/// A double-quoted hstore item at the start of `text` (backslash escapes the next character),
/// and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut item = String::new();
    let mut chars = body.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some((item, &body[index + 1..])),
            '\\' => item.push(chars.next()?.1),
            c => item.push(c),
        }
    }
    None
}

fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::from(text).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<String, TypeError> {
        parse_json(&PgType::Hstore, text.as_bytes())
    }

    #[test]
    fn pairs_become_a_json_object_in_the_servers_order() {
        assert_eq!(json("").unwrap(), "{}");
        assert_eq!(json(r#""a"=>"1""#).unwrap(), r#"{"a":"1"}"#);
        assert_eq!(
            json(r#""a"=>"1", "b"=>NULL, "z"=>"", "c d"=>"x\"y\\z""#).unwrap(),
            r#"{"a":"1","b":null,"z":"","c d":"x\"y\\z"}"#
        );
        assert_eq!(
            json(
                r#""ключ"=>"värde 🎉", "nl"=>"a
b""#
            )
            .unwrap(),
            "{\"ключ\":\"värde 🎉\",\"nl\":\"a\\nb\"}"
        );
    }

    #[test]
    fn malformed_text_is_an_error() {
        for bad in [
            r#""a"=>"#,
            r#""a""1""#,
            r#"a=>"1""#,
            r#""a"=>"1" "b"=>"2""#,
            r#""a"=>"1"#,
        ] {
            assert!(json(bad).is_err(), "{bad}");
        }
    }
}
