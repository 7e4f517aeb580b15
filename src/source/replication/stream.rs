//! CopyBoth streaming: XLogData and keepalives in, standby status updates out.

use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::codec::{
    encode_status, now_unix_us, parse_replication_message, Backend, ReplicationMessage,
};
use super::connection::Connection;
use super::error::{log_notice, ServerError};
use super::ReplicationError;
use crate::lsn::Lsn;

/// A logical replication stream (START_REPLICATION accepted).
pub struct ReplicationStream {
    conn: Connection,
    /// The server sent CopyDone: it will send no more data.
    server_done: bool,
}

impl ReplicationStream {
    pub(crate) fn new(conn: Connection) -> ReplicationStream {
        ReplicationStream {
            conn,
            server_done: false,
        }
    }

    /// Next XLogData or keepalive; None when the server ended the stream (CopyDone, or
    /// CommandComplete when it shuts down).
    /// Cancel-safe (used inside `tokio::select!`): the only await is the socket read, whose
    /// bytes stay buffered; every message already buffered is handed out before reading again.
    pub async fn next(&mut self) -> Result<Option<ReplicationMessage>, ReplicationError> {
        loop {
            if self.server_done {
                return Ok(None);
            }
            while let Some(backend) = self.conn.try_decode()? {
                match backend {
                    Backend::Message(Message::CopyData(body)) => {
                        return parse_replication_message(body.into_bytes()).map(Some);
                    }
                    // A walsender shutting down (fast or smart) ends the command with
                    // CommandComplete "COPY 0" and no CopyDone.
                    Backend::Message(Message::CopyDone | Message::CommandComplete(_)) => {
                        self.server_done = true;
                        return Ok(None);
                    }
                    Backend::Message(Message::ErrorResponse(body)) => {
                        return Err(ReplicationError::Server(Box::new(
                            ServerError::from_fields(body.fields())?,
                        )));
                    }
                    Backend::Message(Message::NoticeResponse(body)) => log_notice(body.fields()),
                    Backend::Message(Message::ParameterStatus(_)) => {}
                    _ => {
                        return Err(ReplicationError::Protocol(
                            "unexpected message in the replication stream".into(),
                        ))
                    }
                }
            }
            self.conn.fill().await?;
        }
    }

    /// Standby status update ('r'): written/flushed/applied LSNs, the clock, reply-requested
    /// flag. The slot's `confirmed_flush_lsn` follows `flushed`.
    pub async fn send_status(
        &mut self,
        written: Lsn,
        flushed: Lsn,
        applied: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplicationError> {
        encode_status(
            &mut self.conn.write,
            written,
            flushed,
            applied,
            now_unix_us(),
            reply_requested,
        );
        self.conn.flush().await
    }

    /// Orderly end: CopyDone, then drain until the server's CommandComplete/ReadyForQuery;
    /// then Terminate. Data still in flight is discarded: it will be streamed again from the
    /// slot's confirmed position.
    pub async fn finish(mut self) -> Result<(), ReplicationError> {
        frontend::copy_done(&mut self.conn.write);
        self.conn.flush().await?;
        loop {
            match self.conn.read_backend().await? {
                Backend::Message(
                    Message::CopyData(_)
                    | Message::CopyDone
                    | Message::CommandComplete(_)
                    | Message::RowDescription(_)
                    | Message::DataRow(_)
                    | Message::ParameterStatus(_),
                ) => {}
                Backend::Message(Message::NoticeResponse(body)) => log_notice(body.fields()),
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(ReplicationError::Server(Box::new(
                        ServerError::from_fields(body.fields())?,
                    )))
                }
                Backend::Message(Message::ReadyForQuery(_)) => break,
                _ => {
                    return Err(ReplicationError::Protocol(
                        "unexpected message while ending the replication stream".into(),
                    ))
                }
            }
        }
        self.conn.terminate().await
    }
}
