//! `PGCDC__<SECTION>__<KEY>` environment overrides, applied to the raw TOML document so they go
//! through the same key checks, deserialization and validation as the file.
//!
//! A value is read as a TOML value when it parses as one (`5`, `true`, `["l1.*","l2.t"]`), else
//! taken as a string (`127.0.0.1:9093`, `zstd`). Under `kafka.options` the variable's last parts
//! name a librdkafka property: lower-cased, `_` becomes `.` (`..._COMPRESSION_TYPE` →
//! `compression.type`), and the value is taken verbatim since every property is a string.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::{Table, Value};

use super::{ConfigError, ENV_PREFIX};

/// Appended to type errors in values that came from the environment.
pub(super) const TYPE_HINT: &str = "; values of PGCDC__ variables are read as TOML when they \
     parse as TOML, so quote a string that looks like a number or boolean ('\"123\"') and write \
     a list as [\"a.b\",\"c.d\"]";

/// Which environment variable set which key (full key path → variable name).
#[derive(Debug, Default)]
pub(super) struct Origins(BTreeMap<String, String>);

impl Origins {
    /// The variable that set `key` or a table containing it (`capture.tables[1]` belongs to
    /// `capture.tables`).
    pub(super) fn var_for(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(set, _)| {
                key.strip_prefix(set.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
            .max_by_key(|(set, _)| set.len())
            .map(|(_, var)| var.as_str())
    }

    /// Adds the originating variable to a validation error about a key it set.
    pub(super) fn attach(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid {
                key,
                var: None,
                message,
            } => ConfigError::Invalid {
                var: self.var_for(&key).map(str::to_owned),
                key,
                message,
            },
            other => other,
        }
    }
}

/// The process's `PGCDC__` variables; a non-UTF-8 value is an error, other variables are skipped.
pub(super) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|name| name.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            message: "the value is not valid UTF-8".to_owned(),
        })?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

