//! `cdc-sink`: applies the change topics to a target PostgreSQL database and verifies the result.

pub mod change;
pub mod verify;
