//! Connection settings shared by the replication connection and ordinary SQL connections:
//! a libpq-style URL ([`PgConnectOptions::parse`]), libpq's `sslmode` semantics, and
//! [`PgConnectOptions::connect_sql`] for tokio-postgres clients.

mod error;
mod tls;
mod url;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use postgres_openssl::MakeTlsConnector;
use tokio_postgres::NoTls;

pub use error::PgError;
pub use tls::TlsSetupError;
pub(crate) use tls::{tls_server_end_point, TlsConfig};
pub(crate) use url::percent_decode;
pub use url::PgUrlError;

/// libpq's `sslmode`: whether to use TLS and how much of the server's certificate to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS without verification if the server offers it, plain TCP otherwise.
    Prefer,
    /// TLS without verification (with `sslrootcert` given: as `VerifyCa`, like libpq).
    Require,
    /// TLS, the server's certificate chain checked against the root certificate.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The spelling used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Session settings every connection starts with: the pgoutput text values (and snapshot
/// text values) are parsed assuming exactly these output formats.
pub const SESSION_SETTINGS: [(&str, &str); 6] = [
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
];

/// Parsed libpq-style URL: `postgresql://user:password@host:port/dbname?sslmode=...&sslrootcert=...&sslcert=...&sslkey=...&connect_timeout=...&application_name=...`
#[derive(Clone, PartialEq, Eq)]
pub struct PgConnectOptions {
    /// Host name or IP address (TCP only).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Password, from the URL or a password file.
    pub password: Option<String>,
    /// Database name.
    pub dbname: String,
    /// TLS use and verification.
    pub sslmode: SslMode,
    /// CA certificates to verify the server against (default `~/.postgresql/root.crt`).
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate, for `cert` authentication.
    pub sslcert: Option<PathBuf>,
    /// Client certificate's private key.
    pub sslkey: Option<PathBuf>,
    /// Limit on the whole connection setup: TCP, TLS and authentication.
    pub connect_timeout: Duration,
    /// Shown in `pg_stat_activity` and `pg_stat_replication`.
    pub application_name: String,
}

impl PgConnectOptions {
    /// Parses a `postgresql://` (or `postgres://`) URL; see [`PgUrlError`] for what is refused.
    pub fn parse(url: &str) -> Result<Self, PgUrlError> {
        url::parse(url)
    }

    /// The same options with the password replaced (e.g. read from `password_file`).
    pub fn with_password(mut self, password: String) -> Self {
        self.password = Some(password);
        self
    }

    /// An ordinary SQL connection (tokio-postgres) honouring sslmode; spawns the connection task.
    pub async fn connect_sql(&self) -> Result<tokio_postgres::Client, PgConnectError> {
        let tls = TlsConfig::new(self)?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .options(session_options())
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                    tokio_postgres::config::SslMode::Require
                }
            });
        if let Some(password) = &self.password {
            config.password(password);
        }
        let connecting = async {
            match tls {
                None => {
                    let (client, connection) = config.connect(NoTls).await?;
                    tokio::spawn(drive(connection));
                    Ok::<_, tokio_postgres::Error>(client)
                }
                Some(tls) => {
                    let (client, connection) = config.connect(tls.make_tls_connect()).await?;
                    tokio::spawn(drive(connection));
                    Ok(client)
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(PgConnectError::Connect {
                target: self.to_string(),
                source: error.into(),
            }),
            Err(_) => Err(PgConnectError::Timeout {
                target: self.to_string(),
                timeout: self.connect_timeout,
            }),
        }
    }
}

/// [`SESSION_SETTINGS`] as a startup `options` string (`-c name=value`, spaces escaped).
fn session_options() -> String {
    SESSION_SETTINGS
        .iter()
        .map(|(name, value)| format!("-c {name}={}", value.replace(' ', "\\ ")))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::warn!(error = %PgError::from(error), "postgres connection ended");
    }
}

impl TlsConfig {
    /// A tokio-postgres TLS connector with this configuration's verification.
    fn make_tls_connect(self) -> MakeTlsConnector {
        let verify_hostname = self.verify_hostname();
        let mut connector = MakeTlsConnector::new(self.into_connector());
        connector.set_callback(move |config, _host| {
            config.set_verify_hostname(verify_hostname);
            Ok(())
        });
        connector
    }
}

/// Never prints the password.
impl fmt::Display for PgConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "postgresql://{}@{host}:{}/{}?sslmode={}",
            url::encode(&self.user),
            self.port,
            url::encode(&self.dbname),
            self.sslmode
        )
    }
}

/// Never prints the password.
impl fmt::Debug for PgConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// Opening an SQL connection failed.
#[derive(Debug, thiserror::Error)]
pub enum PgConnectError {
    /// The TLS settings could not be loaded.
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    /// The server could not be reached, refused the connection or the login.
    #[error("could not connect to {target}: {source}")]
    Connect {
        /// The URL without password.
        target: String,
        /// What the server or the network said.
        source: PgError,
    },
    /// `connect_timeout` passed before the connection was ready.
    #[error("connecting to {target} timed out after {timeout:?}; check that the server is reachable or raise connect_timeout in the URL")]
    Timeout {
        /// The URL without password.
        target: String,
        /// The limit that passed.
        timeout: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_options_escape_spaces() {
        assert_eq!(
            session_options(),
            "-c client_encoding=UTF8 -c DateStyle=ISO,\\ MDY -c IntervalStyle=postgres \
             -c TimeZone=UTC -c extra_float_digits=3 -c bytea_output=hex"
        );
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let options =
            PgConnectOptions::parse("postgresql://rep%40x:s3cret@[::1]:6543/shop?sslmode=require")
                .unwrap();
        assert_eq!(
            options.to_string(),
            "postgresql://rep%40x@[::1]:6543/shop?sslmode=require"
        );
        let debug = format!("{options:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn with_password_replaces_it() {
        let options = PgConnectOptions::parse("postgresql://u:old@h/d")
            .unwrap()
            .with_password("new".into());
        assert_eq!(options.password.as_deref(), Some("new"));
    }
}
