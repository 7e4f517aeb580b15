//! The sink's progress while it works through a backlog (a full load, or catching up after a
//! stop): every few seconds a log line per topic (a topic is a table) and one for them all,
//! with the records applied, their rate, the records the broker still holds for the group and
//! when they will be applied at that rate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::kafka::ConsumedRecord;

/// How often progress is logged while there is a backlog.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Records applied from one topic.
#[derive(Default)]
struct Counts {
    /// Since the last progress lines.
    records: u64,
    bytes: u64,
    /// In this session.
    total: u64,
}

/// Applied records and bytes per topic since the last progress lines.
pub(super) struct ApplyProgress {
    since: Instant,
    topics: BTreeMap<String, Counts>,
}

/// One progress line's figures.
#[derive(Debug, PartialEq)]
pub(super) struct ProgressLine {
    /// The topic, `None` for all of them.
    pub(super) topic: Option<String>,
    /// Records applied by this session.
    pub(super) records: u64,
    /// Records per second since the previous lines.
    pub(super) records_per_second: u64,
    /// Megabytes of records per second since the previous lines.
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
            topics: BTreeMap::new(),
        }
    }

    /// A batch was applied: `(topic, records, bytes)` for each of its topics; `backlog`
    /// gives the group's lag by topic, asked for only when lines are due. Returns the lines to log when they are due: one per topic with a backlog and one
    /// for all topics, only while a backlog is left, so a pipeline that keeps up stays quiet.
    pub(super) fn applied<'a>(
        &mut self,
        applied: impl Iterator<Item = (&'a str, u64, u64)>,
        backlog: impl FnOnce() -> BTreeMap<String, u64>,
        now: Instant,
    ) -> Vec<ProgressLine> {
        for (topic, records, bytes) in applied {
            if !self.topics.contains_key(topic) {
                self.topics.insert(topic.to_owned(), Counts::default());
            }
            let counts = self.topics.get_mut(topic).expect("just inserted");
            counts.records += records;
            counts.bytes += bytes;
            counts.total += records;
        }
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < PROGRESS_LOG_INTERVAL {
            return Vec::new();
        }
        let backlog = backlog();
        let seconds = elapsed.as_secs_f64();
        let line = |topic: Option<String>, counts: &Counts, backlog: u64| {
            let rate = counts.records as f64 / seconds;
            ProgressLine {
                topic,
                records: counts.total,
                records_per_second: rate as u64,
                megabytes_per_second: counts.bytes as f64 / 1e6 / seconds,
                backlog,
                eta_seconds: (backlog as f64 / rate.max(1.0)).round() as u64,
            }
        };
        let mut lines = Vec::new();
        let mut all = Counts::default();
        for (topic, counts) in &self.topics {
            let behind = backlog.get(topic).copied().unwrap_or(0);
            if behind > 0 {
                lines.push(line(Some(topic.clone()), counts, behind));
            }
            all.records += counts.records;
            all.bytes += counts.bytes;
            all.total += counts.total;
        }
        let behind: u64 = backlog.values().sum();
        if behind > 0 {
            lines.push(line(None, &all, behind));
        }
        for counts in self.topics.values_mut() {
            (counts.records, counts.bytes) = (0, 0);
        }
        self.since = now;
        lines
    }
}

/// `(topic, records, bytes)` for each topic of `records`, in the order they first appear.
pub(super) fn topic_counts(records: &[ConsumedRecord]) -> Vec<(String, u64, u64)> {
    let mut counts: Vec<(String, u64, u64)> = Vec::new();
    for record in records {
        let bytes = (record.value.as_ref().map_or(0, Vec::len)
            + record.key.as_ref().map_or(0, Vec::len)) as u64;
        match counts.iter_mut().find(|(topic, ..)| *topic == record.topic) {
            Some((_, records, total)) => {
                *records += 1;
                *total += bytes;
            }
            None => counts.push((record.topic.clone(), 1, bytes)),
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
        entries.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn batch(topic: &'static str, records: u64) -> impl Iterator<Item = (&'static str, u64, u64)> {
        std::iter::once((topic, records, records * 300))
    }

    #[test]
    fn lines_per_topic_and_in_all_every_interval_while_a_backlog_is_left() {
        let start = Instant::now();
        let second = |n| start + Duration::from_secs(n);
        let mut progress = ApplyProgress::new(start);
        let behind = backlog(&[("p.l1.a", 40_000), ("p.l1.b", 0)]);
        assert!(
            progress
                .applied(batch("p.l1.a", 10_000), || behind.clone(), second(1))
                .is_empty(),
            "not due yet"
        );
        let due = batch("p.l1.a", 40_000).chain(batch("p.l1.b", 5_000));
        let lines = progress.applied(due, || behind, second(5));
        assert_eq!(
            lines,
            [
                ProgressLine {
                    topic: Some("p.l1.a".into()),
                    records: 50_000,
                    records_per_second: 10_000,
                    megabytes_per_second: 3.0,
                    backlog: 40_000,
                    eta_seconds: 4,
                },
                ProgressLine {
                    topic: None,
                    records: 55_000,
                    records_per_second: 11_000,
                    megabytes_per_second: 3.3,
                    backlog: 40_000,
                    eta_seconds: 4,
                }
            ],
            "a topic without a backlog gets no line of its own"
        );
        let caught_up = backlog(&[("p.l1.a", 0)]);
        assert!(
            progress
                .applied(batch("p.l1.a", 1), || caught_up, second(10))
                .is_empty(),
            "caught up: nothing to report"
        );
        let lines = progress.applied(batch("p.l1.a", 5), || backlog(&[("p.l1.a", 7)]), second(15));
        assert_eq!((lines[0].records, lines[0].records_per_second), (50_006, 1));
        assert_eq!(
            lines[0].eta_seconds, 7,
            "no rate to speak of counts as one per second"
        );
    }
}
