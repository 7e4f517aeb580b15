//! The sink: consumes change topics and applies them to a target PostgreSQL.

pub mod batch;
pub mod change;
