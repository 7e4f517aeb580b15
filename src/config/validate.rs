//! Checks on the typed configuration that serde cannot express; each error names the key and
//! the fix. Checks run in file order and the first failure is reported.

use super::{ConfigError, Format, SourceConfig, TableFilter, MAX_IDENTIFIER_LEN};

/// Far beyond money's two digits; keeps a typo from making huge unscaled values.
const MAX_MONEY_FRACTION_DIGITS: u32 = 18;

/// The longest status interval: half of PostgreSQL's default wal_sender_timeout.
const MAX_STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// More snapshot connections than this only contend for the server's cores and slots.
const MAX_SNAPSHOT_WORKERS: usize = 64;

const POSTGRES_URL_EXAMPLE: &str = "\"postgresql://replicator@127.0.0.1:5432/shop\"";
const CLEANUP_POLICIES: &[&str] = &["delete", "compact", "compact,delete", "delete,compact"];

impl SourceConfig {
    /// Checks every value's shape and the rules between keys (e.g. Avro needs a registry URL).
    pub(super) fn validate_source(&self) -> Result<(), ConfigError> {
        check_postgres_url(&self.postgres.url)
            .map_err(|message| ConfigError::invalid("postgres.url", message))?;
        self.validate_capture()?;
        self.validate_kafka()?;
        self.validate_schema_registry()
    }

