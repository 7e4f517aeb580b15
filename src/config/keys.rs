//! Key checks on the raw document, before typed deserialization: unknown keys (named with their
//! full path and the valid keys beside them) and missing required keys (with a line to add).
//!
//! The valid keys come from the field lists serde derives for each section struct, read with a
//! probe deserializer, so adding a field to a struct is all it takes to make its key valid.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use toml::{Table, Value};

use super::overrides::Origins;
use super::{ConfigError, ConfigFile};

/// Rejects keys no section defines and reports the first missing required key.
pub(super) fn check<C: ConfigFile>(document: &Table, origins: &Origins) -> Result<(), ConfigError> {
    check_table(document, "", field_names::<C>(), origins)?;
    for (section, fields) in C::sections() {
        let mut found = Some(document);
        for part in section.split('.') {
            found = found
                .and_then(|table| table.get(part))
                .and_then(Value::as_table);
        }
        if let Some(table) = found {
            check_table(table, section, fields, origins)?;
        }
    }
    for &(section, key, example) in C::REQUIRED {
        // A section that is not a table gets serde's type error instead.
        let missing = match document.get(section) {
            None => true,
            Some(Value::Table(table)) => !table.contains_key(key),
            Some(_) => false,
        };
        if missing {
            return Err(ConfigError::Missing {
                key: format!("{section}.{key}"),
                section,
                example,
            });
        }
    }
    Ok(())
}

fn check_table(
    table: &Table,
    section: &str,
    valid: &[&str],
    origins: &Origins,
) -> Result<(), ConfigError> {
    match table.keys().find(|key| !valid.contains(&key.as_str())) {
        None => Ok(()),
        Some(unknown) => {
            let (key, place) = if section.is_empty() {
                (unknown.clone(), "at the top level (sections)".to_owned())
            } else {
                (format!("{section}.{unknown}"), format!("in [{section}]"))
            };
            Err(ConfigError::UnknownKey {
                var: origins.var_for(&key).map(str::to_owned),
                key,
                place,
                valid: valid.join(", "),
            })
        }
    }
}

/// The field names serde derives for the struct `T`, in declaration order.
pub(super) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe always fails once it has recorded the fields; the failure carries nothing.
    let _ = T::deserialize(FieldProbe {
        fields: &mut fields,
    });
    fields
}

/// A deserializer that records the field list a derived struct asks for, then stops.
struct FieldProbe<'a> {
    fields: &'a mut &'static [&'static str],
}

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe: not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.fields = fields;
        Err(de::Error::custom("field probe: fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SourceConfig, TopicSection};
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
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<SourceConfig, ConfigError> {
        let env = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
        SourceConfig::from_toml_str(text, env)
    }

    #[test]
    fn field_names_follow_the_structs() {
        assert_eq!(
            field_names::<SourceConfig>(),
            ["postgres", "capture", "kafka", "schema_registry", "metrics"]
        );
        assert_eq!(
            field_names::<TopicSection>(),
            ["partitions", "replication_factor", "cleanup_policy"]
        );
    }

    #[test]
    fn unknown_key_in_a_section() {
        let text = MINIMAL.replace("[capture]", "[capture]\nslott = \"x\"");
        assert_eq!(
            load(&text, &[]).unwrap_err().to_string(),
            "unknown key `capture.slott`; the valid keys in [capture] are: slot, publication, \
             tables, exclude_tables, exclude_columns, snapshot, heartbeat_interval, streaming, \
             status_interval, snapshot_workers, snapshot_chunk_size, incremental_chunk_size, \
             signal_table, discovery_interval, ddl, decimal_handling_mode, \
             interval_handling_mode, money_fraction_digits, time_precision_mode, \
             binary_handling_mode, hstore_handling_mode"
        );
    }

    #[test]
    fn unknown_key_from_the_environment() {
        let err = load(MINIMAL, &[("PGCDC__CAPTURE__SLOTT", "x")]).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "unknown key `capture.slott` (set by PGCDC__CAPTURE__SLOTT); the valid keys in \
                 [capture] are: slot, publication,"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_section_and_nested_keys() {
        let text = format!("{MINIMAL}\n[kafak]\nbrokers = \"x\"\n");
        assert_eq!(
            load(&text, &[]).unwrap_err().to_string(),
            "unknown key `kafak`; the valid keys at the top level (sections) are: postgres, \
             capture, kafka, schema_registry, metrics"
        );
        let text = format!("{MINIMAL}\n[kafka.topic]\npartition = 3\n");
        assert_eq!(
            load(&text, &[]).unwrap_err().to_string(),
            "unknown key `kafka.topic.partition`; the valid keys in [kafka.topic] are: \
             partitions, replication_factor, cleanup_policy"
        );
        let text = format!("{MINIMAL}\n[metrics]\nlisten = \"\"\npath = \"/m\"\n");
        assert_eq!(
            load(&text, &[]).unwrap_err().to_string(),
            "unknown key `metrics.path`; the valid keys in [metrics] are: listen"
        );
    }

    #[test]
    fn options_are_free_form() {
        let text = format!("{MINIMAL}\n[kafka.options]\n\"anything.at.all\" = \"1\"\n");
        let config = load(&text, &[]).unwrap();
        assert_eq!(config.kafka.options["anything.at.all"], "1");
    }

    #[test]
    fn missing_required_keys() {
        let cases = [
            (
                "url = \"postgresql://replicator@127.0.0.1:5432/shop\"",
                "missing key `postgres.url`: add it under [postgres], e.g. url = \
                 \"postgresql://replicator@127.0.0.1:5432/shop\"",
            ),
            (
                "tables = [\"l1.*\"]",
                "missing key `capture.tables`: add it under [capture], e.g. tables = [\"public.*\"]",
            ),
            (
                "brokers = \"127.0.0.1:9092\"",
                "missing key `kafka.brokers`: add it under [kafka], e.g. brokers = \"127.0.0.1:9092\"",
            ),
            (
                "topic_prefix = \"shop\"",
                "missing key `kafka.topic_prefix`: add it under [kafka], e.g. topic_prefix = \"shop\"",
            ),
            (
                "format = \"json\"",
                "missing key `kafka.format`: add it under [kafka], e.g. format = \"avro\" (or \"json\")",
            ),
        ];
        for (line, expected) in cases {
            let text = MINIMAL.replace(line, "");
            assert_eq!(load(&text, &[]).unwrap_err().to_string(), expected);
        }
        assert_eq!(
            load("", &[]).unwrap_err().to_string(),
            "missing key `postgres.url`: add it under [postgres], e.g. url = \
             \"postgresql://replicator@127.0.0.1:5432/shop\""
        );
    }

    #[test]
    fn a_section_that_is_not_a_table() {
        let text = format!("metrics = 5\n{MINIMAL}");
        assert_eq!(
            load(&text, &[]).unwrap_err().to_string(),
            "`metrics`: invalid type: integer `5`, expected struct MetricsSection"
        );
        let text = MINIMAL.replace("[postgres]\n", "postgres = \"db\"\n#");
        assert_eq!(
            load(&text, &[]).unwrap_err().to_string(),
            "`postgres`: invalid type: string \"db\", expected struct PostgresSection"
        );
    }
}
