//! Notices a consumer that stopped fetching: assigned partitions whose fetch position stays
//! put while nothing waits in the consumer's queue, although the broker holds records after
//! it. librdkafka then hands over nothing and says nothing, and the sink would wait forever
//! with a backlog; a new consumer (a new session) fetches again. Positions come from
//! librdkafka's statistics, which the same polls that hand records over serve, so a consumer
//! whose reader is busy (and polls no more) is never judged; a partition still for
//! [`FETCH_STALL_LIMIT`] is a suspect, and the broker's high watermark, asked on a connection
//! of its own, tells whether it has records to read (a broker that cannot answer is an outage,
//! not a stall).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;

/// How long an assigned partition's fetch position may stay put before the broker is asked
/// whether it has records after it.
pub const FETCH_STALL_LIMIT: Duration = Duration::from_secs(30);

/// An assigned partition whose fetch position has not moved for the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// How long it has not moved.
    pub seconds: u64,
}

impl Suspect {
    /// Describes it as stalled, standing `at` an offset with the broker's high watermark `end`.
    pub fn describe(&self, at: i64, end: i64) -> String {
        format!(
            "{}[{}] at {at} of {end} for {} s",
            self.topic, self.partition, self.seconds
        )
    }
}

/// One partition as a statistics report shows it.
#[derive(Debug, Clone)]
pub struct PartitionFetch {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Assigned to this consumer.
    pub assigned: bool,
    /// The next offset to fetch (negative: none yet).
    pub next_offset: i64,
    /// Records fetched and waiting to be polled.
    pub queued: i64,
}

impl PartitionFetch {
    /// Every partition of a statistics report (not librdkafka's internal partition -1).
    pub fn all(statistics: &Statistics) -> Vec<PartitionFetch> {
        statistics
            .topics
            .iter()
            .flat_map(|(topic, stats)| {
                stats
                    .partitions
                    .values()
                    .filter(|p| p.partition >= 0)
                    .map(|p| PartitionFetch {
                        topic: topic.clone(),
                        partition: p.partition,
                        assigned: p.desired,
                        next_offset: p.next_offset,
                        queued: p.fetchq_cnt,
                    })
            })
            .collect()
    }
}

/// Each assigned partition's fetch position and since when it stands there.
#[derive(Debug, Default)]
pub struct FetchWatch {
    positions: HashMap<(String, i32), (i64, Instant)>,
    /// Suspects the broker had records after, and the position they stood at then.
    behind: HashMap<(String, i32), i64>,
}

impl FetchWatch {
    /// Takes one statistics report at `now` and returns the assigned partitions whose fetch
    /// position has not moved for `limit`. Anything fetched and not yet read (on any
    /// partition: the consumer's queue is shared) means the reader is behind, not the
    /// fetcher, and starts every clock again.
    pub fn observe(
        &mut self,
        partitions: &[PartitionFetch],
        now: Instant,
        limit: Duration,
    ) -> Vec<Suspect> {
        if partitions.iter().any(|p| p.queued > 0) {
            self.positions.clear();
            self.behind.clear();
            return Vec::new();
        }
        let mut suspects = Vec::new();
        let mut positions = HashMap::new();
        for fetch in partitions.iter().filter(|p| p.assigned) {
            let key = (fetch.topic.clone(), fetch.partition);
            let since = match self.positions.get(&key) {
                Some(&(at, since)) if at == fetch.next_offset => since,
                _ => now,
            };
            let still = now.saturating_duration_since(since);
            if still >= limit {
                suspects.push(Suspect {
                    topic: fetch.topic.clone(),
                    partition: fetch.partition,
                    seconds: still.as_secs(),
                });
            }
            positions.insert(key, (fetch.next_offset, since));
        }
        self.positions = positions;
        suspects.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        suspects
    }

