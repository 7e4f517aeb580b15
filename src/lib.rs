//! pgcdc: change data capture from PostgreSQL logical replication to Kafka topics.
//!
//! ```text
//! replication ──XLogData──▶ pgoutput ──Message──▶ relations ──ChangeEvent──▶ encode ──▶ kafka::producer
//!      ▲                                                                                   │ delivery acks
//!      └───────────── flushed LSN ◀────────── progress (acknowledged-LSN tracker) ◀───────┘
//! ```
//!
//! `cdc-source` (`src/bin/cdc-source.rs`) runs [`source::run`].

pub mod cli;
pub mod config;
pub mod encode;
pub mod event;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod kafka;
pub mod lsn;
pub mod metrics;
pub mod pg;
pub mod sink;
pub mod source;
