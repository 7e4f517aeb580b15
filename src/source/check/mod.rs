//! Prerequisite checks, for `cdc-source check` and before `run` starts: one line per check,
//! and each failure names the statement or setting that fixes it (and whether PostgreSQL
//! must restart).

use std::fmt;
use std::time::Duration;

use tokio_postgres::Client;

mod tables;

use super::replication::{ReplicationClient, ReplicationError};
use super::{ddl, producer_for, setup, Prepared, SourceError};
use crate::config::RegistryAccess;
use crate::config::{Format, SourceConfig};
use crate::encode::registry::RegistryClient;
use crate::kafka::progress::Progress;
use crate::pg::{PgConnectError, PgConnectOptions, SslMode};

/// How long the broker may take to answer a metadata request.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The comment that marks the objects pgcdc created, so teardown drops only those.
pub const CREATED_BY: &str = "created by pgcdc";

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// Works, but worth knowing.
    Warn,
    /// pgcdc cannot run until this is fixed.
    Fail,
}

/// One check's line.
#[derive(Debug, Clone)]
pub struct CheckLine {
    /// The outcome.
    pub verdict: Verdict,
    /// What was checked.
    pub name: &'static str,
    /// What was found, and for a failure the fix.
    pub message: String,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{verdict:<4}  {}: {}", self.name, self.message)
    }
}

/// Every check's line, in the order they ran.
#[derive(Debug, Default)]
pub struct Report {
    /// The lines.
    pub lines: Vec<CheckLine>,
}

impl Report {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|line| line.verdict == Verdict::Fail)
    }

    /// The failed lines, one per line.
    pub fn failures(&self) -> String {
        self.lines
            .iter()
            .filter(|line| line.verdict == Verdict::Fail)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn add(&mut self, verdict: Verdict, name: &'static str, message: impl Into<String>) {
        self.lines.push(CheckLine {
            verdict,
            name,
            message: message.into(),
        });
    }
}

/// Why the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `cdc-source check`: everything must be ready now.
    Check,
    /// Before `run`: a slot still held by an exiting predecessor is waited for, not refused.
    Start,
}

/// Runs every check against the configured PostgreSQL, broker and schema registry.
pub async fn check(config: &SourceConfig, purpose: Purpose) -> Result<Report, SourceError> {
    let prepared = Prepared::from_config(config)?;
    let mut report = Report::default();
    match prepared.options.connect_sql().await {
        Ok(client) => {
            report.add(Verdict::Ok, "connection", prepared.options.to_string());
            PostgresChecks {
                client: &client,
                config,
                prepared: &prepared,
                report: &mut report,
            }
            .run(purpose)
            .await?;
        }
        Err(error) => report.add(
            Verdict::Fail,
            "connection",
            connection_fix(&error, &prepared.options),
        ),
    }
    broker_check(config, &mut report);
    registry_check(config, &mut report).await;
    Ok(report)
}

fn connection_fix(error: &PgConnectError, options: &PgConnectOptions) -> String {
    let server = match error {
        PgConnectError::Connect { source, .. } => source.as_db_error(),
        _ => None,
    };
    match server.map(|db| (db.code().code(), db.message())) {
        Some((_, message)) if message.starts_with("no pg_hba.conf entry") => {
            format!("{message}: {}", hba_fix(message, options))
        }
        Some(("28P01", message)) => format!(
            "{message}: check the password in postgres.url or postgres.password_file"
        ),
        _ => format!(
            "{error}: check postgres.url, that the server runs and listens on {}:{} (listen_addresses)",
            options.host, options.port
        ),
    }
}

/// The `pg_hba.conf` line that admits the connection a rejection message describes.
pub fn hba_fix(message: &str, options: &PgConnectOptions) -> String {
    let quoted_after = |label: &str| {
        message
            .split(&format!("{label} \""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
    };
    let address = quoted_after("host").unwrap_or_else(|| options.host.clone());
    let mask = if address.contains(':') { 128 } else { 32 };
    let kind = if message.contains("no encryption") {
        "host"
    } else {
        "hostssl"
    };
    format!(
        "add the line `{kind} {} {} {address}/{mask} scram-sha-256` to pg_hba.conf (before any line that rejects it) and run SELECT pg_reload_conf(); (no restart needed)",
        quoted_after("database").unwrap_or_else(|| options.dbname.clone()),
        quoted_after("user").unwrap_or_else(|| options.user.clone()),
    )
}

fn broker_check(config: &SourceConfig, report: &mut Report) {
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(crate::lsn::Lsn::ZERO)));
    // librdkafka logs every reconnection attempt to a broker that is down; the FAIL line says
    // it once.
    let mut quiet = config.clone();
    quiet
        .kafka
        .options
        .entry("log_level".to_owned())
        .or_insert_with(|| "2".to_owned());
    let reached = producer_for(&quiet, progress)
        .and_then(|producer| producer.check_connectivity(BROKER_TIMEOUT));
    match reached {
        Ok(()) => report.add(Verdict::Ok, "broker", config.kafka.brokers.clone()),
        Err(error) => report.add(
            Verdict::Fail,
            "broker",
            format!(
                "{error}: check kafka.brokers and that the broker runs and is reachable from here"
            ),
        ),
    }
}

