//! cdc-source's metrics (SPEC §7).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{names, Endpoint, MetricsError};
use crate::event::{Op, TableSchema};
use crate::lsn::Lsn;

/// cdc-source's metrics, cheap to update from the streaming loop.
#[derive(Clone)]
pub struct SourceMetrics {
    endpoint: Endpoint,
    events: IntCounterVec,
    event_counters: Arc<Mutex<HashMap<(u32, Op), IntCounter>>>,
    lag_bytes: IntGauge,
    ms_behind: IntGauge,
    confirmed_lsn: IntGauge,
    inflight: IntGauge,
    errors: IntCounterVec,
    snapshot_rows: IntCounterVec,
    snapshot_bytes: IntCounterVec,
    snapshot_estimate: IntGaugeVec,
    snapshot_completed: IntGaugeVec,
}

/// The counters an initial snapshot updates for one table.
pub struct SnapshotCounters {
    /// Rows read.
    pub rows: IntCounter,
    /// Bytes read, as the rows' text forms.
    pub bytes: IntCounter,
}

impl SourceMetrics {
    /// Registers the source's collectors and the process collector.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new(
                names::SOURCE_EVENTS,
                "Change events published, by table and op",
            ),
            &["table", "op"],
        )?;
        let lag_bytes = IntGauge::new(
            names::SOURCE_LAG_BYTES,
            "WAL received from the server but not yet confirmed, in bytes",
        )?;
        let ms_behind = IntGauge::new(
            names::SOURCE_MS_BEHIND,
            "Milliseconds between the last published transaction's commit and its publication",
        )?;
        let confirmed_lsn = IntGauge::new(
            names::SOURCE_CONFIRMED_LSN,
            "The LSN last confirmed to the slot",
        )?;
        let inflight = IntGauge::new(
            names::SOURCE_INFLIGHT,
            "Records enqueued but not yet acknowledged by the broker",
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                names::SOURCE_ERRORS,
                "Errors that interrupted streaming, by kind",
            ),
            &["kind"],
        )?;
        let snapshot_rows = IntCounterVec::new(
            Opts::new(
                names::SOURCE_SNAPSHOT_ROWS,
                "Rows read by initial and incremental snapshots, by table",
            ),
            &["table"],
        )?;
        let snapshot_bytes = IntCounterVec::new(
            Opts::new(
                names::SOURCE_SNAPSHOT_BYTES,
                "Bytes (the rows' text forms) read by the initial snapshot, by table",
            ),
            &["table"],
        )?;
        let snapshot_estimate = IntGaugeVec::new(
            Opts::new(
                names::SOURCE_SNAPSHOT_ROWS_ESTIMATED,
                "The planner's estimate of the table's rows when its initial snapshot started",
            ),
            &["table"],
        )?;
        let snapshot_completed = IntGaugeVec::new(
            Opts::new(
                names::SOURCE_SNAPSHOT_COMPLETED,
                "1 once the table's snapshot was completed in this process, else 0",
            ),
            &["table"],
        )?;
        registry.register(Box::new(snapshot_rows.clone()))?;
        registry.register(Box::new(snapshot_bytes.clone()))?;
        registry.register(Box::new(snapshot_estimate.clone()))?;
        registry.register(Box::new(snapshot_completed.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(lag_bytes.clone()))?;
        registry.register(Box::new(ms_behind.clone()))?;
        registry.register(Box::new(confirmed_lsn.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(SourceMetrics {
            endpoint: Endpoint::new(registry),
            events,
            event_counters: Arc::default(),
            lag_bytes,
            ms_behind,
            confirmed_lsn,
            inflight,
            errors,
            snapshot_rows,
            snapshot_bytes,
            snapshot_estimate,
            snapshot_completed,
        })
    }

    /// One change event published.
    pub fn count_event(&self, table: &TableSchema, op: Op) {
        let mut counters = self.event_counters.lock().expect("metrics lock");
        counters
            .entry((table.relation_id, op))
            .or_insert_with(|| {
                self.events
                    .with_label_values(&[&table.qualified_name(), op.code()])
            })
            .inc();
    }

    /// A transaction committed at `commit_ts_us` was published at `now_us`.
    pub fn observe_commit(&self, commit_ts_us: i64, now_us: i64) {
        self.ms_behind.set(((now_us - commit_ts_us) / 1000).max(0));
    }

    /// What was confirmed, received and is still in flight, after a status update.
    pub fn observe_progress(&self, confirmed: Lsn, received: Lsn, inflight: u64) {
        self.confirmed_lsn.set(confirmed.0 as i64);
        self.lag_bytes
            .set(received.0.saturating_sub(confirmed.0) as i64);
        self.inflight.set(inflight as i64);
        self.endpoint.set_healthy(true);
    }

    /// The initial snapshot of `table` (`schema.table`), estimated at `estimate` rows,
    /// started: its completion gauge reads 0 until done.
    pub fn snapshot_started(&self, table: &str, estimate: u64) -> SnapshotCounters {
        self.snapshot_completed.with_label_values(&[table]).set(0);
        self.snapshot_estimate
            .with_label_values(&[table])
            .set(i64::try_from(estimate).unwrap_or(i64::MAX));
        self.endpoint.set_healthy(true);
        SnapshotCounters {
            rows: self.snapshot_rows(table),
            bytes: self.snapshot_bytes.with_label_values(&[table]),
        }
    }

    /// The snapshot row counter of `table`.
    pub fn snapshot_rows(&self, table: &str) -> IntCounter {
        self.snapshot_rows.with_label_values(&[table])
    }

    /// The snapshot of `table` was completed (every row acknowledged by the broker).
    pub fn snapshot_completed(&self, table: &str) {
        self.snapshot_completed.with_label_values(&[table]).set(1);
    }

    /// An error interrupted streaming.
    pub fn count_error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
        self.endpoint.set_healthy(false);
    }

    /// Serves `/metrics` and `/healthz` on `addr` until the process ends.
    pub async fn serve(&self, addr: SocketAddr) -> Result<(), MetricsError> {
        self.endpoint.serve(addr).await
    }
}
