//! libpq's URL syntax: `postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]`,
//! percent-decoded, one TCP host.

use std::path::PathBuf;
use std::time::Duration;

use super::{PgConnectOptions, SslMode};

/// PostgreSQL's port unless the URL names another.
const DEFAULT_PORT: u16 = 5432;
/// Like libpq, a URL without a host means the local server (here over TCP, not a socket).
const DEFAULT_HOST: &str = "localhost";
/// libpq waits forever by default; a connector must notice a dead server and retry instead.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Names the connector in `pg_stat_activity` and `pg_stat_replication`.
const DEFAULT_APPLICATION_NAME: &str = "pgcdc";

const EXAMPLE: &str = "postgresql://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=prefer";

/// The query parameters understood, for the error on an unknown one.
const PARAMETERS: &str = "sslmode, sslrootcert, sslcert, sslkey, connect_timeout, \
                          application_name, host, port, user, password, dbname";

/// A PostgreSQL URL that cannot be used; the message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgUrlError {
    /// The scheme is not `postgresql://` or `postgres://`.
    #[error("a PostgreSQL URL starts with postgresql:// or postgres://, as in {EXAMPLE}")]
    Scheme,
    /// The URL has no user name.
    #[error("the PostgreSQL URL names no user: write it as {EXAMPLE}")]
    NoUser,
    /// The port is not a number from 1 to 65535.
    #[error("the port {0:?} in the PostgreSQL URL is not a number from 1 to 65535")]
    Port(String),
    /// libpq's comma-separated host lists are not supported.
    #[error("the PostgreSQL URL names several hosts ({0:?}); pgcdc connects to exactly one")]
    MultipleHosts(String),
    /// An IPv6 address lacks its closing `]`.
    #[error("the host {0:?} in the PostgreSQL URL lacks its closing ']' (write IPv6 addresses as [::1])")]
    Bracket(String),
    /// A `%` is not followed by two hex digits, or the decoded bytes are not UTF-8.
    #[error("the {0} in the PostgreSQL URL is not valid percent-encoding: write special characters as %XX (for example @ as %40, / as %2F, % as %25)")]
    PercentEncoding(&'static str),
    /// A query parameter that pgcdc does not know.
    #[error("unknown parameter {0:?} in the PostgreSQL URL; known parameters: {PARAMETERS}")]
    UnknownParameter(String),
    /// A query parameter written without `=value`.
    #[error("the parameter {0:?} in the PostgreSQL URL has no value: write it as {0}=VALUE")]
    MissingValue(String),
    /// `sslmode` has another value than libpq's five.
    #[error("sslmode={0:?} is not valid: use disable, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    /// `connect_timeout` is not a whole number of seconds.
    #[error("connect_timeout={0:?} is not valid: give whole seconds, such as connect_timeout=10 (0 waits forever)")]
    ConnectTimeout(String),
}

/// Parses a `postgresql://` or `postgres://` URL.
pub(super) fn parse(url: &str) -> Result<PgConnectOptions, PgUrlError> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or(PgUrlError::Scheme)?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (rest, None),
    };
    // The last '@' ends the user info, so an unencoded '@' in a password still works.
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };

    let mut user = None;
    let mut password = None;
    if let Some(userinfo) = userinfo {
        let (name, secret) = match userinfo.split_once(':') {
            Some((name, secret)) => (name, Some(secret)),
            None => (userinfo, None),
        };
        user = non_empty(decode(name, "user name")?);
        password = secret.map(|s| decode(s, "password")).transpose()?;
    }
    let (mut host, mut port) = split_host_port(hostport)?;
    let mut dbname = path
        .map(|p| decode(p, "database name"))
        .transpose()?
        .and_then(non_empty);

    let mut sslmode = SslMode::Prefer;
    let mut sslrootcert = None;
    let mut sslcert = None;
    let mut sslkey = None;
    let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
    let mut application_name = DEFAULT_APPLICATION_NAME.to_string();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| PgUrlError::MissingValue(pair.to_string()))?;
        let value = decode(value, "parameter value")?;
        match key {
            "sslmode" => sslmode = parse_sslmode(&value)?,
            "sslrootcert" => sslrootcert = non_empty(value).map(PathBuf::from),
            "sslcert" => sslcert = non_empty(value).map(PathBuf::from),
            "sslkey" => sslkey = non_empty(value).map(PathBuf::from),
            "connect_timeout" => connect_timeout = parse_timeout(&value)?,
            "application_name" => application_name = value,
            "host" => {
                let (h, p) = split_host_port(&value)?;
                host = h;
                port = p.or(port);
            }
            "port" => port = Some(parse_port(&value)?),
            "user" => user = non_empty(value),
            "password" => password = Some(value),
            "dbname" => dbname = non_empty(value),
            _ => return Err(PgUrlError::UnknownParameter(key.to_string())),
        }
    }

    let user = user.ok_or(PgUrlError::NoUser)?;
    Ok(PgConnectOptions {
        host: host.unwrap_or_else(|| DEFAULT_HOST.to_string()),
        port: port.unwrap_or(DEFAULT_PORT),
        dbname: dbname.unwrap_or_else(|| user.clone()),
        user,
        password,
        sslmode,
        sslrootcert,
        sslcert,
        sslkey,
        connect_timeout,
        application_name,
    })
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or empty; the host is percent-decoded.
fn split_host_port(text: &str) -> Result<(Option<String>, Option<u16>), PgUrlError> {
    if text.contains(',') {
        return Err(PgUrlError::MultipleHosts(text.to_string()));
    }
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| PgUrlError::Bracket(text.to_string()))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| PgUrlError::Port(after.to_string()))?,
            ),
        };
        (host.to_string(), port)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (decode(host, "host")?, Some(port)),
            None => (decode(text, "host")?, None),
        }
    };
    let port = port.filter(|p| !p.is_empty()).map(parse_port).transpose()?;
    Ok((non_empty(host), port))
}

