//! TLS for the test servers, which speak plain TCP: a throwaway CA with a server certificate
//! for 127.0.0.1 and a client certificate, and a proxy that terminates TLS (OpenSSL, requiring
//! the client's certificate) in front of a server, as a managed broker or registry would.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Name, X509};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::unique_dir;

/// PEM files of a CA and the certificates it issued, in a directory of their own.
pub struct TestPki {
    /// The CA certificate clients and the proxy trust.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    /// The client's key in PKCS#1 (`BEGIN RSA PRIVATE KEY`), as some providers hand them out.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Issues the CA, a server certificate for IP 127.0.0.1 and a client certificate.
    pub fn new() -> TestPki {
        let dir = unique_dir("pki");
        let (ca, ca_key) = certificate("pgcdc test CA", None, Usage::Ca);
        let (server, server_key) = certificate("127.0.0.1", Some((&ca, &ca_key)), Usage::Server);
        let (client, client_key) = certificate("cdc", Some((&ca, &ca_key)), Usage::Client);
        let write = |name: &str, pem: Vec<u8>| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        TestPki {
            ca: write("ca.pem", ca.to_pem().expect("CA PEM")),
            server_cert: write("server.pem", server.to_pem().expect("server PEM")),
            server_key: write(
                "server.key",
                server_key.private_key_to_pem_pkcs8().expect("key PEM"),
            ),
            client_cert: write("client.pem", client.to_pem().expect("client PEM")),
            client_key: write(
                "client.key",
                client_key
                    .rsa()
                    .and_then(|rsa| rsa.private_key_to_pem())
                    .expect("PKCS#1 PEM"),
            ),
        }
    }

    /// librdkafka's settings for a client presenting the client certificate.
    pub fn kafka_client_options(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("security.protocol", "SSL".to_owned()),
            ("ssl.ca.location", path(&self.ca)),
            ("ssl.certificate.location", path(&self.client_cert)),
            ("ssl.key.location", path(&self.client_key)),
        ]
    }
}

#[derive(Clone, Copy)]
enum Usage {
    Ca,
    Server,
    Client,
}

/// A certificate named `name` with a new RSA key, signed by `issuer` (self-signed without one).
fn certificate(
    name: &str,
    issuer: Option<(&X509, &PKey<Private>)>,
    usage: Usage,
) -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("RSA key")).expect("key");
    let mut subject = X509Name::builder().expect("name");
    subject.append_entry_by_text("CN", name).expect("CN");
    let subject = subject.build();
    let mut builder = X509::builder().expect("certificate");
    builder.set_version(2).expect("v3");
    let mut serial = BigNum::new().expect("serial");
    serial
        .rand(64, MsbOption::MAYBE_ZERO, false)
        .expect("random serial");
    builder
        .set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    builder.set_subject_name(&subject).expect("subject");
    let (issuer_name, signer) = match issuer {
        Some((ca, ca_key)) => (ca.subject_name(), ca_key),
        None => (subject.as_ref(), &key),
    };
    builder.set_issuer_name(issuer_name).expect("issuer");
    builder.set_pubkey(&key).expect("public key");
    builder
        .set_not_before(&Asn1Time::days_from_now(0).expect("now"))
        .expect("not before");
    builder
        .set_not_after(&Asn1Time::days_from_now(2).expect("later"))
        .expect("not after");
    let context = builder.x509v3_context(issuer.map(|(ca, _)| &**ca), None);
    let extensions = match usage {
        Usage::Ca => vec![
            BasicConstraints::new().critical().ca().build(),
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build(),
        ],
        Usage::Server => vec![
            BasicConstraints::new().build(),
            KeyUsage::new()
                .digital_signature()
                .key_encipherment()
                .build(),
            ExtendedKeyUsage::new().server_auth().build(),
            SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .build(&context),
        ],
        Usage::Client => vec![
            BasicConstraints::new().build(),
            KeyUsage::new()
                .digital_signature()
                .key_encipherment()
                .build(),
            ExtendedKeyUsage::new().client_auth().build(),
        ],
    };
    for extension in extensions {
        builder
            .append_extension(extension.expect("extension"))
            .expect("append extension");
    }
    builder.sign(signer, MessageDigest::sha256()).expect("sign");
    (builder.build(), key)
}

/// Terminates TLS on a loopback port and forwards each connection to `upstream` in plain TCP.
/// Clients must present a certificate the CA issued. Stops when dropped.
pub struct TlsProxy {
    port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// A proxy for the plain server on 127.0.0.1:`upstream`, with `pki`'s server certificate.
    pub fn start(pki: &TestPki, upstream: u16) -> TlsProxy {
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("TLS acceptor");
        acceptor
            .set_private_key_file(&pki.server_key, SslFiletype::PEM)
            .expect("server key");
        acceptor
            .set_certificate_chain_file(&pki.server_cert)
            .expect("server certificate");
        acceptor
            .set_ca_file(&pki.ca)
            .expect("CA for client certificates");
        acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        let acceptor = Arc::new(acceptor.build());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let (shutdown, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tls-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy listener");
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return,
                            accepted = listener.accept() => {
                                let Ok((client, _)) = accepted else { continue };
                                tokio::spawn(forward(Arc::clone(&acceptor), client, upstream));
                            }
                        }
                    }
                });
            })
            .expect("spawn the proxy thread");
        TlsProxy {
            port,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection: the TLS handshake (a client without an accepted certificate is refused
/// here), then bytes both ways until either side closes.
async fn forward(acceptor: Arc<SslAcceptor>, client: TcpStream, upstream: u16) {
    let Ok(ssl) = Ssl::new(acceptor.context()) else {
        return;
    };
    let Ok(mut tls) = tokio_openssl::SslStream::new(ssl, client) else {
        return;
    };
    if Pin::new(&mut tls).accept().await.is_err() {
        // A TLS 1.3 client may already have sent its request: closing with it unread would
        // reset the connection, and the client would see the reset instead of the alert that
        // says why. Read it first, as servers that linger on close do.
        let socket = tls.get_mut();
        let _ = socket.shutdown().await;
        let mut drain = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while matches!(socket.read(&mut drain).await, Ok(n) if n > 0) {}
        })
        .await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
}
