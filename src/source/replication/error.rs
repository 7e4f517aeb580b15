//! What can go wrong on the replication connection, split by what the caller must do.

use std::fmt;
use std::io;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use crate::pg::TlsSetupError;

/// An ErrorResponse (or NoticeResponse) with every field the server sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// ERROR, FATAL or PANIC (NOTICE, WARNING, ... for notices), not localized.
    pub severity: String,
    /// The SQLSTATE code.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The optional secondary message.
    pub detail: Option<String>,
    /// The optional suggestion what to do.
    pub hint: Option<String>,
    /// Cursor position in the query, as sent.
    pub position: Option<String>,
    /// Cursor position in an internally generated query.
    pub internal_position: Option<String>,
    /// The internally generated query.
    pub internal_query: Option<String>,
    /// The context (call stack) of the error.
    pub where_: Option<String>,
    /// Schema of the object concerned.
    pub schema: Option<String>,
    /// Table of the object concerned.
    pub table: Option<String>,
    /// Column of the object concerned.
    pub column: Option<String>,
    /// Data type of the object concerned.
    pub datatype: Option<String>,
    /// Constraint concerned.
    pub constraint: Option<String>,
    /// Server source file that reported it.
    pub file: Option<String>,
    /// Line in that file.
    pub line: Option<String>,
    /// Server routine that reported it.
    pub routine: Option<String>,
}

impl ServerError {
    /// Collects the fields of an ErrorResponse or NoticeResponse body.
    pub(crate) fn from_fields(
        mut fields: ErrorFields<'_>,
    ) -> Result<ServerError, ReplicationError> {
        let mut error = ServerError::default();
        let mut localized_severity = None;
        while let Some(field) = fields.next().map_err(malformed)? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => error.severity = value,
                b'S' => localized_severity = Some(value),
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                b'P' => error.position = Some(value),
                b'p' => error.internal_position = Some(value),
                b'q' => error.internal_query = Some(value),
                b'W' => error.where_ = Some(value),
                b's' => error.schema = Some(value),
                b't' => error.table = Some(value),
                b'c' => error.column = Some(value),
                b'd' => error.datatype = Some(value),
                b'n' => error.constraint = Some(value),
                b'F' => error.file = Some(value),
                b'L' => error.line = Some(value),
                b'R' => error.routine = Some(value),
                // The protocol says unknown field types must be ignored.
                _ => {}
            }
        }
        if error.severity.is_empty() {
            error.severity = localized_severity.unwrap_or_default();
        }
        Ok(error)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(detail) = &self.detail {
            write!(f, "; DETAIL: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; HINT: {hint}")?;
        }
        Ok(())
    }
}

/// Logs a NoticeResponse: warnings as warnings, the rest as information.
pub(crate) fn log_notice(fields: ErrorFields<'_>) {
    match ServerError::from_fields(fields) {
        Ok(notice) if notice.severity == "WARNING" => tracing::warn!(
            code = %notice.code, detail = ?notice.detail, hint = ?notice.hint,
            "postgres: {}", notice.message
        ),
        Ok(notice) => tracing::info!(
            severity = %notice.severity, code = %notice.code, detail = ?notice.detail,
            "postgres: {}", notice.message
        ),
        Err(error) => tracing::warn!(%error, "malformed notice from the server"),
    }
}

/// An accessor of postgres-protocol found a message body malformed.
pub(crate) fn malformed(error: io::Error) -> ReplicationError {
    ReplicationError::Protocol(format!("malformed message from the server: {error}"))
}