    /// Judges a suspect that stands `at` an offset, the broker's high watermark being `end`
    /// (`None`: the broker did not say). Stalled when the broker had records after it at this
    /// look and the previous one, its position the same at both; nothing after it clears it
    /// (its clock starts again at `now`).
    pub fn judge(&mut self, suspect: &Suspect, at: i64, end: Option<i64>, now: Instant) -> bool {
        let key = (suspect.topic.clone(), suspect.partition);
        if end.is_some_and(|end| end > at) {
            return self.behind.insert(key, at) == Some(at);
        }
        self.behind.remove(&key);
        if let Some(entry) = self.positions.get_mut(&key) {
            entry.1 = now;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(partition: i32, next_offset: i64, queued: i64) -> PartitionFetch {
        PartitionFetch {
            topic: "p.l1.t".into(),
            partition,
            assigned: true,
            next_offset,
            queued,
        }
    }

    const LIMIT: Duration = Duration::from_secs(30);

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn a_partition_whose_position_does_not_move_is_a_suspect_after_the_limit() {
        let (mut watch, start) = (FetchWatch::default(), Instant::now());
        assert!(watch
            .observe(&[fetch(0, 10, 0)], at(start, 0), LIMIT)
            .is_empty());
        assert!(watch
            .observe(&[fetch(0, 10, 0)], at(start, 25), LIMIT)
            .is_empty());
        let suspects = watch.observe(&[fetch(0, 10, 0), fetch(1, -1001, 0)], at(start, 30), LIMIT);
        assert_eq!(
            suspects,
            [Suspect {
                topic: "p.l1.t".into(),
                partition: 0,
                seconds: 30,
            }]
        );
        assert_eq!(
            suspects[0].describe(10, 60),
            "p.l1.t[0] at 10 of 60 for 30 s"
        );
        // Nothing after it at the broker: its clock starts again.
        assert!(!watch.judge(&suspects[0], 10, Some(10), at(start, 31)));
        assert!(watch
            .observe(&[fetch(0, 10, 0)], at(start, 60), LIMIT)
            .is_empty());
        let suspects = watch.observe(&[fetch(0, 10, 0)], at(start, 61), LIMIT);
        assert_eq!(suspects.len(), 1);
        // Records after it: stalled only when a second look finds it still there.
        assert!(!watch.judge(&suspects[0], 10, Some(12), at(start, 61)));
        assert!(
            !watch.judge(&suspects[0], 11, Some(12), at(start, 66)),
            "it moved"
        );
        assert!(watch.judge(&suspects[0], 11, Some(12), at(start, 71)));
        // A broker that does not answer is an outage, not a stall.
        assert!(!watch.judge(&suspects[0], 11, None, at(start, 76)));
        assert!(!watch.judge(&suspects[0], 11, Some(12), at(start, 81)));
    }

    #[test]
    fn moving_queued_or_unassigned_partitions_are_not_suspects() {
        let start = Instant::now();
        let mut watch = FetchWatch::default();
        watch.observe(&[fetch(0, 10, 0)], at(start, 0), LIMIT);
        assert!(watch
            .observe(&[fetch(0, 11, 0)], at(start, 20), LIMIT)
            .is_empty());
        assert!(
            watch
                .observe(&[fetch(0, 11, 0)], at(start, 40), LIMIT)
                .is_empty(),
            "the clock starts again when the position moves"
        );
        assert_eq!(
            watch
                .observe(&[fetch(0, 11, 0)], at(start, 50), LIMIT)
                .len(),
            1
        );

        let mut watch = FetchWatch::default();
        let reader_behind = [fetch(0, 10, 0), fetch(1, 5, 4)];
        watch.observe(&reader_behind, at(start, 0), LIMIT);
        assert!(
            watch
                .observe(&reader_behind, at(start, 60), LIMIT)
                .is_empty(),
            "records wait for the reader"
        );
        assert!(
            watch
                .observe(&[fetch(0, 10, 0)], at(start, 70), LIMIT)
                .is_empty(),
            "the clock started when the queue emptied"
        );

        let mut watch = FetchWatch::default();
        let unassigned = PartitionFetch {
            assigned: false,
            ..fetch(0, 10, 0)
        };
        watch.observe(std::slice::from_ref(&unassigned), at(start, 0), LIMIT);
        assert!(watch
            .observe(std::slice::from_ref(&unassigned), at(start, 60), LIMIT)
            .is_empty());
    }

    #[test]
    fn a_consumer_that_stops_fetching_a_backlog_fails_and_one_at_the_end_does_not() {
        use crate::kafka::consumer::{ChangeConsumer, Consumed, StartOffsets};
        use rdkafka::mocking::MockCluster;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
        use rdkafka::types::RDKafkaApiKey;
        use rdkafka::types::RDKafkaRespErr;
        use rdkafka::ClientConfig;
        use std::collections::BTreeMap;
        use tokio::sync::mpsc;

        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("p.l1.t", 1, 1).expect("mock topic");
        let brokers = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("producer");
        for i in 0..10 {
            let key = i.to_string();
            producer
                .send(BaseRecord::to("p.l1.t").key(&key).payload(&key))
                .expect("enqueue");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        let options: BTreeMap<String, String> = [("statistics.interval.ms", "100")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let start = |group: &str| {
            ChangeConsumer::watched(
                &brokers,
                group,
                &["p.l1.t".to_owned()],
                &options,
                StartOffsets::default(),
                Box::new(|_, _, _| {}),
                Duration::from_secs(1),
            )
            .expect("consumer")
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let next = |receiver: &mut mpsc::Receiver<Consumed>| {
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(4), receiver.recv())
                    .await
                    .ok()
                    .flatten()
            })
        };

        // Every fetch fails: librdkafka retries on and on, handing over nothing.
        mock.request_errors(
            RDKafkaApiKey::Fetch,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2000],
        );
        let (_stalled, mut receiver) = start("stalled");
        let outcome = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), receiver.recv()).await
        });
        let failed = match outcome {
            Ok(Some(Consumed::Failed(error))) => error,
            Ok(Some(Consumed::Records { records, .. })) => {
                panic!("{} records arrived although fetches fail", records.len())
            }
            Ok(None) | Err(_) => panic!("no stall was reported"),
        };
        let text = failed.to_string();
        assert!(text.contains("p.l1.t[0] at 0 of 10 for "), "{text}");

        // Fetches work again: a consumer reads all and then stands at the end without failing.
        mock.clear_request_errors(RDKafkaApiKey::Fetch);
        let (_reading, mut receiver) = start("reading");
        let mut offsets = Vec::new();
        while offsets.len() < 10 {
            match next(&mut receiver) {
                Some(Consumed::Records { records, .. }) => {
                    offsets.extend(records.iter().map(|r| r.offset));
                }
                Some(Consumed::Failed(error)) => panic!("{error}"),
                None => panic!("records did not arrive: {offsets:?}"),
            }
        }
        assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
        for _ in 0..2 {
            if let Some(Consumed::Failed(error)) = next(&mut receiver) {
                panic!("a consumer at the end failed: {error}");
            }
        }
    }
}
