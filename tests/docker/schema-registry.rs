//! The test suite's schema registry (tests/support/registry.rs) as a program: the docker smoke
//! test (scripts/docker-smoke.sh) serves it beside a tansu broker in its stand-in for Redpanda,
//! whose built-in registry cannot be pulled there.
//!
//! Usage: `schema-registry ADDRESS`, e.g. `schema-registry 0.0.0.0:8081`; it serves until killed.

use std::process::ExitCode;

// The program serves the registry; the accessors the tests call on it stay unused here.
#[allow(dead_code)]
#[path = "../support/registry.rs"]
mod registry;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(address), None) = (args.next(), args.next()) else {
        eprintln!("usage: schema-registry ADDRESS (e.g. 0.0.0.0:8081)");
        return ExitCode::from(2);
    };
    match registry::SchemaRegistry::start_on(&address) {
        Ok(registry) => {
            eprintln!("schema registry serving at {}", registry.url());
            loop {
                std::thread::park();
            }
        }
        Err(error) => {
            eprintln!("schema-registry: cannot listen on {address}: {error}");
            ExitCode::from(1)
        }
    }
}