/// A failure of the replication connection.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// No address of the host accepted a TCP connection.
    #[error("could not connect to {target}: {source}")]
    Connect {
        /// The URL without password.
        target: String,
        /// The last address's error.
        source: io::Error,
    },
    /// `connect_timeout` passed before the connection was ready.
    #[error("connecting to {target} timed out after {timeout:?}; check that the server is reachable or raise connect_timeout in the URL")]
    ConnectTimeout {
        /// The URL without password.
        target: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// Reading or writing an established connection failed, or the server closed it.
    #[error("replication connection: {0}")]
    Io(#[from] io::Error),
    /// The URL's TLS files could not be loaded.
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    /// TLS could not be negotiated or the server's certificate was refused.
    #[error("TLS with {target} failed: {reason}")]
    Tls {
        /// The URL without password.
        target: String,
        /// What failed, including the certificate check's verdict.
        reason: String,
    },
    /// The login was refused, by the server (pg_hba.conf, wrong password) or by us (no password,
    /// an unsupported method).
    #[error("authentication as user \"{user}\" failed: {reason}")]
    Auth {
        /// The role that tried to log in.
        user: String,
        /// What the server said, or why the client gave up.
        reason: String,
        /// The server's ErrorResponse, when it sent one.
        server: Option<Box<ServerError>>,
    },
    /// The server reported an error.
    #[error("server error: {0}")]
    Server(Box<ServerError>),
    /// The server sent something the protocol does not allow here.
    #[error("replication protocol violation: {0}")]
    Protocol(String),
}

/// SQLSTATEs worth retrying: the server is going away, starting, overloaded, or the slot is
/// still held by a walsender that has not exited yet.
const TRANSIENT_SQLSTATES: [&str; 7] = [
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "55006", // object_in_use: replication slot is active for another PID
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "58030", // io_error
];

impl ReplicationError {
    /// True when retrying later may succeed: a lost connection, a server restarting or overloaded,
    /// a slot still in use. False when the configuration or the server state must change first.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Connect { .. }
            | ReplicationError::ConnectTimeout { .. }
            | ReplicationError::Io(_) => true,
            ReplicationError::Server(error) => {
                let code = error.code.as_str();
                code.starts_with("08")
                    || code.starts_with("53")
                    || TRANSIENT_SQLSTATES.contains(&code)
            }
            ReplicationError::TlsSetup(_)
            | ReplicationError::Tls { .. }
            | ReplicationError::Auth { .. }
            | ReplicationError::Protocol(_) => false,
        }
    }

    /// The SQLSTATE of a server-reported error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplicationError::Server(error) => Some(&error.code),
            ReplicationError::Auth {
                server: Some(error),
                ..
            } => Some(&error.code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> ReplicationError {
        ReplicationError::Server(Box::new(ServerError {
            severity: "FATAL".into(),
            code: code.into(),
            message: "m".into(),
            ..ServerError::default()
        }))
    }

    #[test]
    fn transient_errors() {
        for code in ["57P01", "55006", "53300", "08006"] {
            assert!(server(code).is_transient(), "{code}");
        }
        for code in ["42704", "3D000", "28P01", "XX000"] {
            assert!(!server(code).is_transient(), "{code}");
        }
        assert!(ReplicationError::Io(io::ErrorKind::UnexpectedEof.into()).is_transient());
        assert!(!ReplicationError::Protocol("x".into()).is_transient());
    }

    #[test]
    fn sqlstate_of_server_and_auth_errors() {
        assert_eq!(server("42704").sqlstate(), Some("42704"));
        let auth = ReplicationError::Auth {
            user: "u".into(),
            reason: "r".into(),
            server: Some(Box::new(ServerError {
                code: "28P01".into(),
                ..ServerError::default()
            })),
        };
        assert_eq!(auth.sqlstate(), Some("28P01"));
        assert_eq!(ReplicationError::Protocol("x".into()).sqlstate(), None);
    }

    #[test]
    fn display_includes_detail_and_hint() {
        let error = ServerError {
            severity: "ERROR".into(),
            code: "42704".into(),
            message: "replication slot \"s\" does not exist".into(),
            detail: Some("d".into()),
            hint: Some("h".into()),
            ..ServerError::default()
        };
        assert_eq!(
            ReplicationError::Server(Box::new(error)).to_string(),
            "server error: ERROR: replication slot \"s\" does not exist (SQLSTATE 42704); DETAIL: d; HINT: h"
        );
    }
}
