//! libpq's `sslmode` semantics on OpenSSL: which certificates to trust and what to check.

use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{
    ConnectConfiguration, SslConnector, SslFiletype, SslMethod, SslRef, SslVerifyMode,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use super::{PgConnectOptions, SslMode};

/// libpq's default root certificate, relative to the home directory.
const DEFAULT_ROOT_CERT: &str = ".postgresql/root.crt";

/// The TLS settings of a URL could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// Verification needs a root certificate file that does not exist.
    #[error("sslmode={mode} verifies the server's certificate against {path}, which does not exist: \
             set sslrootcert=/path/to/ca.pem in the URL to the CA that signed the server's certificate")]
    MissingRootCert {
        /// The sslmode that needs it.
        mode: SslMode,
        /// The file looked for.
        path: PathBuf,
    },
    /// A certificate or key file could not be read or parsed.
    #[error("could not load the {what} {path}: {reason}")]
    Load {
        /// Which file: "root certificate", "client certificate", "client key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// `sslcert` and `sslkey` must come together.
    #[error("sslcert and sslkey must be given together in the URL")]
    ClientCertPair,
    /// OpenSSL could not be initialised.
    #[error("could not set up TLS: {0}")]
    OpenSsl(#[from] ErrorStack),
}

/// A TLS client configuration for one set of connection options.
pub(crate) struct TlsConfig {
    connector: SslConnector,
    verify_hostname: bool,
}

impl TlsConfig {
    /// None for `sslmode=disable`; otherwise the connector with the verification the mode asks for.
    pub(crate) fn new(options: &PgConnectOptions) -> Result<Option<TlsConfig>, TlsSetupError> {
        let verify_chain = match options.sslmode {
            SslMode::Disable => return Ok(None),
            SslMode::Prefer => false,
            // libpq: with a root certificate, `require` verifies the chain like `verify-ca`.
            SslMode::Require => options.sslrootcert.is_some(),
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        };
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        if verify_chain {
            let root = root_cert_path(options)?;
            // Trust only the given roots, like libpq, not the system's store as well.
            let pem = std::fs::read(&root).map_err(|e| load_error("root certificate", &root, e))?;
            let certs =
                X509::stack_from_pem(&pem).map_err(|e| load_error("root certificate", &root, e))?;
            let mut store = X509StoreBuilder::new()?;
            for cert in certs {
                store.add_cert(cert)?;
            }
            builder.set_cert_store(store.build());
            builder.set_verify(SslVerifyMode::PEER);
        } else {
            builder.set_verify(SslVerifyMode::NONE);
        }
        match (&options.sslcert, &options.sslkey) {
            (Some(cert), Some(key)) => {
                builder
                    .set_certificate_chain_file(cert)
                    .map_err(|e| load_error("client certificate", cert, e))?;
                builder
                    .set_private_key_file(key, SslFiletype::PEM)
                    .map_err(|e| load_error("client key", key, e))?;
                builder
                    .check_private_key()
                    .map_err(|e| load_error("client key", key, e))?;
            }
            (None, None) => {}
            _ => return Err(TlsSetupError::ClientCertPair),
        }
        Ok(Some(TlsConfig {
            connector: builder.build(),
            verify_hostname: options.sslmode == SslMode::VerifyFull,
        }))
    }

    /// Settings for one handshake; `into_ssl(host)` then sends SNI and checks the host name
    /// when `verify-full` asks for it.
    pub(crate) fn configure(&self) -> Result<ConnectConfiguration, ErrorStack> {
        let mut config = self.connector.configure()?;
        config.set_verify_hostname(self.verify_hostname);
        Ok(config)
    }

    /// Whether the certificate must name the host (`verify-full`).
    pub(crate) fn verify_hostname(&self) -> bool {
        self.verify_hostname
    }

    /// The underlying connector, for tokio-postgres.
    pub(crate) fn into_connector(self) -> SslConnector {
        self.connector
    }
}

fn root_cert_path(options: &PgConnectOptions) -> Result<PathBuf, TlsSetupError> {
    let path = match &options.sslrootcert {
        Some(path) => path.clone(),
        None => std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(DEFAULT_ROOT_CERT))
            .unwrap_or_else(|| Path::new("~").join(DEFAULT_ROOT_CERT)),
    };
    if path.exists() {
        Ok(path)
    } else {
        Err(TlsSetupError::MissingRootCert {
            mode: options.sslmode,
            path,
        })
    }
}

fn load_error(what: &'static str, path: &Path, error: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::Load {
        what,
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// The `tls-server-end-point` channel binding data (RFC 5929): the hash of the server's
/// certificate, with SHA-256 replacing MD5 and SHA-1.
pub(crate) fn tls_server_end_point(ssl: &SslRef) -> Option<Vec<u8>> {
    let cert = ssl.peer_certificate()?;
    let algorithms = cert
        .signature_algorithm()
        .object()
        .nid()
        .signature_algorithms()?;
    let digest = match algorithms.digest {
        Nid::MD5 | Nid::SHA1 => MessageDigest::sha256(),
        nid => MessageDigest::from_nid(nid)?,
    };
    cert.digest(digest).ok().map(|hash| hash.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_needs_no_tls() {
        let options = PgConnectOptions::parse("postgresql://u@h/d?sslmode=disable").unwrap();
        assert!(TlsConfig::new(&options).unwrap().is_none());
    }

    #[test]
    fn prefer_and_require_skip_verification() {
        for mode in ["prefer", "require"] {
            let options =
                PgConnectOptions::parse(&format!("postgresql://u@h/d?sslmode={mode}")).unwrap();
            let tls = TlsConfig::new(&options).unwrap().expect("a TLS config");
            assert!(!tls.verify_hostname());
        }
    }

    #[test]
    fn verification_needs_an_existing_root_certificate() {
        let options = PgConnectOptions::parse(
            "postgresql://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap();
        let error = TlsConfig::new(&options).err().expect("an error");
        assert_eq!(
            error.to_string(),
            "sslmode=verify-full verifies the server's certificate against /nonexistent/ca.pem, \
             which does not exist: set sslrootcert=/path/to/ca.pem in the URL to the CA that \
             signed the server's certificate"
        );
        // libpq: `require` with a root certificate verifies like `verify-ca`.
        let require = PgConnectOptions::parse(
            "postgresql://u@h/d?sslmode=require&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap();
        assert!(matches!(
            TlsConfig::new(&require),
            Err(TlsSetupError::MissingRootCert {
                mode: SslMode::Require,
                ..
            })
        ));
    }

    #[test]
    fn client_certificate_needs_its_key() {
        let options =
            PgConnectOptions::parse("postgresql://u@h/d?sslmode=require&sslcert=/x.pem").unwrap();
        assert!(matches!(
            TlsConfig::new(&options),
            Err(TlsSetupError::ClientCertPair)
        ));
    }
}
