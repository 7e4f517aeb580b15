//! A Confluent Schema Registry client: registers schemas under subjects and fetches schemas by
//! id, caching both (a subject's schema text always maps to the same id, and ids never change).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openssl::pkey::PKey;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Url;

use crate::config::RegistryAccess;
use crate::pg::percent_decode;

/// The registry's REST media type.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// How long one request may take; registrations happen at startup and on schema changes, so a
/// hung registry should fail them rather than stall the pipeline forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed registry request.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// `schema_registry.url` does not parse as a URL.
    #[error("invalid schema registry URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No HTTP answer: connection refused, DNS failure, timeout, a refused TLS handshake. The
    /// message carries the error's causes, where the reason (the TLS library's or the
    /// operating system's words) is.
    #[error("schema registry unreachable at {url}: {}", with_causes(cause))]
    Unreachable { url: String, cause: reqwest::Error },
    /// The registry answered with an error status.
    #[error("schema registry {url} answered HTTP {status}{}: {message}", error_code.map(|c| format!(" (error_code {c})")).unwrap_or_default())]
    Status {
        url: String,
        status: u16,
        error_code: Option<i64>,
        message: String,
    },
    /// The registry answered 2xx with a body that is not what the API promises.
    #[error("unexpected answer from schema registry {url}: {detail}")]
    BadResponse { url: String, detail: String },
    /// A TLS file of `[schema_registry]` cannot be used.
    #[error("schema_registry.{key} {}: {detail}", path.display())]
    TlsFile {
        key: &'static str,
        path: std::path::PathBuf,
        detail: String,
    },
}

/// A schema registry client; cheap to share by reference across tasks.
pub struct RegistryClient {
    /// The base URL, without user info (it is printed in messages).
    base: Url,
    http: reqwest::Client,
    /// Basic-auth user and password, sent with every request.
    credentials: Option<(String, Option<String>)>,
    /// subject → schema text → id.
    ids: Mutex<HashMap<String, HashMap<String, u32>>>,
    schemas: Mutex<HashMap<u32, Arc<str>>>,
}

impl RegistryClient {
    /// A client for the registry at `url` (e.g. `http://127.0.0.1:8081`); connects lazily.
    pub fn new(url: &str) -> Result<RegistryClient, RegistryError> {
        RegistryClient::connect(&RegistryAccess::url(url))
    }

