//! cdc-sink's metrics (SPEC §7).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::{names, Endpoint, MetricsError};
use crate::event::change::SinkTable;
use crate::kafka::LagReport;

/// cdc-sink's metrics, cheap to update per batch.
#[derive(Clone)]
pub struct SinkMetrics {
    endpoint: Endpoint,
    applied: IntCounterVec,
    batch_seconds: Histogram,
    consumer_lag: IntGaugeVec,
    dead_letters: IntCounterVec,
    skipped: IntCounterVec,
    errors: IntCounterVec,
    stage_seconds: CounterVec,
}

impl SinkMetrics {
    /// Registers the sink's collectors and the process collector.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let applied = IntCounterVec::new(
            Opts::new(
                names::SINK_APPLIED,
                "Rows written or deleted in the target, by table and op",
            ),
            &["table", "op"],
        )?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                names::SINK_BATCH_SECONDS,
                "Seconds per applied batch (one target transaction)",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                names::SINK_CONSUMER_LAG,
                "Records between a partition's high watermark and the next offset to apply",
            ),
            &["topic", "partition"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                names::SINK_DEAD_LETTERS,
                "Records routed to the dead-letter topic, by source topic",
            ),
            &["topic"],
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                names::SINK_SKIPPED,
                "Changes skipped as replays of what the target already has, by table",
            ),
            &["table"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                names::SINK_ERRORS,
                "Errors that interrupted applying, by kind",
            ),
            &["kind"],
        )?;
        let stage_seconds = CounterVec::new(
            Opts::new(
                names::SINK_STAGE_SECONDS,
                "Seconds the decoding task spent waiting for the consumer (fetch), decoding \
                 (decode) and waiting for the applier (handover)",
            ),
            &["stage"],
        )?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(consumer_lag.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(SinkMetrics {
            endpoint: Endpoint::new(registry),
            applied,
            batch_seconds,
            consumer_lag,
            dead_letters,
            skipped,
            errors,
            stage_seconds,
        })
    }

    /// `rows` rows of `table` were applied as `op` (`upsert`, `delete` or `truncate`).
    pub fn count_applied(&self, table: &SinkTable, op: &str, rows: usize) {
        if rows > 0 {
            self.applied
                .with_label_values(&[&format!("{}.{}", table.schema, table.table), op])
                .inc_by(rows as u64);
        }
    }

    /// A batch committed after `elapsed`.
    pub fn observe_batch(&self, elapsed: Duration) {
        self.batch_seconds.observe(elapsed.as_secs_f64());
        self.endpoint.set_healthy(true);
    }

    /// A change was skipped as a replay.
    pub fn count_skipped(&self, table: &SinkTable) {
        self.skipped
            .with_label_values(&[&format!("{}.{}", table.schema, table.table)])
            .inc();
    }

    /// Where the consumer reports each partition's lag.
    pub fn lag_report(&self) -> LagReport {
        let lag = self.consumer_lag.clone();
        Box::new(move |topic, partition, records| {
            lag.with_label_values(&[topic, &partition.to_string()])
                .set(records);
        })
    }

    /// Records the broker holds beyond what was applied, by topic, over the partitions
    /// reported.
    pub fn lag_by_topic(&self) -> BTreeMap<String, u64> {
        use prometheus::core::Collector;
        let mut lag = BTreeMap::new();
        for family in self.consumer_lag.collect() {
            for metric in family.get_metric() {
                let topic = metric
                    .get_label()
                    .iter()
                    .find(|label| label.get_name() == "topic")
                    .map(|label| label.get_value().to_owned())
                    .unwrap_or_default();
                *lag.entry(topic).or_insert(0) += metric.get_gauge().get_value().max(0.0) as u64;
            }
        }
        lag
    }

    /// The seconds counter of a pipeline stage (see [`names::SINK_STAGE_SECONDS`]).
    pub fn stage_seconds(&self, stage: &str) -> Counter {
        self.stage_seconds.with_label_values(&[stage])
    }

    /// A record went to the dead-letter topic.
    pub fn count_dead_letter(&self, topic: &str) {
        self.dead_letters.with_label_values(&[topic]).inc();
    }

    /// An error interrupted applying.
    pub fn count_error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
        self.endpoint.set_healthy(false);
    }

    /// Connected and consuming (or not).
    pub fn set_healthy(&self, healthy: bool) {
        self.endpoint.set_healthy(healthy);
    }

    /// Serves `/metrics` and `/healthz` on `addr` until the process ends.
    pub async fn serve(&self, addr: SocketAddr) -> Result<(), MetricsError> {
        self.endpoint.serve(addr).await
    }
}
