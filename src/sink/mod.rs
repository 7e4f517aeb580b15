//! The sink: consumes change topics and applies them to a target PostgreSQL, and verifies the
//! result.
//!
//! ```text
//! kafka::consumer ──▶ encode::decode ──SinkChange──▶ batch ──Segment──▶ apply (one txn + offsets) ──▶ next batch
//! ```

pub mod apply;
pub mod batch;
/// The decoded changes the sink applies (they live with the shared event types, since
/// `encode::decode` builds them).
pub use crate::event::change;
pub mod ddl;
pub mod dead_letter;
pub mod enums;
mod error;
pub mod offsets;
pub mod replay;
pub mod run;
pub mod schema_changes;
pub mod verify;
pub mod verify_all;

pub use error::SinkError;