    /// A client for the registry `access` describes: basic auth from its keys or the URL's
    /// user info, its CA file trusted, its client certificate presented.
    pub fn connect(access: &RegistryAccess) -> Result<RegistryClient, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidUrl {
            url: crate::config::redact_url(&access.url),
            reason,
        };
        let mut base = Url::parse(&access.url).map_err(|e| invalid(e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("expected an http:// or https:// URL".to_string()));
        }
        let credentials = credentials(&mut base, access);
        let mut http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(path) = &access.ca_file {
            let pem = read_tls_file("ca_file", path)?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::TlsFile {
                    key: "ca_file",
                    path: path.clone(),
                    detail: format!("not PEM certificates: {e}"),
                }
            })?;
            if certificates.is_empty() {
                return Err(RegistryError::TlsFile {
                    key: "ca_file",
                    path: path.clone(),
                    detail: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
                });
            }
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        if let Some((cert, key)) = &access.client_identity {
            http = http.identity(client_identity(cert, key)?);
        }
        let http = http.build().map_err(|cause| RegistryError::Unreachable {
            url: base.to_string(),
            cause,
        })?;
        Ok(RegistryClient {
            base,
            http,
            credentials,
            ids: Mutex::new(HashMap::new()),
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// Puts schemas in the by-id cache, so records of them decode without asking the registry
    /// (the fuzz targets have no registry to ask).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn cache_schemas<'s>(&self, schemas: impl IntoIterator<Item = (u32, &'s str)>) {
        lock(&self.schemas).extend(schemas.into_iter().map(|(id, text)| (id, Arc::from(text))));
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Registers an Avro schema under `subject` (`POST /subjects/{subject}/versions`) and
    /// returns its id; a schema already registered from this client costs no request.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let cached = lock(&self.ids)
            .get(subject)
            .and_then(|by_text| by_text.get(schema))
            .copied();
        if let Some(id) = cached {
            return Ok(id);
        }
        let url = self.endpoint(&["subjects", subject, "versions"]);
        let body = serde_json::json!({ "schema": schema }).to_string();
        let request = self
            .request(reqwest::Method::POST, &url)
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .header(ACCEPT, MEDIA_TYPE)
            .body(body);
        let id = registered_id(&send(request, &url).await?, &url)?;
        lock(&self.ids)
            .entry(subject.to_string())
            .or_default()
            .insert(schema.to_string(), id);
        lock(&self.schemas).insert(id, Arc::from(schema));
        Ok(id)
    }

    /// The schema text with id `id` (`GET /schemas/ids/{id}`), fetched once per id.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(schema) = lock(&self.schemas).get(&id) {
            return Ok(Arc::clone(schema));
        }
        let url = self.endpoint(&["schemas", "ids", &id.to_string()]);
        let request = self
            .request(reqwest::Method::GET, &url)
            .header(ACCEPT, MEDIA_TYPE);
        let schema = schema_text(&send(request, &url).await?, &url)?;
        lock(&self.schemas).insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    /// The registered subjects (`GET /subjects`): whether the registry answers.
    pub async fn subjects(&self) -> Result<serde_json::Value, RegistryError> {
        let url = self.endpoint(&["subjects"]);
        let request = self
            .request(reqwest::Method::GET, &url)
            .header(ACCEPT, MEDIA_TYPE);
        send(request, &url).await
    }

    /// `<registry>/config/<subject>`: where the subject's compatibility level is set.
    pub fn config_url(&self, subject: &str) -> String {
        self.endpoint(&["config", subject]).to_string()
    }

    /// A request to `url`, with the credentials when there are any.
    fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url.clone());
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, password.as_ref()),
            None => request,
        }
    }

    /// The base URL with `segments` appended, each percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

/// The basic-auth credentials: the configured user and password, else the URL's user info;
/// the user info is taken out of `base` either way, so no message shows it.
fn credentials(base: &mut Url, access: &RegistryAccess) -> Option<(String, Option<String>)> {
    // The URL crate keeps user info percent-encoded; a part that does not decode is sent as
    // it is written.
    let decode = |text: &str| percent_decode(text).unwrap_or_else(|| text.to_string());
    let from_url = (!base.username().is_empty())
        .then(|| (decode(base.username()), base.password().map(decode)));
    let _ = base.set_username("");
    let _ = base.set_password(None);
    match &access.username {
        Some(user) => Some((user.clone(), access.password.clone())),
        None => from_url,
    }
}

/// The client certificate and its key as reqwest takes them. Its TLS backend wants a PKCS#8
/// key, while providers also hand out PKCS#1 (`BEGIN RSA PRIVATE KEY`) and SEC1 (`BEGIN EC
/// PRIVATE KEY`) keys, so any PEM private key is converted first.
fn client_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, RegistryError> {
    let certificate = read_tls_file("cert_file", cert)?;
    let pkcs8 = PKey::private_key_from_pem(&read_tls_file("key_file", key)?)
        .and_then(|private| private.private_key_to_pem_pkcs8())
        .map_err(|e| RegistryError::TlsFile {
            key: "key_file",
            path: key.to_path_buf(),
            detail: format!("not an unencrypted PEM private key: {e}"),
        })?;
    reqwest::Identity::from_pkcs8_pem(&certificate, &pkcs8).map_err(|e| RegistryError::TlsFile {
        key: "cert_file",
        path: cert.to_path_buf(),
        detail: format!("with key_file {}: {e}", key.display()),
    })
}

