//! Where the initial snapshot's workers spend their time (reading, encoding, producing), for
//! its completion log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Nanoseconds the workers spent, summed over them, per stage.
#[derive(Default)]
pub struct Stages {
    /// Waiting for the server's rows.
    pub read: AtomicU64,
    /// Parsing rows and encoding records.
    pub encode: AtomicU64,
    /// Handing records to the producer, waiting while its queue is full.
    pub produce: AtomicU64,
}

impl Stages {
    /// Adds a chunk's figures.
    pub fn add(&self, chunk: &ChunkClock) {
        self.read.fetch_add(chunk.read, Ordering::Relaxed);
        self.encode.fetch_add(chunk.encode, Ordering::Relaxed);
        self.produce.fetch_add(chunk.produce, Ordering::Relaxed);
    }

    pub fn seconds(stage: &AtomicU64) -> String {
        format!("{:.1}", stage.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// One worker's nanoseconds per stage while it reads a chunk, added to [`Stages`] once the
/// chunk is done, so rows touch no memory the workers share.
#[derive(Default)]
pub struct ChunkClock {
    pub read: u64,
    pub encode: u64,
    pub produce: u64,
}

/// Adds the time since `since` to `stage`; returns now.
pub fn lap(stage: &mut u64, since: Instant) -> Instant {
    let now = Instant::now();
    *stage += u64::try_from(now.duration_since(since).as_nanos()).unwrap_or(u64::MAX);
    now
}