async fn registry_check(config: &SourceConfig, report: &mut Report) {
    if config.kafka.format != Format::Avro {
        return;
    }
    let Some(url) = &config.schema_registry.url else {
        report.add(
            Verdict::Fail,
            "schema registry",
            "kafka.format = \"avro\" needs schema_registry.url (or set kafka.format = \"json\")",
        );
        return;
    };
    let access = match config.schema_registry.access() {
        Ok(access) => access.unwrap_or_else(|| RegistryAccess::url(url)),
        Err(error) => {
            report.add(Verdict::Fail, "schema registry", error.to_string());
            return;
        }
    };
    let answer = match RegistryClient::connect(&access) {
        Ok(registry) => registry.subjects().await.map(|_| registry),
        Err(error) => Err(error),
    };
    match answer {
        Ok(registry) => report.add(Verdict::Ok, "schema registry", registry.url().to_string()),
        Err(error) => report.add(
            Verdict::Fail,
            "schema registry",
            format!("{error}: check schema_registry.url (and its username, password and TLS files) and that the registry runs (or set kafka.format = \"json\")"),
        ),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// The checks that need a SQL connection.
struct PostgresChecks<'a> {
    client: &'a Client,
    config: &'a SourceConfig,
    prepared: &'a Prepared,
    report: &'a mut Report,
}

impl PostgresChecks<'_> {
    async fn run(mut self, purpose: Purpose) -> Result<(), SourceError> {
        self.encryption().await?;
        self.version().await?;
        self.wal_level().await?;
        self.capacity().await?;
        let may_replicate = self.role().await?;
        if may_replicate {
            self.replication_connection().await;
        }
        let tables = self.tables().await?;
        if !tables.is_empty() {
            self.privileges(&tables);
            self.replica_identity(&tables);
            self.publication(&tables).await?;
        }
        self.slot(purpose).await?;
        self.signal_table().await?;
        self.ddl_capture().await
    }

    /// Whether DDL capture is on, possible with this role, and what is lost without it.
    async fn ddl_capture(&mut self) -> Result<(), SourceError> {
        let facts = ddl::facts(self.client).await?;
        let (verdict, message) =
            ddl::DdlDecision::new(self.config.capture.ddl, &facts).line(&facts);
        self.report.add(verdict, "DDL capture", message);
        Ok(())
    }

    /// TLS is only a warning: a loopback or private network may not need it.
    async fn encryption(&mut self) -> Result<(), SourceError> {
        let encrypted: bool = self
            .client
            .query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .await
            .map_err(SourceError::sql("read the connection's TLS state"))?
            .get(0);
        let mode = self.prepared.options.sslmode;
        let (verdict, message) = match (encrypted, mode) {
            (true, SslMode::VerifyFull) => (Verdict::Ok, "TLS, server certificate and host name verified".to_owned()),
            (true, _) => (Verdict::Warn, format!("TLS, but sslmode={} does not verify the server's host name: use sslmode=verify-full&sslrootcert=<CA file> in postgres.url", mode.as_str())),
            (false, _) if is_loopback(&self.prepared.options.host) => (Verdict::Ok, "not encrypted (loopback)".to_owned()),
            (false, _) => (Verdict::Warn, format!("not encrypted (sslmode={}): set ssl = on on the server and sslmode=verify-full&sslrootcert=<CA file> in postgres.url", mode.as_str())),
        };
        self.report.add(verdict, "TLS", message);
        Ok(())
    }

    async fn version(&mut self) -> Result<(), SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await
            .map_err(SourceError::sql("read the server version"))?;
        let (number, text): (i32, String) = (row.get(0), row.get(1));
        if number < 100_000 {
            self.report.add(
                Verdict::Fail,
                "server version",
                format!(
                    "PostgreSQL {text}: pgoutput needs PostgreSQL 10 or later; upgrade the server"
                ),
            );
        } else {
            self.report
                .add(Verdict::Ok, "server version", format!("PostgreSQL {text}"));
        }
        Ok(())
    }

    async fn wal_level(&mut self) -> Result<(), SourceError> {
        let level: String = self
            .client
            .query_one("SELECT current_setting('wal_level')", &[])
            .await
            .map_err(SourceError::sql("read wal_level"))?
            .get(0);
        if level == "logical" {
            self.report.add(Verdict::Ok, "wal_level", level);
        } else {
            self.report.add(
                Verdict::Fail,
                "wal_level",
                format!("wal_level is {level}: set `wal_level = logical` in postgresql.conf (or run ALTER SYSTEM SET wal_level = logical;) and restart PostgreSQL (a restart is needed; on RDS set rds.logical_replication = 1 in the parameter group, on Cloud SQL the flag cloudsql.logical_decoding = on)"),
            );
        }
        Ok(())
    }

    async fn capacity(&mut self) -> Result<(), SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('max_replication_slots')::int, \
                        (SELECT count(*)::int FROM pg_replication_slots), \
                        (SELECT coalesce(string_agg(slot_name, ', ' ORDER BY slot_name), '') FROM pg_replication_slots), \
                        EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1), \
                        current_setting('max_wal_senders')::int, \
                        (SELECT count(*)::int FROM pg_stat_replication)",
                &[&self.config.capture.slot],
            )
            .await
            .map_err(SourceError::sql("count replication slots and WAL senders"))?;
        let (max_slots, slots, names, ours): (i32, i32, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if ours || slots < max_slots {
            self.report.add(
                Verdict::Ok,
                "replication slots",
                format!("{slots} of max_replication_slots = {max_slots} in use"),
            );
        } else {
            self.report.add(
                Verdict::Fail,
                "replication slots",
                format!("all {max_slots} replication slots are in use ({names}): drop one that is no longer needed (SELECT pg_drop_replication_slot('name');) or set `max_replication_slots = {}` in postgresql.conf and restart PostgreSQL (a restart is needed)", max_slots + 1),
            );
        }
        let (max_senders, senders): (i32, i32) = (row.get(4), row.get(5));
        if senders < max_senders {
            self.report.add(
                Verdict::Ok,
                "WAL senders",
                format!("{senders} of max_wal_senders = {max_senders} in use"),
            );
        } else {
            self.report.add(
                Verdict::Fail,
                "WAL senders",
                format!("all {max_senders} WAL senders are busy: set `max_wal_senders = {}` in postgresql.conf and restart PostgreSQL (a restart is needed)", max_senders + 1),
            );
        }
        Ok(())
    }

    /// Whether the role may open a replication connection.
    async fn role(&mut self) -> Result<bool, SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT current_user::text, r.rolsuper, r.rolreplication, \
                        EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication'), \
                        EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                                WHERE g.rolname = 'rds_replication' AND m.member = r.oid), \
                        EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloudsqlsuperuser') \
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await
            .map_err(SourceError::sql("read the role's attributes"))?;
        let user: String = row.get(0);
        let (superuser, replication, rds, rds_member, cloud_sql): (bool, bool, bool, bool, bool) =
            (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        let fix = if rds {
            format!("on RDS / Aurora, as the master user: GRANT rds_replication TO {user};")
        } else if cloud_sql {
            format!("on Cloud SQL, as a cloudsqlsuperuser: ALTER USER {user} WITH REPLICATION;")
        } else {
            format!("as a superuser: ALTER ROLE {user} WITH REPLICATION;")
        };
        if superuser {
            self.report.add(Verdict::Warn, "replication role", format!("{user} is a superuser: it works, but a role with only REPLICATION and SELECT is safer"));
        } else if replication || rds_member {
            self.report.add(
                Verdict::Ok,
                "replication role",
                format!("{user} has REPLICATION"),
            );
        } else {
            self.report.add(
                Verdict::Fail,
                "replication role",
                format!("role {user} may not open replication connections: {fix}"),
            );
            return Ok(false);
        }
        Ok(true)
    }

    async fn replication_connection(&mut self) {
        let options = &self.prepared.options;
        let outcome = match ReplicationClient::connect(options).await {
            Ok(mut client) => client.identify_system().await.map(|_| ()),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => self
                .report
                .add(Verdict::Ok, "replication connection", "IDENTIFY_SYSTEM answered"),
            Err(ReplicationError::Auth {
                server: Some(server),
                ..
            }) if server.message.starts_with("no pg_hba.conf entry") => self.report.add(
                Verdict::Fail,
                "replication connection",
                format!("{}: {}", server.message, hba_fix(&server.message, options)),
            ),
            Err(error) => self.report.add(
                Verdict::Fail,
                "replication connection",
                format!("{error}: pg_hba.conf must admit a replication=database connection of this role to this database"),
            ),
        }
    }

    async fn slot(&mut self, purpose: Purpose) -> Result<(), SourceError> {
        let slot = &self.config.capture.slot;
        let name = "replication slot";
        let Some(row) = setup::slot_row(self.client, slot).await? else {
            let message =
                format!("{slot} does not exist yet; `cdc-source init` or `run` creates it");
            self.report.add(Verdict::Ok, name, message);
            return Ok(());
        };
        let mode = self.config.capture.snapshot;
        if row.wal_status == "lost" && mode.snapshots_after_lost_slot() {
            let message = format!(
                "{slot} was invalidated (wal_status = lost): the changes since its confirmed position are gone; capture.snapshot = \"{}\" drops it and takes a new snapshot when cdc-source starts",
                mode.name()
            );
            self.report.add(Verdict::Warn, name, message);
        } else if let Some(problem) = row.unusable(slot) {
            self.report.add(Verdict::Fail, name, problem);
        } else if let Some(holder) = &row.holder {
            // A cdc-source of this configuration connects with its application_name: checking
            // a running pipeline finds its slot held by it, which is how it should be. Before
            // `run`, any holder is one this cdc-source has to wait for.
            let ours = holder.application_name == self.prepared.options.application_name;
            let (verdict, message) = match purpose {
                Purpose::Check if ours => (
                    Verdict::Ok,
                    format!(
                        "{slot} streaming, held by cdc-source pid {} ({}), lag {}",
                        holder.pid, holder.who, row.lag
                    ),
                ),
                Purpose::Check => (Verdict::Fail, in_use(slot, holder)),
                Purpose::Start => (Verdict::Warn, in_use(slot, holder)),
            };
            self.report.add(verdict, name, message);
        } else {
            let message = format!("{slot} (pgoutput, wal_status {})", row.wal_status);
            self.report.add(Verdict::Ok, name, message);
        }
        Ok(())
    }

    async fn signal_table(&mut self) -> Result<(), SourceError> {
        let Some((schema, table)) = &self.prepared.signal_table else {
            return Ok(());
        };
        let row = self
            .client
            .query_one(
                "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL, \
                        has_database_privilege(current_database(), 'CREATE')",
                &[schema, table],
            )
            .await
            .map_err(SourceError::sql("look up the signal table"))?;
        let (exists, may_create): (bool, bool) = (row.get(0), row.get(1));
        let name = format!("{schema}.{table}");
        if exists {
            // pgcdc reads signals from the stream, so the table only needs to be published.
            self.report.add(Verdict::Ok, "signal table", name);
        } else if may_create {
            self.report.add(
                Verdict::Ok,
                "signal table",
                format!("{name} does not exist yet; `cdc-source init` or `run` creates it"),
            );
        } else {
            self.report.add(Verdict::Fail, "signal table", format!("{name} does not exist and this role may not create it: run GRANT CREATE ON DATABASE {} TO {};", self.prepared.options.dbname, self.prepared.options.user));
        }
        Ok(())
    }
}

