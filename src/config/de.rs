//! Field deserializers for values TOML has no type for: durations, "empty means none" strings,
//! socket addresses and the librdkafka pass-through map. Their errors say what to write; the key
//! path is added by `serde_path_to_error`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::Value;

const DURATION_EXAMPLE: &str = "write a duration like \"500ms\", \"10s\" or \"1m\"";

/// A duration written as `"500ms"`, `"10s"`, `"1m"` (humantime syntax), or `0` / `"0"`.
pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// As [`duration`], with zero (`"0"`, `"0s"`, `0`) meaning `None` (disabled).
pub(super) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let duration = duration(deserializer)?;
    Ok(Some(duration).filter(|d| !d.is_zero()))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"10s\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text.trim()).map_err(|e| {
            E::custom(format!(
                "invalid duration \"{text}\" ({e}); {DURATION_EXAMPLE}"
            ))
        })
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Duration, E> {
        if number == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::custom(format!(
                "{number} has no unit; {DURATION_EXAMPLE}"
            )))
        }
    }
}

/// A path where `""` means none.
pub(super) fn optional_path<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    Ok(optional_string(deserializer)?.map(PathBuf::from))
}

/// A string where `""` means none.
pub(super) fn optional_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// A socket address (`ip:port`) where `""` means none.
pub(super) fn optional_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let Some(text) = optional_string(deserializer)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        de::Error::custom(format!(
            "\"{text}\" is not a socket address: write an IP address and port like \
             \"127.0.0.1:9187\" or \"[::]:9187\", or \"\" to turn the endpoint off"
        ))
    })
}

/// librdkafka properties: scalar values become strings and nested tables (from unquoted dotted
/// keys such as `compression.type = "lz4"`) are flattened back into dotted names.
pub(super) fn librdkafka_options<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let table = toml::Table::deserialize(deserializer)?;
    let mut options = BTreeMap::new();
    flatten("", table, &mut options).map_err(de::Error::custom)?;
    Ok(options)
}

fn flatten(
    prefix: &str,
    table: toml::Table,
    options: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let text = match value {
            Value::Table(inner) => {
                flatten(&name, inner, options)?;
                continue;
            }
            Value::String(text) => text,
            Value::Integer(number) => number.to_string(),
            Value::Float(number) => number.to_string(),
            Value::Boolean(flag) => flag.to_string(),
            Value::Array(_) | Value::Datetime(_) => {
                return Err(format!(
                    "property \"{name}\" must be a string, number or boolean \
                     (librdkafka takes lists as comma-separated strings)"
                ))
            }
        };
        if options.insert(name.clone(), text).is_some() {
            return Err(format!(
                "property \"{name}\" is given twice (once as a quoted name, once as dotted keys)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "duration")]
        every: Duration,
        #[serde(default, deserialize_with = "optional_duration")]
        heartbeat: Option<Duration>,
        #[serde(default, deserialize_with = "optional_socket_addr")]
        listen: Option<SocketAddr>,
        #[serde(default, deserialize_with = "librdkafka_options")]
        options: BTreeMap<String, String>,
    }

    fn fields(text: &str) -> Result<Fields, String> {
        toml::from_str::<Fields>(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn durations() {
        assert_eq!(
            fields("every = \"500ms\"").unwrap().every,
            Duration::from_millis(500)
        );
        assert_eq!(
            fields("every = \"10s\"").unwrap().every,
            Duration::from_secs(10)
        );
        assert_eq!(
            fields("every = \"1m\"").unwrap().every,
            Duration::from_secs(60)
        );
        assert_eq!(
            fields("every = \"1m 30s\"").unwrap().every,
            Duration::from_secs(90)
        );
        assert_eq!(fields("every = \"0\"").unwrap().every, Duration::ZERO);
        assert_eq!(fields("every = 0").unwrap().every, Duration::ZERO);
        assert_eq!(
            fields("every = \"10x\"").unwrap_err(),
            "invalid duration \"10x\" (unknown time unit \"x\", supported units: ns, us/µs, ms, \
             sec, min, hours, days, weeks, months, years (and few variations)); write a duration \
             like \"500ms\", \"10s\" or \"1m\""
        );
        assert_eq!(
            fields("every = 10").unwrap_err(),
            "10 has no unit; write a duration like \"500ms\", \"10s\" or \"1m\""
        );
        assert_eq!(
            fields("every = true").unwrap_err(),
            "invalid type: boolean `true`, expected a duration string such as \"10s\""
        );
    }

    #[test]
    fn zero_durations_disable() {
        assert_eq!(fields("heartbeat = \"0\"").unwrap().heartbeat, None);
        assert_eq!(fields("heartbeat = \"0s\"").unwrap().heartbeat, None);
        assert_eq!(fields("heartbeat = 0").unwrap().heartbeat, None);
        assert_eq!(
            fields("heartbeat = \"5s\"").unwrap().heartbeat,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(
            fields("listen = \"0.0.0.0:9187\"").unwrap().listen,
            Some("0.0.0.0:9187".parse().unwrap())
        );
        assert_eq!(
            fields("listen = \"[::1]:9187\"").unwrap().listen,
            Some("[::1]:9187".parse().unwrap())
        );
        assert_eq!(fields("listen = \"\"").unwrap().listen, None);
        assert_eq!(
            fields("listen = \"localhost:9187\"").unwrap_err(),
            "\"localhost:9187\" is not a socket address: write an IP address and port like \
             \"127.0.0.1:9187\" or \"[::]:9187\", or \"\" to turn the endpoint off"
        );
    }

    #[test]
    fn options_become_strings_and_dotted_keys_flatten() {
        let text = r#"
            [options]
            "compression.type" = "lz4"
            linger.ms = 5
            enable.idempotence = true
            "batch.size" = 16384
            "retry.backoff.max.ms" = 1.5
        "#;
        let options = fields(text).unwrap().options;
        let options: Vec<(&str, &str)> = options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            options,
            [
                ("batch.size", "16384"),
                ("compression.type", "lz4"),
                ("enable.idempotence", "true"),
                ("linger.ms", "5"),
                ("retry.backoff.max.ms", "1.5"),
            ]
        );
        assert_eq!(
            fields("[options]\n\"bootstrap.servers\" = [\"a:1\"]").unwrap_err(),
            "property \"bootstrap.servers\" must be a string, number or boolean (librdkafka \
             takes lists as comma-separated strings)"
        );
        assert_eq!(
            fields("[options]\n\"linger.ms\" = 5\nlinger = { ms = 6 }").unwrap_err(),
            "property \"linger.ms\" is given twice (once as a quoted name, once as dotted keys)"
        );
    }
}
