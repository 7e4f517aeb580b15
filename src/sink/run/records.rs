//! Where a session's records come from: the broker, through the group's consumer, or records
//! held in memory, which run the same decode, batch and apply code without a broker in the
//! way (how the apply engine's own speed is measured).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};

use super::AbortOnDrop;
use crate::kafka::{ChangeConsumer, Consumed, ConsumedRecord, KafkaError};
use crate::sink::offsets::Partition;

/// Records in a chunk of the memory feed, as many as the consumer hands over at most.
const CHUNK: usize = 1024;

/// The session's source of records, besides the channel that delivers them.
pub(super) enum RecordSource {
    /// The group's consumer on the broker.
    Broker(ChangeConsumer),
    /// Records held in memory.
    Memory(MemoryFeed),
}

impl RecordSource {
    /// Each partition of `topic` with its low and high watermark; none when it has none.
    pub(super) async fn watermarks(
        &self,
        topic: &str,
    ) -> Result<HashMap<i32, (i64, i64)>, KafkaError> {
        match self {
            RecordSource::Broker(consumer) => consumer.watermarks(topic).await,
            RecordSource::Memory(feed) => Ok(feed.watermarks(topic)),
        }
    }

    /// Whether partitions were assigned since the last call.
    pub(super) fn take_assignment(&self) -> bool {
        match self {
            RecordSource::Broker(consumer) => consumer.take_assignment(),
            RecordSource::Memory(feed) => feed.assigned.swap(false, Ordering::SeqCst),
        }
    }

    /// Makes `partition` of `topic` deliver again from `offset`.
    pub(super) fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        match self {
            RecordSource::Broker(consumer) => consumer.seek(topic, partition, offset),
            RecordSource::Memory(feed) => {
                feed.seek(&(topic.to_owned(), partition), offset);
                Ok(())
            }
        }
    }

    /// Tells the group the offsets applied. Records in memory have no group: their progress
    /// is the offsets stored in the target, as always.
    pub(super) fn commit(&self, next_offsets: &HashMap<Partition, i64>) {
        if let RecordSource::Broker(consumer) = self {
            consumer.commit(next_offsets);
        }
    }
}

/// Each partition's records in offset order, and the index of the next one to hand over.
#[derive(Default)]
struct Partitions {
    queues: BTreeMap<Partition, (Vec<ConsumedRecord>, usize)>,
    /// The partition the last chunk came from; chunks take partitions in turn.
    last: Option<Partition>,
}

impl Partitions {
    /// The next partition's next run of records, and whether nothing is left after it.
    fn next_chunk(&mut self) -> Option<(Vec<ConsumedRecord>, bool)> {
        let waiting = |(_, (records, next)): &(&Partition, &(Vec<ConsumedRecord>, usize))| {
            *next < records.len()
        };
        let after = self
            .queues
            .iter()
            .filter(|(partition, _)| self.last.as_ref().is_none_or(|last| *partition > last))
            .find(waiting);
        let (partition, _) = after.or_else(|| self.queues.iter().find(waiting))?;
        let partition = partition.clone();
        let (records, next) = self.queues.get_mut(&partition).expect("a queue");
        let end = (*next + CHUNK).min(records.len());
        let chunk = records[*next..end].to_vec();
        *next = end;
        self.last = Some(partition);
        let caught_up = self
            .queues
            .values()
            .all(|(records, next)| *next == records.len());
        Some((chunk, caught_up))
    }
}

/// Records held in memory, handed over the way the consumer hands them over: chunks of one
/// partition's consecutive records, `caught_up` once nothing is left to hand over.
pub(super) struct MemoryFeed {
    partitions: Arc<Mutex<Partitions>>,
    more: Arc<Notify>,
    assigned: AtomicBool,
    _feeding: AbortOnDrop,
}

