//! The byte pipe under the protocol: TCP, TLS after an SSLRequest when sslmode asks for it,
//! one large read buffer that messages are sliced out of, and one write buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use openssl::x509::X509VerifyResult;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::codec::{decode, Backend};
use super::ReplicationError;
use crate::pg::{tls_server_end_point, PgConnectOptions, SslMode, TlsConfig};

/// Read in large chunks: a busy walsender sends one small message per change, and one read
/// should pick up hundreds of them.
const READ_CHUNK: usize = 128 * 1024;
/// Grow the read buffer when less than this is free, so reads never become tiny.
const READ_MIN_FREE: usize = 16 * 1024;
/// OpenSSL reads a record header and then its body; buffering below it saves a syscall each.
const TLS_SOCKET_BUFFER: usize = 32 * 1024;

/// TCP, or TLS over TCP.
enum Transport {
    Plain(TcpStream),
    Tls(Box<SslStream<BufReader<TcpStream>>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open connection with its buffers.
pub(crate) struct Connection {
    io: Transport,
    read: BytesMut,
    /// Frontend messages waiting for [`Connection::flush`].
    pub(crate) write: BytesMut,
}

impl Connection {
    /// TCP to the first address of the host that answers, then TLS if `tls` is given and the
    /// server agrees (with `sslmode=prefer` a refusal means plain TCP).
    pub(crate) async fn open(
        options: &PgConnectOptions,
        tls: Option<&TlsConfig>,
    ) -> Result<Connection, ReplicationError> {
        let target = || options.to_string();
        let mut tcp = connect_tcp(options)
            .await
            .map_err(|source| ReplicationError::Connect {
                target: target(),
                source,
            })?;
        let Some(tls) = tls else {
            return Ok(Connection::new(Transport::Plain(tcp)));
        };
        let mut request = BytesMut::new();
        frontend::ssl_request(&mut request);
        tcp.write_all(&request).await?;
        match tcp.read_u8().await? {
            b'S' => {}
            b'N' if options.sslmode == SslMode::Prefer => {
                return Ok(Connection::new(Transport::Plain(tcp)));
            }
            b'N' => {
                return Err(ReplicationError::Tls {
                    target: target(),
                    reason: format!(
                        "the server does not accept TLS connections but sslmode={} requires \
                         TLS: set ssl = on in its postgresql.conf, or use sslmode=prefer",
                        options.sslmode
                    ),
                })
            }
            other => {
                return Err(ReplicationError::Protocol(format!(
                    "the server answered the SSLRequest with {:?}",
                    char::from(other)
                )))
            }
        }
        let tls_error = |reason: String| ReplicationError::Tls {
            target: target(),
            reason,
        };
        let ssl = tls
            .configure()
            .and_then(|config| config.into_ssl(&options.host))
            .map_err(|e| tls_error(e.to_string()))?;
        let socket = BufReader::with_capacity(TLS_SOCKET_BUFFER, tcp);
        let mut stream = SslStream::new(ssl, socket).map_err(|e| tls_error(e.to_string()))?;
        if let Err(error) = Pin::new(&mut stream).connect().await {
            let verdict = stream.ssl().verify_result();
            let reason = if verdict == X509VerifyResult::OK {
                error.to_string()
            } else {
                format!(
                    "the server's certificate was refused ({}) under sslmode={}",
                    verdict.error_string(),
                    options.sslmode
                )
            };
            return Err(tls_error(reason));
        }
        Ok(Connection::new(Transport::Tls(Box::new(stream))))
    }

    fn new(io: Transport) -> Connection {
        Connection {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(1024),
        }
    }

    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.io, Transport::Tls(_))
    }

    /// The `tls-server-end-point` channel binding data, over TLS.
    pub(crate) fn channel_binding(&self) -> Option<Vec<u8>> {
        match &self.io {
            Transport::Tls(stream) => tls_server_end_point(stream.ssl()),
            Transport::Plain(_) => None,
        }
    }

    /// The next message already in the read buffer, if a complete one is there.
    pub(crate) fn try_decode(&mut self) -> Result<Option<Backend>, ReplicationError> {
        decode(&mut self.read)
    }

    /// Reads whatever the socket has into the read buffer. Cancel-safe: bytes read are kept.
    pub(crate) async fn fill(&mut self) -> Result<(), ReplicationError> {
        if self.read.capacity() - self.read.len() < READ_MIN_FREE {
            self.read.reserve(READ_CHUNK);
        }
        let read = self.io.read_buf(&mut self.read).await?;
        if read == 0 {
            return Err(ReplicationError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        Ok(())
    }

    /// The next message, reading as needed.
    pub(crate) async fn read_backend(&mut self) -> Result<Backend, ReplicationError> {
        loop {
            if let Some(message) = self.try_decode()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }

    /// Sends the write buffer. Written bytes leave the buffer as they go, so a cancelled flush
    /// never sends anything twice.
    pub(crate) async fn flush(&mut self) -> Result<(), ReplicationError> {
        self.io.write_all_buf(&mut self.write).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends Terminate and closes the socket.
    pub(crate) async fn terminate(mut self) -> Result<(), ReplicationError> {
        frontend::terminate(&mut self.write);
        self.flush().await?;
        // The server closes its end on Terminate; a failing close_notify changes nothing.
        let _ = self.io.shutdown().await;
        Ok(())
    }
}

/// Tries every address of the host in turn, like libpq.
async fn connect_tcp(options: &PgConnectOptions) -> io::Result<TcpStream> {
    let mut last_error = None;
    for address in tokio::net::lookup_host((options.host.as_str(), options.port)).await? {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // Status updates and commands are small and must not wait for Nagle.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => {
                last_error = Some(io::Error::new(error.kind(), format!("{address}: {error}")))
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("host {:?} has no address", options.host),
        )
    }))
}
