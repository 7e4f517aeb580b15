//! The walsender connection before streaming: startup, authentication and replication commands.

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;

use super::codec::Backend;
use super::connection::Connection;
use super::error::{log_notice, malformed, ServerError};
use super::stream::ReplicationStream;
use super::ReplicationError;
use crate::lsn::Lsn;
use crate::pg::{PgConnectOptions, SslMode, TlsConfig, SESSION_SETTINGS};

/// What IDENTIFY_SYSTEM reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's unique system identifier.
    pub systemid: u64,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database connected to.
    pub dbname: Option<String>,
}

/// What CREATE_REPLICATION_SLOT does with the snapshot of the slot's starting point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Nothing: streaming only.
    NoExport,
    /// Export it for `SET TRANSACTION SNAPSHOT` until the next command on this connection.
    Export,
    /// Use it in the current transaction of this connection (after `BEGIN ISOLATION LEVEL REPEATABLE READ`).
    Use,
}

impl SnapshotAction {
    fn keyword(self) -> &'static str {
        match self {
            SnapshotAction::NoExport => "NOEXPORT_SNAPSHOT",
            SnapshotAction::Export => "EXPORT_SNAPSHOT",
            SnapshotAction::Use => "USE_SNAPSHOT",
        }
    }

    fn option_value(self) -> &'static str {
        match self {
            SnapshotAction::NoExport => "nothing",
            SnapshotAction::Export => "export",
            SnapshotAction::Use => "use",
        }
    }
}

/// What CREATE_REPLICATION_SLOT reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// Changes committed after this LSN are streamed from the slot.
    pub consistent_point: Lsn,
    /// The exported snapshot, with [`SnapshotAction::Export`].
    pub snapshot_name: Option<String>,
}

/// A logical replication (walsender) connection, ready for commands.
pub struct ReplicationClient {
    conn: Connection,
    server_version_num: Option<u32>,
}

