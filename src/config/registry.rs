//! `[schema_registry]`: where the Confluent-compatible registry is and how to log in to it
//! (basic auth, a CA of its own, a client certificate), as managed registries need.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::check_http_url;
use super::{de, read_secret_file, redact_url, ConfigError};

/// `[schema_registry]`: the Confluent-compatible registry used with `format = "avro"`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySection {
    /// Base URL (`http://` or `https://`), possibly with `user:password@`; required for Avro,
    /// `""` or absent: none.
    #[serde(default, deserialize_with = "de::optional_string")]
    pub url: Option<String>,
    /// Basic-auth user (Confluent Cloud: the API key); `""` or absent: the URL's, if any.
    #[serde(default, deserialize_with = "de::optional_string")]
    pub username: Option<String>,
    /// Basic-auth password (Confluent Cloud: the API secret); prefer `password_file`.
    #[serde(default, deserialize_with = "de::optional_string")]
    pub password: Option<String>,
    /// File holding the basic-auth password (trailing newline ignored).
    #[serde(default, deserialize_with = "de::optional_path")]
    pub password_file: Option<PathBuf>,
    /// PEM file of the certificate authorities that sign the registry's certificate, trusted
    /// besides the system's.
    #[serde(default, deserialize_with = "de::optional_path")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a registry that asks for one (with `key_file`).
    #[serde(default, deserialize_with = "de::optional_path")]
    pub cert_file: Option<PathBuf>,
    /// Unencrypted PEM private key (PKCS#8, PKCS#1 or EC) of `cert_file`.
    #[serde(default, deserialize_with = "de::optional_path")]
    pub key_file: Option<PathBuf>,
}

/// Everything needed to reach the registry; its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    /// Base URL, as configured (user info included).
    pub url: String,
    /// Basic-auth user, when set apart from the URL.
    pub username: Option<String>,
    /// Basic-auth password, when set apart from the URL.
    pub password: Option<String>,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

impl RegistryAccess {
    /// Access to the registry at `url` with nothing else set.
    pub fn url(url: &str) -> RegistryAccess {
        RegistryAccess {
            url: url.to_owned(),
            username: None,
            password: None,
            ca_file: None,
            client_identity: None,
        }
    }
}

impl fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("client_identity", &self.client_identity)
            .finish()
    }
}

impl fmt::Debug for SchemaRegistrySection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistrySection")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl SchemaRegistrySection {
    /// Checks the keys' shapes and combinations; each error names its key and the fix.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            check_http_url(url)
                .map_err(|message| ConfigError::invalid("schema_registry.url", message))?;
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(ConfigError::invalid(
                "schema_registry.password",
                "set either password or password_file, not both",
            ));
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return Err(ConfigError::invalid(
                "schema_registry.username",
                "a password needs its user: set username (Confluent Cloud: the API key)",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(ConfigError::invalid(
                "schema_registry.key_file",
                "cert_file needs the certificate's private key: set key_file (unencrypted PEM)",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "schema_registry.cert_file",
                "key_file needs its certificate: set cert_file (PEM)",
            )),
            _ => Ok(()),
        }
    }

    /// How to reach the registry, `None` without a URL; reads `password_file`.
    pub fn access(&self) -> Result<Option<RegistryAccess>, ConfigError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let password = match &self.password_file {
            Some(path) => Some(read_password(path)?),
            None => self.password.clone(),
        };
        Ok(Some(RegistryAccess {
            url: url.clone(),
            username: self.username.clone(),
            password,
            ca_file: self.ca_file.clone(),
            client_identity: self.cert_file.clone().zip(self.key_file.clone()),
        }))
    }
}

fn read_password(path: &Path) -> Result<String, ConfigError> {
    read_secret_file(path).map_err(|problem| {
        ConfigError::invalid(
            "schema_registry.password_file",
            format!(
                "{} {problem}; fix the file or set the password another way",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml: &str) -> SchemaRegistrySection {
        toml::from_str(toml).unwrap()
    }

    fn refused(toml: &str) -> String {
        section(toml).validate().unwrap_err().to_string()
    }

    #[test]
    fn combinations_are_checked_by_key() {
        assert!(refused(
            r#"url = "http://r:8081"
password = "p""#
        )
        .contains("schema_registry.username"));
        assert!(refused(
            r#"url = "http://r:8081"
username = "u"
password = "p"
password_file = "/p""#
        )
        .contains("schema_registry.password"));
        assert!(refused(
            r#"url = "http://r:8081"
cert_file = "/c.pem""#
        )
        .contains("schema_registry.key_file"));
        assert!(refused(r#"url = "ftp://r""#).contains("schema_registry.url"));
        section(
            r#"url = "https://u:p@r/sr"
ca_file = "/ca.pem"
cert_file = "/c.pem"
key_file = "/k.pem""#,
        )
        .validate()
        .unwrap();
    }

    #[test]
    fn the_password_comes_from_its_file_and_is_never_printed() {
        let dir = std::env::temp_dir().join(format!("pgcdc-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = section(&format!(
            "url = \"https://key:urlsecret@r/\"\nusername = \"key\"\npassword_file = \"{}\"",
            file.display()
        ));
        let access = config.access().unwrap().unwrap();
        assert_eq!(access.password.as_deref(), Some("s3cret"));
        for printed in [format!("{access:?}"), format!("{config:?}")] {
            assert!(
                !printed.contains("s3cret") && !printed.contains("urlsecret"),
                "{printed}"
            );
        }
        std::fs::write(&file, "\n").unwrap();
        let error = config.access().unwrap_err().to_string();
        assert!(
            error.contains("schema_registry.password_file") && error.contains("is empty"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
