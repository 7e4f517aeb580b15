//! Prometheus metrics (SPEC §7) and the `/metrics` + `/healthz` endpoint.
//!
//! The endpoint is a few lines over a TCP listener rather than an HTTP framework: it answers
//! two GET paths for a scraper, and keeps the binary small.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{Encoder as _, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::event::{Op, TableSchema};
use crate::lsn::Lsn;

/// Metric names (SPEC §7), in one place.
pub mod names {
    /// Change events published, by table and op.
    pub const SOURCE_EVENTS: &str = "pgcdc_source_events_total";
    /// Bytes of WAL received but not yet confirmed.
    pub const SOURCE_LAG_BYTES: &str = "pgcdc_source_lag_bytes";
    /// The slot's confirmed flush LSN as a number.
    pub const SOURCE_CONFIRMED_LSN: &str = "pgcdc_source_confirmed_lsn";
    /// Records enqueued but not yet acknowledged by the broker.
    pub const SOURCE_INFLIGHT: &str = "pgcdc_source_inflight_events";
    /// Errors that interrupted streaming, by kind.
    pub const SOURCE_ERRORS: &str = "pgcdc_source_errors_total";
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

/// cdc-source's metrics, cheap to update from the streaming loop.
#[derive(Clone)]
pub struct SourceMetrics {
    registry: Registry,
    events: IntCounterVec,
    event_counters: Arc<Mutex<HashMap<(u32, Op), IntCounter>>>,
    lag_bytes: IntGauge,
    confirmed_lsn: IntGauge,
    inflight: IntGauge,
    errors: IntCounterVec,
    healthy: Arc<AtomicBool>,
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
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(lag_bytes.clone()))?;
        registry.register(Box::new(confirmed_lsn.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(SourceMetrics {
            registry,
            events,
            event_counters: Arc::default(),
            lag_bytes,
            confirmed_lsn,
            inflight,
            errors,
            healthy: Arc::default(),
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

    /// What was confirmed, received and is still in flight, after a status update.
    pub fn observe_progress(&self, confirmed: Lsn, received: Lsn, inflight: u64) {
        self.confirmed_lsn.set(confirmed.0 as i64);
        self.lag_bytes
            .set(received.0.saturating_sub(confirmed.0) as i64);
        self.inflight.set(inflight as i64);
        self.healthy.store(true, Ordering::Relaxed);
    }

    /// An error interrupted streaming.
    pub fn count_error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
        self.healthy.store(false, Ordering::Relaxed);
    }

    /// Serves `/metrics` and `/healthz` on `addr` until the process ends.
    pub async fn serve(&self, addr: SocketAddr) -> Result<(), MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Listen { addr, source })?;
        let metrics = self.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let metrics = metrics.clone();
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
