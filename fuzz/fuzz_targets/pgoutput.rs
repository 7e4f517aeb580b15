#![no_main]

mod limit;

#[global_allocator]
static ALLOCATOR: limit::Limited = limit::Limited;

// The body is pgcdc::fuzz::pgoutput, shared with the corpus replay test of `cargo test`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pgcdc::fuzz::pgoutput(data));
