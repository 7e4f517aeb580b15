//! PostgreSQL errors as the user needs to read them. tokio-postgres displays a server error as
//! just "db error"; [`PgError`] displays what the server said (severity, SQL state, message,
//! detail, hint, and the table, column and constraint it names), or the chain of causes of a
//! client-side error.

use std::fmt;

use tokio_postgres::error::{DbError, SqlState};

/// A tokio-postgres error that displays the server's own words.
#[derive(Debug)]
pub struct PgError(tokio_postgres::Error);

impl PgError {
    /// The server's SQL state, when the server answered with an error.
    pub fn code(&self) -> Option<&SqlState> {
        self.0.code()
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The server's error report, when there is one.
    pub fn as_db_error(&self) -> Option<&DbError> {
        self.0.as_db_error()
    }

    /// The error's cause, for errors that are not the server's (I/O, TLS, protocol).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        PgError(error)
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(db) = self.0.as_db_error() else {
            write!(f, "{}", self.0)?;
            let mut cause = self.cause();
            while let Some(error) = cause {
                write!(f, ": {error}")?;
                cause = error.source();
            }
            return Ok(());
        };
        write!(
            f,
            "{}: {} (SQLSTATE {}",
            db.severity(),
            db.message(),
            db.code().code()
        )?;
        let objects = [
            ("table", qualified(db.schema(), db.table())),
            ("column", db.column().map(str::to_owned)),
            ("constraint", db.constraint().map(str::to_owned)),
            ("type", qualified(db.schema(), db.datatype())),
        ];
        for (what, name) in &objects {
            if let Some(name) = name {
                write!(f, ", {what} {name}")?;
            }
        }
        f.write_str(")")?;
        if let Some(detail) = db.detail() {
            write!(f, "; DETAIL: {detail}")?;
        }
        if let Some(hint) = db.hint() {
            write!(f, "; HINT: {hint}")?;
        }
        Ok(())
    }
}

/// Not a wrapper in the error chain: [`fmt::Display`] already says everything the inner error
/// and its causes would.
impl std::error::Error for PgError {}

fn qualified(schema: Option<&str>, name: Option<&str>) -> Option<String> {
    match (schema, name) {
        (Some(schema), Some(name)) => Some(format!("{schema}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        _ => None,
    }
}