impl MemoryFeed {
    /// Starts handing `records` over on the returned channel.
    pub(super) fn start(records: Vec<ConsumedRecord>) -> (MemoryFeed, mpsc::Receiver<Consumed>) {
        let mut partitions = Partitions::default();
        for record in records {
            let partition = (record.topic.clone(), record.partition);
            partitions
                .queues
                .entry(partition)
                .or_default()
                .0
                .push(record);
        }
        for (records, _) in partitions.queues.values_mut() {
            records.sort_by_key(|record| record.offset);
        }
        let partitions = Arc::new(Mutex::new(partitions));
        let more = Arc::new(Notify::new());
        let (sender, receiver) = mpsc::channel(2);
        let feeding = {
            let (partitions, more) = (Arc::clone(&partitions), Arc::clone(&more));
            tokio::spawn(async move {
                loop {
                    let chunk = partitions.lock().expect("memory feed lock").next_chunk();
                    match chunk {
                        Some((records, caught_up)) => {
                            let chunk = Consumed::Records { records, caught_up };
                            if sender.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        None => more.notified().await,
                    }
                }
            })
        };
        let feed = MemoryFeed {
            partitions,
            more,
            assigned: AtomicBool::new(true),
            _feeding: AbortOnDrop(feeding),
        };
        (feed, receiver)
    }

    fn watermarks(&self, topic: &str) -> HashMap<i32, (i64, i64)> {
        let partitions = self.partitions.lock().expect("memory feed lock");
        partitions
            .queues
            .iter()
            .filter(|((name, _), _)| name == topic)
            .filter_map(|((_, partition), (records, _))| {
                let (first, last) = (records.first()?, records.last()?);
                Some((*partition, (first.offset, last.offset + 1)))
            })
            .collect()
    }

    fn seek(&self, partition: &Partition, offset: i64) {
        let mut partitions = self.partitions.lock().expect("memory feed lock");
        if let Some((records, next)) = partitions.queues.get_mut(partition) {
            *next = records.partition_point(|record| record.offset < offset);
        }
        drop(partitions);
        self.more.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            value: Some(vec![1]),
        }
    }

    fn offsets(records: &[ConsumedRecord]) -> Vec<(i32, i64)> {
        records.iter().map(|r| (r.partition, r.offset)).collect()
    }

    #[tokio::test]
    async fn chunks_take_partitions_in_turn_and_say_when_nothing_is_left() {
        let mut records: Vec<ConsumedRecord> =
            (0..CHUNK as i64 + 1).map(|o| record(0, o)).collect();
        records.push(record(1, 5));
        let (feed, mut chunks) = MemoryFeed::start(records);
        let mut seen = Vec::new();
        for _ in 0..3 {
            match chunks.recv().await.expect("a chunk") {
                Consumed::Records { records, caught_up } => {
                    seen.push((records.len(), records[0].partition, caught_up));
                }
                Consumed::Failed(error) => panic!("{error}"),
            }
        }
        assert_eq!(seen, [(CHUNK, 0, false), (1, 1, false), (1, 0, true)]);
        assert_eq!(
            feed.watermarks("t"),
            HashMap::from([(0, (0, 1025)), (1, (5, 6))])
        );
        assert!(feed.watermarks("other").is_empty());
    }

    #[tokio::test]
    async fn a_seek_hands_a_partition_over_again_from_the_offset() {
        let (feed, mut chunks) = MemoryFeed::start((0..4).map(|o| record(0, o)).collect());
        let Some(Consumed::Records { records, .. }) = chunks.recv().await else {
            panic!("a chunk");
        };
        assert_eq!(offsets(&records), [(0, 0), (0, 1), (0, 2), (0, 3)]);
        let source = RecordSource::Memory(feed);
        assert!(source.take_assignment());
        assert!(!source.take_assignment());
        source.seek("t", 0, 2).expect("seek");
        let Some(Consumed::Records { records, caught_up }) = chunks.recv().await else {
            panic!("a chunk after the seek");
        };
        assert_eq!(offsets(&records), [(0, 2), (0, 3)]);
        assert!(caught_up);
    }
}