/// The line for a slot another connection streams from, with how to free it.
fn in_use(slot: &str, holder: &setup::SlotHolder) -> String {
    let (pid, who) = (holder.pid, &holder.who);
    format!("{slot} is in use by another connection (pid {pid}, {who}): stop that client, or end it with SELECT pg_terminate_backend({pid});")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> PgConnectOptions {
        PgConnectOptions::parse("postgresql://cdc@db.example:5432/shop").unwrap()
    }

    #[test]
    fn a_rejection_becomes_the_line_that_admits_it() {
        let message = r#"no pg_hba.conf entry for host "10.1.2.3", user "cdc", database "shop", no encryption"#;
        assert!(hba_fix(message, &options())
            .starts_with("add the line `host shop cdc 10.1.2.3/32 scram-sha-256` to pg_hba.conf"));
        let tls =
            r#"no pg_hba.conf entry for host "::1", user "cdc", database "shop", SSL encryption"#;
        assert!(hba_fix(tls, &options()).contains("`hostssl shop cdc ::1/128 scram-sha-256`"));
    }

    #[test]
    fn lines_print_verdict_name_and_message() {
        let line = CheckLine {
            verdict: Verdict::Fail,
            name: "wal_level",
            message: "wal_level is replica".into(),
        };
        assert_eq!(line.to_string(), "FAIL  wal_level: wal_level is replica");
        let mut report = Report::default();
        report.add(Verdict::Ok, "a", "fine");
        assert!(!report.failed());
        report.lines.push(line);
        assert!(report.failed());
        assert_eq!(report.failures(), "FAIL  wal_level: wal_level is replica");
    }
}