fn parse_port(text: &str) -> Result<u16, PgUrlError> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(PgUrlError::Port(text.to_string())),
    }
}

fn parse_sslmode(text: &str) -> Result<SslMode, PgUrlError> {
    Ok(match text {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        _ => return Err(PgUrlError::SslMode(text.to_string())),
    })
}

/// Whole seconds like libpq; 0 waits forever, as there.
fn parse_timeout(text: &str) -> Result<Duration, PgUrlError> {
    match text.trim().parse::<u64>() {
        Ok(0) => Ok(Duration::MAX),
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => Err(PgUrlError::ConnectTimeout(text.to_string())),
    }
}

/// Percent-decodes one URL component; `what` names it in the error (never its value).
fn decode(text: &str, what: &'static str) -> Result<String, PgUrlError> {
    percent_decode(text).ok_or(PgUrlError::PercentEncoding(what))
}

/// `%XX` escapes decoded; `None` for a malformed escape or a result that is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes what would not survive [`parse`] in a user or database name.
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(url: &str) -> PgConnectOptions {
        parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn full_url() {
        let options = parse_ok(
            "postgresql://replicator:secret@db.example.com:6543/shop?sslmode=verify-full\
             &sslrootcert=/etc/ca.pem&sslcert=/etc/client.pem&sslkey=/etc/client.key\
             &connect_timeout=7&application_name=cdc-shop",
        );
        assert_eq!(
            options,
            PgConnectOptions {
                host: "db.example.com".into(),
                port: 6543,
                user: "replicator".into(),
                password: Some("secret".into()),
                dbname: "shop".into(),
                sslmode: SslMode::VerifyFull,
                sslrootcert: Some(PathBuf::from("/etc/ca.pem")),
                sslcert: Some(PathBuf::from("/etc/client.pem")),
                sslkey: Some(PathBuf::from("/etc/client.key")),
                connect_timeout: Duration::from_secs(7),
                application_name: "cdc-shop".into(),
            }
        );
    }

    #[test]
    fn defaults() {
        let options = parse_ok("postgres://replicator@db");
        assert_eq!(
            options,
            PgConnectOptions {
                host: "db".into(),
                port: 5432,
                user: "replicator".into(),
                password: None,
                dbname: "replicator".into(),
                sslmode: SslMode::Prefer,
                sslrootcert: None,
                sslcert: None,
                sslkey: None,
                connect_timeout: Duration::from_secs(30),
                application_name: "pgcdc".into(),
            }
        );
        let local = parse_ok("postgresql://u@/");
        assert_eq!((local.host.as_str(), local.port), ("localhost", 5432));
        assert_eq!(local.dbname, "u");
    }

    #[test]
    fn every_sslmode() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let options = parse_ok(&format!("postgresql://u@h/d?sslmode={text}"));
            assert_eq!(options.sslmode, mode);
            assert_eq!(mode.to_string(), text);
        }
        assert_eq!(
            parse("postgresql://u@h/d?sslmode=allow"),
            Err(PgUrlError::SslMode("allow".into()))
        );
    }

    #[test]
    fn percent_encoded_parts() {
        let options = parse_ok("postgresql://us%65r:p%40ss%2Fw%3Ard%25@h%6Fst/my%20db");
        assert_eq!(options.user, "user");
        assert_eq!(options.password.as_deref(), Some("p@ss/w:rd%"));
        assert_eq!(options.host, "host");
        assert_eq!(options.dbname, "my db");
        let utf8 = parse_ok("postgresql://u:%C3%A9t%C3%A9@h/d");
        assert_eq!(utf8.password.as_deref(), Some("été"));
        // An unencoded '@' in the password: the last '@' ends the user info.
        let at = parse_ok("postgresql://u:p@ss@h/d");
        assert_eq!(at.password.as_deref(), Some("p@ss"));
        assert_eq!(at.host, "h");
    }

    #[test]
    fn empty_password_is_kept() {
        assert_eq!(
            parse_ok("postgresql://u:@h/d").password.as_deref(),
            Some("")
        );
    }

    #[test]
    fn ipv6_hosts() {
        let options = parse_ok("postgresql://u@[::1]:5433/d");
        assert_eq!((options.host.as_str(), options.port), ("::1", 5433));
        let no_port = parse_ok("postgresql://u@[fe80::1]/d");
        assert_eq!((no_port.host.as_str(), no_port.port), ("fe80::1", 5432));
        assert_eq!(
            parse("postgresql://u@[::1/d"),
            Err(PgUrlError::Bracket("[::1".into()))
        );
        assert_eq!(
            parse("postgresql://u@[::1]x/d"),
            Err(PgUrlError::Port("x".into()))
        );
    }

    #[test]
    fn query_parameters_override_the_authority() {
        let options = parse_ok(
            "postgresql://u@h:1/d?host=other&port=2&user=v&password=pw&dbname=e&sslmode=disable",
        );
        assert_eq!(options.host, "other");
        assert_eq!(options.port, 2);
        assert_eq!(options.user, "v");
        assert_eq!(options.password.as_deref(), Some("pw"));
        assert_eq!(options.dbname, "e");
        assert_eq!(options.sslmode, SslMode::Disable);
        let user_only_in_query = parse_ok("postgresql://h/?user=w");
        assert_eq!(user_only_in_query.dbname, "w");
    }

    #[test]
    fn connect_timeout_zero_waits_forever() {
        assert_eq!(
            parse_ok("postgresql://u@h?connect_timeout=0").connect_timeout,
            Duration::MAX
        );
        assert_eq!(
            parse("postgresql://u@h?connect_timeout=1.5"),
            Err(PgUrlError::ConnectTimeout("1.5".into()))
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            ("mysql://u@h/d", PgUrlError::Scheme),
            ("postgresql://h/d", PgUrlError::NoUser),
            ("postgresql://:pw@h/d", PgUrlError::NoUser),
            ("postgresql://u@h:0/d", PgUrlError::Port("0".into())),
            ("postgresql://u@h:99999/d", PgUrlError::Port("99999".into())),
            ("postgresql://u@h:abc/d", PgUrlError::Port("abc".into())),
            (
                "postgresql://u@a,b/d",
                PgUrlError::MultipleHosts("a,b".into()),
            ),
            (
                "postgresql://u:%zz@h/d",
                PgUrlError::PercentEncoding("password"),
            ),
            (
                "postgresql://u:%c3@h/d",
                PgUrlError::PercentEncoding("password"),
            ),
            (
                "postgresql://u:%4@h/d",
                PgUrlError::PercentEncoding("password"),
            ),
            (
                "postgresql://u@h/d?target_session_attrs=any",
                PgUrlError::UnknownParameter("target_session_attrs".into()),
            ),
            (
                "postgresql://u@h/d?sslmode",
                PgUrlError::MissingValue("sslmode".into()),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(parse(url), Err(expected), "{url}");
        }
    }

    #[test]
    fn error_messages_name_the_problem_and_never_the_password() {
        let error = parse("postgresql://u:%zzsecret@h/d").unwrap_err();
        let text = error.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(
            text,
            "the password in the PostgreSQL URL is not valid percent-encoding: write special \
             characters as %XX (for example @ as %40, / as %2F, % as %25)"
        );
        assert_eq!(
            parse("postgresql://u@h/d?foo=1").unwrap_err().to_string(),
            "unknown parameter \"foo\" in the PostgreSQL URL; known parameters: sslmode, \
             sslrootcert, sslcert, sslkey, connect_timeout, application_name, host, port, \
             user, password, dbname"
        );
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let name = "we/ird@name %é";
        assert_eq!(encode(name), "we%2Fird%40name%20%25%C3%A9");
        assert_eq!(decode(&encode(name), "user name").unwrap(), name);
    }
}