/// `error` and each of its causes, `: `-separated, skipping a cause its error already says.
fn with_causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        let said = error.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = error.source();
    }
    text
}

fn read_tls_file(key: &'static str, path: &Path) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(path).map_err(|e| RegistryError::TlsFile {
        key,
        path: path.to_path_buf(),
        detail: format!("cannot be read: {e}"),
    })
}

/// The caches hold plain data, so a panic elsewhere cannot leave them inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn send(
    request: reqwest::RequestBuilder,
    url: &Url,
) -> Result<serde_json::Value, RegistryError> {
    let unreachable = |cause| RegistryError::Unreachable {
        url: url.to_string(),
        cause,
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    parse_response(url, status.as_u16(), &body)
}

/// A response's JSON body, or the error its status and body describe (the registry's
/// `error_code` and `message` when the body has them); pure, so it can be fuzzed.
pub(crate) fn parse_response(
    url: &Url,
    status: u16,
    body: &str,
) -> Result<serde_json::Value, RegistryError> {
    let parsed = serde_json::from_str::<serde_json::Value>(body);
    if !(200..300).contains(&status) {
        let (error_code, message) = match &parsed {
            Ok(answer) => (
                answer.get("error_code").and_then(serde_json::Value::as_i64),
                answer
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(body)
                    .to_string(),
            ),
            Err(_) => (None, body.to_string()),
        };
        return Err(RegistryError::Status {
            url: url.to_string(),
            status,
            error_code,
            message,
        });
    }
    parsed.map_err(|e| RegistryError::BadResponse {
        url: url.to_string(),
        detail: format!("not JSON ({e}): {body}"),
    })
}

/// The id in the answer to a registration (`{"id":N}`).
pub(crate) fn registered_id(answer: &serde_json::Value, url: &Url) -> Result<u32, RegistryError> {
    answer
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| RegistryError::BadResponse {
            url: url.to_string(),
            detail: format!("no schema id in {answer}"),
        })
}

