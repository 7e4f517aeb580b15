//! The one integration test binary: every test module shares one build, one link of
//! librdkafka and one test bed (a PostgreSQL cluster, a broker and a schema registry per
//! process). Modules live in subdirectories (`tests/<name>/mod.rs`) because Cargo would
//! build every `tests/*.rs` file as a test binary of its own.

mod bad_input;
mod chaos;
mod compatibility;
mod crash;
mod ddl;
mod deploy;
mod encode;
mod idle;
mod messages;
mod outage;
mod prerequisites;
mod producer;
mod prometheus;
mod real_schema;
mod reconnect;
mod replication;
pub mod sink;
mod snapshot;
mod source_ops;
mod support;
mod testbed;
mod toast;
mod transactions;
mod types;
mod verify;
