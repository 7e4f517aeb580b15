//! The only walsender code: a logical replication connection (startup, authentication, TLS),
//! its commands, and the CopyBoth stream of pgoutput messages.
//!
//! ```text
//! ReplicationClient::connect ──▶ identify_system / create_logical_slot / simple_query
//!        │ start_logical_replication (consumes the client)
//!        ▼
//! ReplicationStream::next ──▶ XLogData { data: pgoutput bytes } | Keepalive
//!        ▲ send_status(written, flushed, applied)          finish ──▶ CopyDone … Terminate
//! ```
//!
//! tokio-postgres cannot stream replication (no CopyBoth), so this speaks the protocol with
//! postgres-protocol's message codecs. Facts that cost time:
//! - postgres-protocol's backend parser does not know CopyBothResponse (`W`); `codec` frames it.
//! - A logical replication connection names a database, so pg_hba.conf matches it against
//!   the lines for that database, not the `replication` keyword (SPEC §9).
//! - Over TLS, PostgreSQL refuses SCRAM channel-binding flag "y" (client thinks the server
//!   cannot bind) whenever it offers SCRAM-SHA-256-PLUS, so over TLS we bind
//!   (`tls-server-end-point`), as libpq does.
//! - pgoutput's text values depend on DateStyle, IntervalStyle, TimeZone, extra_float_digits
//!   and bytea_output: the startup message pins them ([`crate::pg::SESSION_SETTINGS`]).
//! - The server disconnects after `wal_sender_timeout` without a status update; a keepalive
//!   with `reply_requested` asks for one. Status updates with the keepalive's `wal_end` may
//!   advance an idle slot, once everything received before it was acknowledged.

mod client;
pub(crate) mod codec;
mod connection;
mod error;
mod stream;

pub use client::{CreatedSlot, ReplicationClient, SnapshotAction, SystemIdentity};
pub use codec::ReplicationMessage;
pub use error::{ReplicationError, ServerError};
pub use stream::ReplicationStream;