    fn validate_capture(&self) -> Result<(), ConfigError> {
        let capture = &self.capture;
        let slot_ok = !capture.slot.is_empty()
            && capture.slot.len() <= MAX_IDENTIFIER_LEN
            && capture
                .slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !slot_ok {
            return Err(ConfigError::invalid(
                "capture.slot",
                format!(
                    "\"{}\" is not a valid replication slot name: use 1 to {MAX_IDENTIFIER_LEN} \
                     lower-case letters, digits and underscores, e.g. \"pgcdc\"",
                    capture.slot
                ),
            ));
        }
        if capture.publication.is_empty() || capture.publication.len() > MAX_IDENTIFIER_LEN {
            return Err(ConfigError::invalid(
                "capture.publication",
                format!(
                    "\"{}\" is not a valid publication name: use 1 to {MAX_IDENTIFIER_LEN} bytes, \
                     e.g. \"pgcdc\"",
                    capture.publication
                ),
            ));
        }
        if capture.tables.is_empty() {
            return Err(ConfigError::invalid(
                "capture.tables",
                "list at least one table pattern, e.g. tables = [\"public.*\"]",
            ));
        }
        TableFilter::new(capture)?;
        if capture.status_interval.is_zero() {
            return Err(ConfigError::invalid(
                "capture.status_interval",
                "must be longer than 0, e.g. \"1s\"",
            ));
        }
        // While back-pressured the status timer is all that keeps the walsender from timing
        // out (wal_sender_timeout, 60s by default).
        if capture.status_interval > MAX_STATUS_INTERVAL {
            return Err(ConfigError::invalid(
                "capture.status_interval",
                "must be at most 30s, below the server's wal_sender_timeout, e.g. \"1s\"",
            ));
        }
        if capture.money_fraction_digits > MAX_MONEY_FRACTION_DIGITS {
            return Err(ConfigError::invalid(
                "capture.money_fraction_digits",
                format!(
                    "must be between 0 and {MAX_MONEY_FRACTION_DIGITS}, e.g. 2 (money's own \
                     precision)"
                ),
            ));
        }
        if !(1..=MAX_SNAPSHOT_WORKERS).contains(&capture.snapshot_workers) {
            return Err(ConfigError::invalid(
                "capture.snapshot_workers",
                format!("must be between 1 and {MAX_SNAPSHOT_WORKERS} connections, e.g. 4"),
            ));
        }
        for (key, value) in [
            ("capture.snapshot_chunk_size", capture.snapshot_chunk_size),
            (
                "capture.incremental_chunk_size",
                capture.incremental_chunk_size,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(
                    key,
                    "must be at least 1 row, e.g. 2048",
                ));
            }
        }
        if let Some(table) = &capture.signal_table {
            let parts: Vec<&str> = table.split('.').collect();
            if parts.len() != 2 || parts.iter().any(|part| part.is_empty()) {
                return Err(ConfigError::invalid(
                    "capture.signal_table",
                    format!("\"{table}\" is not schema.table: name the signal table with its schema, e.g. \"pgcdc.signal\", or set \"\" to disable incremental snapshots"),
                ));
            }
        }
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        if kafka.brokers.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                "list at least one broker as host:port (comma-separated), e.g. \"127.0.0.1:9092\"",
            ));
        }
        let prefix_ok = !kafka.topic_prefix.is_empty()
            && kafka
                .topic_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !prefix_ok {
            return Err(ConfigError::invalid(
                "kafka.topic_prefix",
                format!(
                    "\"{}\" cannot start a topic name: use one or more of A-Z a-z 0-9 . _ -, \
                     e.g. \"shop\"",
                    kafka.topic_prefix
                ),
            ));
        }
        let topic = &kafka.topic;
        for (key, value) in [
            ("kafka.topic.partitions", topic.partitions),
            ("kafka.topic.replication_factor", topic.replication_factor),
        ] {
            if let Some(value) = value.filter(|v| *v < 1) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value} is not allowed: use 1 or more, or remove the key for the broker's default"),
                ));
            }
        }
        if let Some(policy) = &topic.cleanup_policy {
            if !CLEANUP_POLICIES.contains(&policy.as_str()) {
                return Err(ConfigError::invalid(
                    "kafka.topic.cleanup_policy",
                    format!(
                        "\"{policy}\" is not a cleanup policy: use \"delete\", \"compact\" or \
                         \"compact,delete\", or remove the key for the broker's default"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_schema_registry(&self) -> Result<(), ConfigError> {
        const KEY: &str = "schema_registry.url";
        match &self.schema_registry.url {
            None if self.kafka.format == Format::Avro => Err(ConfigError::invalid(
                KEY,
                "required when kafka.format = \"avro\": set the registry's address, e.g. \
                 \"http://127.0.0.1:8081\", or use kafka.format = \"json\"",
            )),
            _ => self.schema_registry.validate(),
        }
    }
}

/// Checks the shape of a libpq URL: the scheme and a host, in the authority or as `?host=`
/// (a socket directory); libpq itself parses the rest when connecting.
pub(super) fn check_postgres_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    else {
        return Err(format!(
            "must start with postgresql:// or postgres://, e.g. {POSTGRES_URL_EXAMPLE}"
        ));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let host_param = tail
        .split_once('?')
        .map(|(_, query)| query.split(['&', '#']))
        .into_iter()
        .flatten()
        .any(|param| param.strip_prefix("host=").is_some_and(|h| !h.is_empty()));
    if hosts.is_empty() && !host_param {
        return Err(format!(
            "names no host: write it like {POSTGRES_URL_EXAMPLE} (or give a socket directory as \
             ?host=/var/run/postgresql)"
        ));
    }
    Ok(())
}

pub(super) fn check_http_url(text: &str) -> Result<(), String> {
    const EXAMPLE: &str = "\"http://127.0.0.1:8081\"";
    let url = url::Url::parse(text)
        .map_err(|e| format!("\"{text}\" is not a URL ({e}): write it like {EXAMPLE}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "\"{text}\" must use http:// or https://, e.g. {EXAMPLE}"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{text}\" names no host: write it like {EXAMPLE}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::ConfigFile;
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

    /// The error for MINIMAL with `var` set to `value` (read as TOML).
    fn error_with(var: &str, value: &str) -> String {
        let env = [(var.to_owned(), value.to_owned())];
        match SourceConfig::from_toml_str(MINIMAL, env) {
            Ok(_) => format!("{var}={value} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn accepted(var: &str, value: &str) -> bool {
        let env = [(var.to_owned(), value.to_owned())];
        SourceConfig::from_toml_str(MINIMAL, env).is_ok()
    }

    const URL: &str = "PGCDC__POSTGRES__URL";

    #[test]
    fn postgres_url_shape() {
        for url in [
            "postgresql://replicator@127.0.0.1:5432/shop?sslmode=prefer",
            "postgres://db/shop",
            "postgresql://app:pw@h1:5432,h2:5433/shop",
            "postgresql://[::1]:5432/shop",
            "postgresql:///shop?host=/var/run/postgresql",
        ] {
            assert!(accepted(URL, url), "{url}");
        }
        assert_eq!(
            error_with(URL, "mysql://db/shop"),
            "`postgres.url` (set by PGCDC__POSTGRES__URL): must start with postgresql:// or \
             postgres://, e.g. \"postgresql://replicator@127.0.0.1:5432/shop\""
        );
        assert_eq!(
            error_with(URL, "postgresql://user@/shop"),
            "`postgres.url` (set by PGCDC__POSTGRES__URL): names no host: write it like \
             \"postgresql://replicator@127.0.0.1:5432/shop\" (or give a socket directory as \
             ?host=/var/run/postgresql)"
        );
        assert!(error_with(URL, "postgresql:///shop?host=")
            .starts_with("`postgres.url` (set by PGCDC__POSTGRES__URL): names no host"));
    }

    #[test]
    fn url_errors_do_not_echo_the_url() {
        let err = error_with(URL, "postgresql://app:hunter2@/shop");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn slot_names() {
        const SLOT: &str = "PGCDC__CAPTURE__SLOT";
        assert!(accepted(SLOT, "pgcdc_2"));
        assert!(accepted(SLOT, &"a".repeat(63)));
        for bad in ["Pgcdc", "pg-cdc", "\"\"", &"a".repeat(64)] {
            let shown = bad.trim_matches('"');
            assert_eq!(
                error_with(SLOT, bad),
                format!(
                    "`capture.slot` (set by PGCDC__CAPTURE__SLOT): \"{shown}\" is not a valid \
                     replication slot name: use 1 to 63 lower-case letters, digits and \
                     underscores, e.g. \"pgcdc\""
                )
            );
        }
    }

    #[test]
    fn publication_names() {
        const PUBLICATION: &str = "PGCDC__CAPTURE__PUBLICATION";
        assert!(accepted(PUBLICATION, "My Publication"));
        assert_eq!(
            error_with(PUBLICATION, "\"\""),
            "`capture.publication` (set by PGCDC__CAPTURE__PUBLICATION): \"\" is not a valid \
             publication name: use 1 to 63 bytes, e.g. \"pgcdc\""
        );
        assert!(error_with(PUBLICATION, &"p".repeat(64))
            .starts_with("`capture.publication` (set by PGCDC__CAPTURE__PUBLICATION): \"ppp"));
    }

    #[test]
    fn tables_must_not_be_empty() {
        assert_eq!(
            error_with("PGCDC__CAPTURE__TABLES", "[]"),
            "`capture.tables` (set by PGCDC__CAPTURE__TABLES): list at least one table pattern, \
             e.g. tables = [\"public.*\"]"
        );
    }

    #[test]
    fn status_interval_must_be_positive_and_below_the_sender_timeout() {
        assert_eq!(
            error_with("PGCDC__CAPTURE__STATUS_INTERVAL", "31s"),
            "`capture.status_interval` (set by PGCDC__CAPTURE__STATUS_INTERVAL): must be at most \
             30s, below the server's wal_sender_timeout, e.g. \"1s\""
        );
        assert_eq!(
            error_with("PGCDC__CAPTURE__STATUS_INTERVAL", "0s"),
            "`capture.status_interval` (set by PGCDC__CAPTURE__STATUS_INTERVAL): must be longer \
             than 0, e.g. \"1s\""
        );
        assert_eq!(
            error_with("PGCDC__CAPTURE__STATUS_INTERVAL", "soon"),
            "`capture.status_interval` (set by PGCDC__CAPTURE__STATUS_INTERVAL): invalid \
             duration \"soon\" (expected number at 0); write a duration like \"500ms\", \"10s\" \
             or \"1m\""
        );
    }

    #[test]
    fn brokers_and_topic_prefix() {
        assert_eq!(
            error_with("PGCDC__KAFKA__BROKERS", " "),
            "`kafka.brokers` (set by PGCDC__KAFKA__BROKERS): list at least one broker as \
             host:port (comma-separated), e.g. \"127.0.0.1:9092\""
        );
        assert!(accepted("PGCDC__KAFKA__TOPIC_PREFIX", "shop-eu_1.v2"));
        for bad in ["\"\"", "shop/eu", "shop eu", "bütik"] {
            let shown = bad.trim_matches('"');
            assert_eq!(
                error_with("PGCDC__KAFKA__TOPIC_PREFIX", bad),
                format!(
                    "`kafka.topic_prefix` (set by PGCDC__KAFKA__TOPIC_PREFIX): \"{shown}\" cannot \
                     start a topic name: use one or more of A-Z a-z 0-9 . _ -, e.g. \"shop\""
                )
            );
        }
    }

    #[test]
    fn topic_settings() {
        assert!(accepted(
            "PGCDC__KAFKA__TOPIC",
            "{partitions = 6, replication_factor = 3, cleanup_policy = \"compact,delete\"}"
        ));
        assert_eq!(
            error_with("PGCDC__KAFKA__TOPIC__PARTITIONS", "0"),
            "`kafka.topic.partitions` (set by PGCDC__KAFKA__TOPIC__PARTITIONS): 0 is not \
             allowed: use 1 or more, or remove the key for the broker's default"
        );
        assert_eq!(
            error_with("PGCDC__KAFKA__TOPIC__REPLICATION_FACTOR", "-1"),
            "`kafka.topic.replication_factor` (set by PGCDC__KAFKA__TOPIC__REPLICATION_FACTOR): \
             -1 is not allowed: use 1 or more, or remove the key for the broker's default"
        );
        assert_eq!(
            error_with("PGCDC__KAFKA__TOPIC__CLEANUP_POLICY", "compacted"),
            "`kafka.topic.cleanup_policy` (set by PGCDC__KAFKA__TOPIC__CLEANUP_POLICY): \
             \"compacted\" is not a cleanup policy: use \"delete\", \"compact\" or \
             \"compact,delete\", or remove the key for the broker's default"
        );
    }

    #[test]
    fn avro_needs_a_registry_url() {
        assert_eq!(
            error_with("PGCDC__KAFKA__FORMAT", "avro"),
            "`schema_registry.url`: required when kafka.format = \"avro\": set the registry's \
             address, e.g. \"http://127.0.0.1:8081\", or use kafka.format = \"json\""
        );
        let env = [
            ("PGCDC__KAFKA__FORMAT".to_owned(), "avro".to_owned()),
            (
                "PGCDC__SCHEMA_REGISTRY__URL".to_owned(),
                "https://registry.example:8081/base".to_owned(),
            ),
        ];
        assert!(SourceConfig::from_toml_str(MINIMAL, env).is_ok());
    }

    #[test]
    fn registry_url_shape() {
        const REGISTRY: &str = "PGCDC__SCHEMA_REGISTRY__URL";
        assert_eq!(
            error_with(REGISTRY, "127.0.0.1:8081"),
            "`schema_registry.url` (set by PGCDC__SCHEMA_REGISTRY__URL): \"127.0.0.1:8081\" is \
             not a URL (relative URL without a base): write it like \"http://127.0.0.1:8081\""
        );
        assert_eq!(
            error_with(REGISTRY, "ftp://registry:21"),
            "`schema_registry.url` (set by PGCDC__SCHEMA_REGISTRY__URL): \"ftp://registry:21\" \
             must use http:// or https://, e.g. \"http://127.0.0.1:8081\""
        );
    }

    #[test]
    fn metrics_listen_must_be_a_socket_address() {
        assert_eq!(
            error_with("PGCDC__METRICS__LISTEN", "9187"),
            format!(
                "`metrics.listen` (set by PGCDC__METRICS__LISTEN): invalid type: integer `9187`, \
                 expected a string{}",
                super::super::overrides::TYPE_HINT
            )
        );
        assert_eq!(
            error_with("PGCDC__METRICS__LISTEN", "metrics:9187"),
            "`metrics.listen` (set by PGCDC__METRICS__LISTEN): \"metrics:9187\" is not a socket \
             address: write an IP address and port like \"127.0.0.1:9187\" or \"[::]:9187\", or \
             \"\" to turn the endpoint off"
        );
    }
}