impl ReplicationClient {
    /// TCP (+ TLS per sslmode via SSLRequest), StartupMessage with `replication=database` and
    /// the [`SESSION_SETTINGS`], then authentication: trust, cleartext, md5, SCRAM-SHA-256
    /// (with channel binding, SCRAM-SHA-256-PLUS, over TLS when the server offers it).
    pub async fn connect(
        options: &PgConnectOptions,
    ) -> Result<ReplicationClient, ReplicationError> {
        let attempt = async {
            let tls = TlsConfig::new(options)?;
            let conn = Connection::open(options, tls.as_ref()).await?;
            let encrypted = conn.is_tls();
            match Self::startup(conn, options).await {
                // libpq: under `prefer`, a login refused over TLS (say, a `hostnossl` line)
                // is tried again without TLS.
                Err(error)
                    if encrypted
                        && options.sslmode == SslMode::Prefer
                        && error.sqlstate().is_some_and(|code| code.starts_with("28")) =>
                {
                    tracing::info!(%error, "login over TLS refused, retrying without TLS (sslmode=prefer)");
                    let conn = Connection::open(options, None).await?;
                    Self::startup(conn, options).await
                }
                result => result,
            }
        };
        match tokio::time::timeout(options.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ReplicationError::ConnectTimeout {
                target: options.to_string(),
                timeout: options.connect_timeout,
            }),
        }
    }

    async fn startup(
        mut conn: Connection,
        options: &PgConnectOptions,
    ) -> Result<ReplicationClient, ReplicationError> {
        let mut parameters = vec![
            ("user", options.user.as_str()),
            ("database", options.dbname.as_str()),
            ("replication", "database"),
            ("application_name", options.application_name.as_str()),
        ];
        parameters.extend(SESSION_SETTINGS);
        frontend::startup_message(parameters, &mut conn.write).map_err(|e| {
            ReplicationError::Protocol(format!(
                "the user, database or application name cannot be sent: {e}"
            ))
        })?;
        conn.flush().await?;
        authenticate(&mut conn, options).await?;

        let mut server_version_num = None;
        loop {
            match conn.read_backend().await? {
                Backend::Message(Message::ParameterStatus(body)) => {
                    if body.name().map_err(malformed)? == "server_version" {
                        server_version_num = parse_server_version(body.value().map_err(malformed)?);
                    }
                }
                Backend::Message(Message::BackendKeyData(_)) => {}
                Backend::Message(Message::NoticeResponse(body)) => log_notice(body.fields()),
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(startup_error(&body, &options.user)?)
                }
                Backend::Message(Message::ReadyForQuery(_)) => break,
                _ => {
                    return Err(ReplicationError::Protocol(
                        "unexpected message after authentication".into(),
                    ))
                }
            }
        }
        Ok(ReplicationClient {
            conn,
            server_version_num,
        })
    }

    /// IDENTIFY_SYSTEM: the cluster's identity and current WAL position.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = single_row(&rows, "IDENTIFY_SYSTEM")?;
        let systemid = column(row, 0, "systemid")?;
        let timeline = column(row, 1, "timeline")?;
        let xlogpos = column(row, 2, "xlogpos")?;
        Ok(SystemIdentity {
            systemid: systemid
                .parse()
                .map_err(|_| bad_value("systemid", systemid))?,
            timeline: timeline
                .parse()
                .map_err(|_| bad_value("timeline", timeline))?,
            xlogpos: xlogpos.parse().map_err(|_| bad_value("xlogpos", xlogpos))?,
            dbname: row.get(3).cloned().flatten(),
        })
    }

    /// `CREATE_REPLICATION_SLOT "<slot>" [TEMPORARY] LOGICAL pgoutput …`: with the option list
    /// (`(SNAPSHOT 'export')`) on PostgreSQL 15 and later, else with the older keywords.
    pub async fn create_logical_slot(
        &mut self,
        slot: &str,
        temporary: bool,
        snapshot: SnapshotAction,
    ) -> Result<CreatedSlot, ReplicationError> {
        let rows = self
            .simple_query(&create_slot_command(
                slot,
                temporary,
                snapshot,
                self.server_version_num.is_some_and(|v| v >= 150_000),
            ))
            .await?;
        let row = single_row(&rows, "CREATE_REPLICATION_SLOT")?;
        let consistent_point = column(row, 1, "consistent_point")?;
        Ok(CreatedSlot {
            slot_name: column(row, 0, "slot_name")?.to_string(),
            consistent_point: consistent_point
                .parse()
                .map_err(|_| bad_value("consistent_point", consistent_point))?,
            snapshot_name: row.get(2).cloned().flatten(),
        })
    }

    /// Any simple query on the walsender connection (e.g. "SHOW server_version_num"): the rows
    /// of all its result sets, as text. An error is returned once the server is ready again,
    /// so the connection stays usable.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        frontend::query(sql, &mut self.conn.write)
            .map_err(|e| ReplicationError::Protocol(format!("the query cannot be sent: {e}")))?;
        self.conn.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.conn.read_backend().await? {
                Backend::Message(Message::DataRow(body)) => {
                    let buffer = body.buffer();
                    let mut ranges = body.ranges();
                    let mut row = Vec::new();
                    while let Some(range) = ranges.next().map_err(malformed)? {
                        row.push(match range {
                            None => None,
                            Some(range) => Some(
                                buffer
                                    .get(range)
                                    .and_then(|value| std::str::from_utf8(value).ok())
                                    .ok_or_else(|| {
                                        ReplicationError::Protocol(
                                            "a result value is not UTF-8 text".into(),
                                        )
                                    })?
                                    .to_string(),
                            ),
                        });
                    }
                    rows.push(row);
                }
                Backend::Message(
                    Message::RowDescription(_)
                    | Message::CommandComplete(_)
                    | Message::EmptyQueryResponse
                    | Message::ParameterStatus(_),
                ) => {}
                Backend::Message(Message::NoticeResponse(body)) => log_notice(body.fields()),
                Backend::Message(Message::ErrorResponse(body)) => {
                    let server = ServerError::from_fields(body.fields())?;
                    error.get_or_insert(ReplicationError::Server(Box::new(server)));
                }
                Backend::Message(Message::ReadyForQuery(_)) => break,
                _ => {
                    return Err(ReplicationError::Protocol(format!(
                        "unexpected copy or extended-protocol message in answer to {sql:?}; \
                         START_REPLICATION goes through start_logical_replication"
                    )))
                }
            }
        }
        error.map_or(Ok(rows), Err)
    }

    /// `START_REPLICATION SLOT "<slot>" LOGICAL <lsn> ("name" 'value', ...)`. Names and values
    /// are quoted here; a value's own syntax is the plugin's (pgoutput's `publication_names`
    /// is a comma-separated list of identifiers, e.g. `"pub"`).
    pub async fn start_logical_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<ReplicationStream, ReplicationError> {
        let command = start_replication_command(slot, start, options);
        frontend::query(&command, &mut self.conn.write).map_err(|e| {
            ReplicationError::Protocol(format!("START_REPLICATION cannot be sent: {e}"))
        })?;
        self.conn.flush().await?;
        loop {
            match self.conn.read_backend().await? {
                Backend::CopyBothResponse => return Ok(ReplicationStream::new(self.conn)),
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(ReplicationError::Server(Box::new(
                        ServerError::from_fields(body.fields())?,
                    )))
                }
                Backend::Message(Message::NoticeResponse(body)) => log_notice(body.fields()),
                Backend::Message(Message::ParameterStatus(_)) => {}
                _ => {
                    return Err(ReplicationError::Protocol(
                        "unexpected answer to START_REPLICATION".into(),
                    ))
                }
            }
        }
    }

    /// PostgreSQL's version as `server_version_num` (e.g. 150008), from the startup's ParameterStatus.
    pub fn server_version_num(&self) -> Option<u32> {
        self.server_version_num
    }

    /// Ends the session with Terminate.
    pub async fn close(self) -> Result<(), ReplicationError> {
        self.conn.terminate().await
    }
}