/// Applies every `PGCDC__` variable of `env` to `document` (in name order, so the result does
/// not depend on the environment's order); other variables are ignored.
pub(super) fn apply(
    document: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Origins, ConfigError> {
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    let mut origins = Origins::default();
    for (var, raw) in vars {
        let (path, value) = key_path(&var, &raw)?;
        set(document, &path, value).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        origins.0.insert(path.join("."), var);
    }
    Ok(origins)
}

/// The key path a variable names and the value it sets.
fn key_path(var: &str, raw: &str) -> Result<(Vec<String>, Value), ConfigError> {
    let rest = var.get(ENV_PREFIX.len()..).unwrap_or_default();
    let parts: Vec<&str> = rest.split("__").collect();
    if parts.len() < 2 || parts.iter().any(|part| part.is_empty()) {
        return Err(ConfigError::Env {
            var: var.to_owned(),
            message: "name a key as PGCDC__<SECTION>__<KEY> (upper case, `__` between levels), \
                      e.g. PGCDC__KAFKA__BROKERS"
                .to_owned(),
        });
    }
    let is_option = parts.len() > 2
        && parts
            .first()
            .is_some_and(|p| p.eq_ignore_ascii_case("kafka"))
        && parts
            .get(1)
            .is_some_and(|p| p.eq_ignore_ascii_case("options"));
    if is_option {
        let property = parts
            .get(2..)
            .unwrap_or_default()
            .iter()
            .map(|part| part.to_ascii_lowercase().replace('_', "."))
            .collect::<Vec<_>>()
            .join(".");
        let path = vec!["kafka".to_owned(), "options".to_owned(), property];
        return Ok((path, Value::String(raw.to_owned())));
    }
    let path = parts.iter().map(|part| part.to_ascii_lowercase()).collect();
    Ok((path, parse_value(raw)))
}

/// `raw` as a TOML value when it is one, else as a string.
fn parse_value(raw: &str) -> Value {
    Value::deserialize(toml::de::ValueDeserializer::new(raw))
        .unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// Sets `path` in `document`, creating missing tables on the way.
fn set(document: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("names no key".to_owned());
    };
    let mut table = document;
    for (depth, part) in parents.iter().enumerate() {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(inner) => inner,
            _ => {
                let walked = path.get(..=depth).unwrap_or_default().join(".");
                return Err(format!(
                    "`{walked}` is a value, not a section, so it has no key `{last}`; \
                     set {} instead",
                    walked_var(path.get(..=depth).unwrap_or_default())
                ));
            }
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn walked_var(path: &[String]) -> String {
    let upper: Vec<String> = path.iter().map(|p| p.to_ascii_uppercase()).collect();
    format!("{ENV_PREFIX}{}", upper.join("__"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{ConfigFile, Format, SourceConfig};
    use super::*;

    const MINIMAL: &str = r#"
        [postgres]
        url = "postgresql://replicator@127.0.0.1:5432/shop"
        [capture]
        tables = ["l1.*"]
        [kafka]
        brokers = "127.0.0.1:9092"
        topic_prefix = "shop"
        format = "json"
        [kafka.options]
        "compression.type" = "lz4"
    "#;

    fn load(env: &[(&str, &str)]) -> Result<SourceConfig, ConfigError> {
        let env = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
        SourceConfig::from_toml_str(MINIMAL, env)
    }

    #[test]
    fn overrides_win_over_the_file() {
        let config = load(&[
            ("PGCDC__KAFKA__BROKERS", "127.0.0.1:9093"),
            ("PGCDC__KAFKA__FORMAT", "avro"),
            ("PGCDC__SCHEMA_REGISTRY__URL", "http://127.0.0.1:8081"),
            ("PGCDC__CAPTURE__STREAMING", "true"),
            ("PGCDC__CAPTURE__HEARTBEAT_INTERVAL", "0"),
            ("PGCDC__CAPTURE__STATUS_INTERVAL", "250ms"),
            ("PGCDC__KAFKA__TOPIC__PARTITIONS", "6"),
            ("PGCDC__METRICS__LISTEN", ""),
        ])
        .unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9093");
        assert_eq!(config.kafka.format, Format::Avro);
        assert_eq!(
            config.schema_registry.url.as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert!(config.capture.streaming);
        assert_eq!(config.capture.heartbeat_interval, None);
        assert_eq!(config.capture.status_interval, Duration::from_millis(250));
        assert_eq!(config.kafka.topic.partitions, Some(6));
        assert_eq!(config.metrics.listen, None);
    }

    #[test]
    fn arrays_are_parsed_as_toml() {
        let config = load(&[
            ("PGCDC__CAPTURE__TABLES", r#"["l1.*","l2.t"]"#),
            ("PGCDC__CAPTURE__EXCLUDE_COLUMNS", r#"["l1.users.ssn"]"#),
        ])
        .unwrap();
        assert_eq!(config.capture.tables, ["l1.*", "l2.t"]);
        assert_eq!(config.capture.exclude_columns, ["l1.users.ssn"]);
    }

    #[test]
    fn options_names_turn_underscores_into_dots() {
        let config = load(&[
            ("PGCDC__KAFKA__OPTIONS__COMPRESSION_TYPE", "zstd"),
            ("PGCDC__KAFKA__OPTIONS__LINGER_MS", "5"),
            ("PGCDC__KAFKA__OPTIONS__SASL__MECHANISM", "PLAIN"),
            ("PGCDC__KAFKA__OPTIONS__SASL_PASSWORD", "0x10"),
        ])
        .unwrap();
        let options: Vec<(&str, &str)> = config
            .kafka
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            options,
            [
                ("compression.type", "zstd"),
                ("linger.ms", "5"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.password", "0x10"),
            ]
        );
    }

    #[test]
    fn other_variables_are_ignored() {
        let config = load(&[
            ("PGCDC_KAFKA_BROKERS", "ignored:1"),
            ("pgcdc__kafka__brokers", "ignored:2"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
    }

    #[test]
    fn malformed_names() {
        for var in [
            "PGCDC__KAFKA",
            "PGCDC__KAFKA____BROKERS",
            "PGCDC__",
            "PGCDC____X",
        ] {
            assert_eq!(
                load(&[(var, "x")]).unwrap_err().to_string(),
                format!(
                    "environment variable {var}: name a key as PGCDC__<SECTION>__<KEY> (upper \
                     case, `__` between levels), e.g. PGCDC__KAFKA__BROKERS"
                )
            );
        }
        assert_eq!(
            load(&[("PGCDC__KAFKA__BROKERS__HOST", "x")])
                .unwrap_err()
                .to_string(),
            "environment variable PGCDC__KAFKA__BROKERS__HOST: `kafka.brokers` is a value, not \
             a section, so it has no key `host`; set PGCDC__KAFKA__BROKERS instead"
        );
    }

    #[test]
    fn type_errors_from_the_environment_name_the_variable() {
        let err = load(&[("PGCDC__KAFKA__TOPIC_PREFIX", "2024")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`kafka.topic_prefix` (set by PGCDC__KAFKA__TOPIC_PREFIX): invalid type: \
                 integer `2024`, expected a string{TYPE_HINT}"
            )
        );
        let config = load(&[("PGCDC__KAFKA__TOPIC_PREFIX", "\"2024\"")]).unwrap();
        assert_eq!(config.kafka.topic_prefix, "2024");

        let err = load(&[("PGCDC__CAPTURE__TABLES", "l1.*")]).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "`capture.tables` (set by PGCDC__CAPTURE__TABLES): invalid type: string \"l1.*\", \
                 expected a sequence;"
            ),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_name_the_variable() {
        let err = load(&[("PGCDC__CAPTURE__SLOT", "Bad-Slot")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`capture.slot` (set by PGCDC__CAPTURE__SLOT): "),
            "{err}"
        );
        let err = load(&[("PGCDC__CAPTURE__TABLES", r#"["l1.t", "nodot"]"#)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`capture.tables` (set by PGCDC__CAPTURE__TABLES): "),
            "{err}"
        );
    }

    #[test]
    fn values_are_not_a_way_to_inject_keys() {
        let raw = "\"a:1\"\nformat = \"avro\"";
        let config = load(&[("PGCDC__KAFKA__BROKERS", raw)]).unwrap();
        assert_eq!(config.kafka.brokers, raw);
        assert_eq!(config.kafka.format, Format::Json);
    }

    #[test]
    fn origins_match_nested_keys_only_at_boundaries() {
        let mut origins = Origins::default();
        origins.0.insert(
            "capture.tables".to_owned(),
            "PGCDC__CAPTURE__TABLES".to_owned(),
        );
        origins
            .0
            .insert("kafka.topic".to_owned(), "PGCDC__KAFKA__TOPIC".to_owned());
        assert_eq!(
            origins.var_for("capture.tables[1]"),
            Some("PGCDC__CAPTURE__TABLES")
        );
        assert_eq!(
            origins.var_for("capture.tables"),
            Some("PGCDC__CAPTURE__TABLES")
        );
        assert_eq!(origins.var_for("capture.tables_x"), None);
        assert_eq!(
            origins.var_for("kafka.topic.partitions"),
            Some("PGCDC__KAFKA__TOPIC")
        );
        assert_eq!(origins.var_for("kafka.topic_prefix"), None);
        assert_eq!(origins.var_for("capture"), None);
    }
}
