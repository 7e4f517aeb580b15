//! The source: reads a pgoutput slot and publishes change events.

pub mod pgoutput;
pub mod progress;
pub mod replication;