/// Answers the server's authentication requests until AuthenticationOk.
async fn authenticate(
    conn: &mut Connection,
    options: &PgConnectOptions,
) -> Result<(), ReplicationError> {
    let auth_error = |reason: String| ReplicationError::Auth {
        user: options.user.clone(),
        reason,
        server: None,
    };
    let password = |method: &str| {
        options.password.as_deref().ok_or_else(|| {
            auth_error(format!(
                "the server asks for a password ({method}) but none was given: put it in the \
                 URL (postgresql://USER:PASSWORD@HOST/DB) or in password_file"
            ))
        })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let Backend::Message(message) = conn.read_backend().await? else {
            return Err(ReplicationError::Protocol(
                "CopyBothResponse during authentication".into(),
            ));
        };
        match message {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let password = password("password")?;
                frontend::password_message(password.as_bytes(), &mut conn.write)
                    .map_err(|e| auth_error(format!("the password cannot be sent: {e}")))?;
            }
            Message::AuthenticationMd5Password(body) => {
                let password = password("md5")?;
                let hash = md5_hash(options.user.as_bytes(), password.as_bytes(), body.salt());
                frontend::password_message(hash.as_bytes(), &mut conn.write)
                    .map_err(|e| auth_error(format!("the password cannot be sent: {e}")))?;
            }
            Message::AuthenticationSasl(body) => {
                let password = password("scram-sha-256")?;
                let (mut has_scram, mut has_plus) = (false, false);
                let mut mechanisms = body.mechanisms();
                while let Some(mechanism) = mechanisms.next().map_err(malformed)? {
                    has_scram |= mechanism == SCRAM_SHA_256;
                    has_plus |= mechanism == SCRAM_SHA_256_PLUS;
                }
                let binding = conn.channel_binding();
                let (mechanism, channel_binding) =
                    match binding {
                        Some(data) if has_plus => (
                            SCRAM_SHA_256_PLUS,
                            ChannelBinding::tls_server_end_point(data),
                        ),
                        // "y": we could bind, but the server did not offer it.
                        Some(_) if has_scram => (SCRAM_SHA_256, ChannelBinding::unrequested()),
                        None if has_scram => (SCRAM_SHA_256, ChannelBinding::unsupported()),
                        _ => return Err(auth_error(
                            "the server offers no SASL mechanism pgcdc supports (SCRAM-SHA-256)"
                                .into(),
                        )),
                    };
                let state = ScramSha256::new(password.as_bytes(), channel_binding);
                frontend::sasl_initial_response(mechanism, state.message(), &mut conn.write)
                    .map_err(|e| auth_error(format!("SCRAM: {e}")))?;
                scram = Some(state);
            }
            Message::AuthenticationSaslContinue(body) => {
                let state = scram.as_mut().ok_or_else(|| {
                    ReplicationError::Protocol("SASL continue without a SASL exchange".into())
                })?;
                state
                    .update(body.data())
                    .map_err(|e| auth_error(format!("SCRAM exchange failed: {e}")))?;
                frontend::sasl_response(state.message(), &mut conn.write)
                    .map_err(|e| auth_error(format!("SCRAM: {e}")))?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let state = scram.as_mut().ok_or_else(|| {
                    ReplicationError::Protocol("SASL final without a SASL exchange".into())
                })?;
                state.finish(body.data()).map_err(|e| {
                    auth_error(format!(
                        "the server failed to prove it knows the password: {e}"
                    ))
                })?;
                continue;
            }
            Message::ErrorResponse(body) => return Err(startup_error(&body, &options.user)?),
            Message::NoticeResponse(body) => {
                log_notice(body.fields());
                continue;
            }
            Message::AuthenticationKerberosV5
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationSspi
            | Message::AuthenticationScmCredential => {
                return Err(auth_error(
                    "the server asks for GSSAPI, SSPI or Kerberos authentication, which pgcdc \
                     does not support: use scram-sha-256 (or md5, password, cert) in pg_hba.conf"
                        .into(),
                ))
            }
            _ => {
                return Err(ReplicationError::Protocol(
                    "unexpected message during authentication".into(),
                ))
            }
        }
        conn.flush().await?;
    }
}

