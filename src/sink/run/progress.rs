//! The sink's progress while it works through a backlog (a full load, or catching up after a
//! stop): every few seconds a log line with the changes applied, their rate, the records the
//! broker still holds for the group and when they will be applied at that rate.

use std::time::{Duration, Instant};

/// How often progress is logged while there is a backlog.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Applied changes and bytes since the last progress line.
pub(super) struct ApplyProgress {
    since: Instant,
    changes: u64,
    bytes: u64,
    total: u64,
}

/// One progress line's figures.
#[derive(Debug, PartialEq)]
pub(super) struct ProgressLine {
    /// Changes applied by this session.
    pub(super) changes: u64,
    /// Changes per second since the previous line.
    pub(super) changes_per_second: u64,
    /// Megabytes of records per second since the previous line.
    pub(super) megabytes_per_second: f64,
    /// Records the broker holds beyond what was applied.
    pub(super) backlog: u64,
    /// Seconds until the backlog is applied at the current rate.
    pub(super) eta_seconds: u64,
}

impl ApplyProgress {
    /// Starts counting now.
    pub(super) fn new(now: Instant) -> ApplyProgress {
        ApplyProgress {
            since: now,
            changes: 0,
            bytes: 0,
            total: 0,
        }
    }

    /// A batch of `changes` changes from `bytes` bytes of records was applied; `backlog` is
    /// the group's lag. Returns the line to log when one is due: only while a backlog is left,
    /// so a pipeline that keeps up stays quiet.
    pub(super) fn applied(
        &mut self,
        changes: usize,
        bytes: usize,
        backlog: u64,
        now: Instant,
    ) -> Option<ProgressLine> {
        self.changes += changes as u64;
        self.bytes += bytes as u64;
        self.total += changes as u64;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < PROGRESS_LOG_INTERVAL {
            return None;
        }
        let seconds = elapsed.as_secs_f64();
        let rate = self.changes as f64 / seconds;
        let line = ProgressLine {
            changes: self.total,
            changes_per_second: rate as u64,
            megabytes_per_second: self.bytes as f64 / 1e6 / seconds,
            backlog,
            eta_seconds: (backlog as f64 / rate.max(1.0)).round() as u64,
        };
        (self.changes, self.bytes, self.since) = (0, 0, now);
        (backlog > 0).then_some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_every_interval_while_a_backlog_is_left() {
        let start = Instant::now();
        let mut progress = ApplyProgress::new(start);
        assert_eq!(
            progress.applied(10_000, 3_000_000, 90_000, start + Duration::from_secs(1)),
            None,
            "not due yet"
        );
        let line = progress
            .applied(40_000, 12_000_000, 50_000, start + Duration::from_secs(5))
            .expect("due");
        assert_eq!(
            line,
            ProgressLine {
                changes: 50_000,
                changes_per_second: 10_000,
                megabytes_per_second: 3.0,
                backlog: 50_000,
                eta_seconds: 5,
            }
        );
        assert_eq!(
            progress.applied(50_000, 1, 0, start + Duration::from_secs(10)),
            None,
            "caught up: nothing to report"
        );
        let line = progress
            .applied(5, 1, 7, start + Duration::from_secs(15))
            .expect("due");
        assert_eq!((line.changes, line.changes_per_second), (100_005, 1));
        assert_eq!(
            line.eta_seconds, 7,
            "no rate to speak of counts as one per second"
        );
    }
}
