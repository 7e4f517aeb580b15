//! Prometheus metrics (SPEC §7) and the `/metrics` + `/healthz` endpoint both binaries serve.
//!
//! The endpoint is a few lines over a TCP listener rather than an HTTP framework: it answers
//! two GET paths for a scraper, and keeps the binaries small.

mod sink;
mod source;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub use sink::SinkMetrics;
pub use source::{SnapshotCounters, SourceMetrics};

/// Metric names (SPEC §7), in one place.
pub mod names {
    /// Change events published, by table and op.
    pub const SOURCE_EVENTS: &str = "pgcdc_source_events_total";
    /// Bytes of WAL received but not yet confirmed.
    pub const SOURCE_LAG_BYTES: &str = "pgcdc_source_lag_bytes";
    /// Milliseconds between the last published transaction's commit and its publication.
    pub const SOURCE_MS_BEHIND: &str = "pgcdc_source_ms_behind_source";
    /// The slot's confirmed flush LSN as a number.
    pub const SOURCE_CONFIRMED_LSN: &str = "pgcdc_source_confirmed_lsn";
    /// Records enqueued but not yet acknowledged by the broker.
    pub const SOURCE_INFLIGHT: &str = "pgcdc_source_inflight_events";
    /// Errors that interrupted streaming, by kind.
    pub const SOURCE_ERRORS: &str = "pgcdc_source_errors_total";
    /// Rows read by snapshots (initial and incremental), by table.
    pub const SOURCE_SNAPSHOT_ROWS: &str = "pgcdc_source_snapshot_rows_total";
    /// Bytes (the rows' text forms) read by the initial snapshot, by table.
    pub const SOURCE_SNAPSHOT_BYTES: &str = "pgcdc_source_snapshot_bytes_total";
    /// The planner's estimate of a table's rows when its initial snapshot started, by table.
    pub const SOURCE_SNAPSHOT_ROWS_ESTIMATED: &str = "pgcdc_source_snapshot_rows_estimated";
    /// 1 once a table's snapshot has been completed, by table.
    pub const SOURCE_SNAPSHOT_COMPLETED: &str = "pgcdc_source_snapshot_completed";
    /// Rows written or deleted in the target, by table and op.
    pub const SINK_APPLIED: &str = "pgcdc_sink_applied_total";
    /// Seconds per applied batch (one target transaction).
    pub const SINK_BATCH_SECONDS: &str = "pgcdc_sink_batch_seconds";
    /// Records between a partition's high watermark and the next offset to apply.
    pub const SINK_CONSUMER_LAG: &str = "pgcdc_sink_consumer_lag";
    /// Records routed to the dead-letter topic, by source topic.
    pub const SINK_DEAD_LETTERS: &str = "pgcdc_sink_dead_letters_total";
    /// Changes skipped as replays of what the target already has, by table.
    pub const SINK_SKIPPED: &str = "pgcdc_sink_skipped_total";
    /// Errors that interrupted applying, by kind.
    /// Seconds the sink's decoding task spent per stage: `fetch` (waiting for the consumer),
    /// `decode`, `handover` (waiting for the applier to take decoded records).
    pub const SINK_STAGE_SECONDS: &str = "pgcdc_sink_stage_seconds_total";
    pub const SINK_ERRORS: &str = "pgcdc_sink_errors_total";
}

/// A metric could not be registered or the endpoint could not listen.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Registering a collector failed (a programming error: duplicate name).
    #[error("register metric: {0}")]
    Register(#[from] prometheus::Error),
    /// The listen address could not be bound.
    #[error("metrics.listen {addr}: cannot listen: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A registry and the health flag behind `/metrics` and `/healthz`.
#[derive(Clone)]
struct Endpoint {
    registry: Registry,
    healthy: Arc<AtomicBool>,
}

impl Endpoint {
    /// Adds the process collector (RSS, CPU, open fds) to `registry`.
    fn new(registry: Registry) -> Endpoint {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(error) = registry.register(Box::new(process)) {
            tracing::warn!(%error, "process metrics unavailable");
        }
        Endpoint {
            registry,
            healthy: Arc::default(),
        }
    }

    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Serves `/metrics` and `/healthz` on `addr` until the process ends.
    pub async fn serve(&self, addr: SocketAddr) -> Result<(), MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Listen { addr, source })?;
        let endpoint = self.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let metrics = endpoint.clone();
                tokio::spawn(async move {
                    let response = metrics.respond(&read_request_path(&mut socket).await);
                    let _ = socket.write_all(&response).await;
                });
            }
        });
        Ok(())
    }

    fn respond(&self, path: &str) -> Vec<u8> {
        match path {
            "/metrics" => {
                let mut body = Vec::new();
                let _ = TextEncoder::new().encode(&self.registry.gather(), &mut body);
                http_response("200 OK", "text/plain; version=0.0.4", &body)
            }
            "/healthz" if self.healthy.load(Ordering::Relaxed) => {
                http_response("200 OK", "text/plain", b"ok\n")
            }
            "/healthz" => {
                http_response("503 Service Unavailable", "text/plain", b"not streaming\n")
            }
            _ => http_response("404 Not Found", "text/plain", b"not found\n"),
        }
    }
}

/// Reads the request head (bounded) and returns the path of its request line.
async fn read_request_path(socket: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) => path.split('?').next().unwrap_or("").to_owned(),
        _ => String::new(),
    }
}

fn http_response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}
