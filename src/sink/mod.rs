//! cdc-sink: applies the change events of cdc-source's topics to a target PostgreSQL.

pub mod change;