/// The schema text in the answer to `GET /schemas/ids/N` (`{"schema":"…"}`).
pub(crate) fn schema_text(
    answer: &serde_json::Value,
    url: &Url,
) -> Result<Arc<str>, RegistryError> {
    answer
        .get("schema")
        .and_then(serde_json::Value::as_str)
        .map(Arc::from)
        .ok_or_else(|| RegistryError::BadResponse {
            url: url.to_string(),
            detail: format!("no schema in {answer}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_keys_or_the_url_and_leave_the_url() {
        let client = RegistryClient::new("https://key:s%40cret@registry.example/sr").unwrap();
        assert_eq!(client.url(), "https://registry.example/sr");
        assert_eq!(
            client.credentials,
            Some(("key".to_string(), Some("s@cret".to_string())))
        );
        let access = RegistryAccess {
            username: Some("api".into()),
            password: Some("other".into()),
            ..RegistryAccess::url("https://key:s3cret@registry.example/")
        };
        let client = RegistryClient::connect(&access).unwrap();
        assert_eq!(client.url(), "https://registry.example/");
        assert_eq!(
            client.credentials,
            Some(("api".to_string(), Some("other".to_string())))
        );
        assert_eq!(
            RegistryClient::new("http://r:8081").unwrap().credentials,
            None
        );
    }

    #[test]
    fn unusable_tls_files_name_their_key() {
        let dir = std::env::temp_dir().join(format!("pgcdc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let refused = |access: RegistryAccess| match RegistryClient::connect(&access) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{access:?} was accepted"),
        };
        let ca = refused(RegistryAccess {
            ca_file: Some(not_pem.clone()),
            ..RegistryAccess::url("https://r/")
        });
        assert!(ca.starts_with("schema_registry.ca_file "), "{ca}");
        let missing = dir.join("missing.pem");
        let cert = refused(RegistryAccess {
            client_identity: Some((missing.clone(), not_pem.clone())),
            ..RegistryAccess::url("https://r/")
        });
        assert!(
            cert.starts_with("schema_registry.cert_file") && cert.contains("cannot be read"),
            "{cert}"
        );
        let key = refused(RegistryAccess {
            client_identity: Some((not_pem.clone(), not_pem.clone())),
            ..RegistryAccess::url("https://r/")
        });
        assert!(
            key.starts_with("schema_registry.key_file")
                && key.contains("not an unencrypted PEM private key"),
            "{key}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn endpoints_percent_encode_subjects() {
        let client = RegistryClient::new("http://127.0.0.1:8081/").unwrap();
        assert_eq!(
            client
                .endpoint(&["subjects", "a b/c-value", "versions"])
                .as_str(),
            "http://127.0.0.1:8081/subjects/a%20b%2Fc-value/versions"
        );
        let prefixed = RegistryClient::new("https://registry.example/sr").unwrap();
        assert_eq!(
            prefixed.endpoint(&["schemas", "ids", "7"]).as_str(),
            "https://registry.example/sr/schemas/ids/7"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in ["", "127.0.0.1:8081", "ftp://host/", "mailto:x@y"] {
            assert!(
                matches!(
                    RegistryClient::new(bad),
                    Err(RegistryError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn connection_failures_name_the_registry() {
        // Port 9 (discard) on loopback has no listener here.
        let client = RegistryClient::new("http://127.0.0.1:9").unwrap();
        let error = client.register("s-value", "\"int\"").await.unwrap_err();
        assert!(matches!(error, RegistryError::Unreachable { .. }));
        assert!(
            error.to_string().starts_with(
                "schema registry unreachable at http://127.0.0.1:9/subjects/s-value/versions"
            ),
            "{error}"
        );
    }

    /// A registry that answers one request with `status` and `body`, on a thread.
    fn answer_once(status: &'static str, body: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0; 4096];
            // Headers, then the body whose length they announce.
            loop {
                let read = stream.read(&mut buffer).unwrap();
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if read == 0 || request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {MEDIA_TYPE}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        url
    }

    #[tokio::test]
    async fn a_refused_schema_names_the_subject_and_the_fix() {
        let url = answer_once(
            "409 Conflict",
            r#"{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema for subject \"shop.l1.people-value\", details: [{compatibility: 'BACKWARD'}]"}"#,
        );
        let client = RegistryClient::new(&format!("{url}/")).unwrap();
        let error = client
            .register("shop.l1.people-value", "\"int\"")
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                RegistryError::Status {
                    status: 409,
                    error_code: Some(409),
                    ..
                }
            ),
            "{error}"
        );
        let error = super::super::incompatible(&client, "shop.l1.people-value", error);
        assert_eq!(
            error.to_string(),
            format!(
                "schema registry refused the new value schema of subject \"shop.l1.people-value\" \
                 (HTTP 409): Schema being registered is incompatible with an earlier schema for \
                 subject \"shop.l1.people-value\", details: [{{compatibility: 'BACKWARD'}}]. The \
                 change is incompatible under the subject's compatibility setting; allow it, then \
                 restart the source: curl -X PUT -H 'Content-Type: \
                 application/vnd.schemaregistry.v1+json' --data '{{\"compatibility\":\"NONE\"}}' \
                 {url}/config/shop.l1.people-value"
            )
        );
        let key = super::super::incompatible(
            &client,
            "a b-key",
            RegistryError::Status {
                url: url.clone(),
                status: 409,
                error_code: Some(409),
                message: "no".into(),
            },
        );
        assert!(
            key.to_string().starts_with(
                "schema registry refused the new key schema of subject \"a b-key\" (HTTP 409): no."
            ),
            "{key}"
        );
        assert!(key.to_string().ends_with("/config/a%20b-key"), "{key}");
    }
}