/// An ErrorResponse before the session is ready: SQLSTATE class 28 (pg_hba.conf rejection,
/// wrong password, unknown role) is an authentication failure.
fn startup_error(
    body: &ErrorResponseBody,
    user: &str,
) -> Result<ReplicationError, ReplicationError> {
    let server = ServerError::from_fields(body.fields())?;
    Ok(if server.code.starts_with("28") {
        let mut reason = server.message.clone();
        if let Some(hint) = &server.hint {
            reason.push_str(&format!(" (HINT: {hint})"));
        }
        ReplicationError::Auth {
            user: user.to_string(),
            reason,
            server: Some(Box::new(server)),
        }
    } else {
        ReplicationError::Server(Box::new(server))
    })
}

/// `"name"` with embedded quotes doubled: the replication grammar's quoted identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'` with embedded quotes doubled; the replication grammar has no backslash escapes.
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn create_slot_command(
    slot: &str,
    temporary: bool,
    snapshot: SnapshotAction,
    option_list: bool,
) -> String {
    let action = if option_list {
        format!("(SNAPSHOT {})", quote_literal(snapshot.option_value()))
    } else {
        snapshot.keyword().to_owned()
    };
    format!(
        "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput {action}",
        quote_ident(slot),
        if temporary { " TEMPORARY" } else { "" },
    )
}

fn start_replication_command(slot: &str, start: Lsn, options: &[(&str, &str)]) -> String {
    let mut command = format!(
        "START_REPLICATION SLOT {} LOGICAL {start}",
        quote_ident(slot)
    );
    if !options.is_empty() {
        let options: Vec<String> = options
            .iter()
            .map(|(name, value)| format!("{} {}", quote_ident(name), quote_literal(value)))
            .collect();
        command.push_str(&format!(" ({})", options.join(", ")));
    }
    command
}

/// "15.8 (Debian 15.8-1.pgdg120+1)" → 150008, "9.6.24" → 90624, "17beta1" → 170000.
fn parse_server_version(text: &str) -> Option<u32> {
    let numeric = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = numeric.split('.').map(|part| part.parse::<u32>().ok());
    let major = parts.next().flatten()?;
    let minor = parts.next().flatten().unwrap_or(0);
    if major >= 10 {
        major.checked_mul(10_000)?.checked_add(minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        major
            .checked_mul(10_000)?
            .checked_add(minor.checked_mul(100)?)?
            .checked_add(patch)
    }
}

fn single_row<'a>(
    rows: &'a [Vec<Option<String>>],
    command: &str,
) -> Result<&'a [Option<String>], ReplicationError> {
    match rows {
        [row] => Ok(row),
        _ => Err(ReplicationError::Protocol(format!(
            "{command} returned {} rows instead of one",
            rows.len()
        ))),
    }
}

fn column<'a>(
    row: &'a [Option<String>],
    index: usize,
    name: &str,
) -> Result<&'a str, ReplicationError> {
    row.get(index)
        .and_then(Option::as_deref)
        .ok_or_else(|| ReplicationError::Protocol(format!("the result lacks the column {name}")))
}

fn bad_value(name: &str, value: &str) -> ReplicationError {
    ReplicationError::Protocol(format!(
        "the server sent {name} = {value:?}, which is not valid"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_replication_quotes_names_and_values() {
        assert_eq!(
            start_replication_command(
                "slot_a",
                Lsn(0x16_B374_D848),
                &[
                    ("proto_version", "1"),
                    ("publication_names", "\"pub\",\"it's\""),
                    ("messages", "true"),
                ],
            ),
            "START_REPLICATION SLOT \"slot_a\" LOGICAL 16/B374D848 (\"proto_version\" '1', \
             \"publication_names\" '\"pub\",\"it''s\"', \"messages\" 'true')"
        );
        assert_eq!(
            start_replication_command("we\"ird", Lsn::ZERO, &[]),
            "START_REPLICATION SLOT \"we\"\"ird\" LOGICAL 0/0"
        );
    }

    #[test]
    fn create_slot_commands() {
        assert_eq!(
            create_slot_command("s", false, SnapshotAction::NoExport, false),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT"
        );
        assert_eq!(
            create_slot_command("s", true, SnapshotAction::Export, false),
            "CREATE_REPLICATION_SLOT \"s\" TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"
        );
        assert_eq!(
            create_slot_command("s", false, SnapshotAction::Export, true),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        assert_eq!(
            create_slot_command("s", false, SnapshotAction::Use, false),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput USE_SNAPSHOT"
        );
    }

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("15.8 (Debian 15.8-1.pgdg120+1)"),
            Some(150008)
        );
        assert_eq!(parse_server_version("16.0"), Some(160000));
        assert_eq!(parse_server_version("17beta1"), Some(170000));
        assert_eq!(parse_server_version("9.6.24"), Some(90624));
        assert_eq!(parse_server_version("unknown"), None);
        assert_eq!(parse_server_version("99999999999.1"), None);
    }
}
