//! Metrics as an operator sees them (SPEC §7, §8): a real Prometheus server scrapes both
//! binaries' `/metrics` during a pipeline run, and the test reads the series back through
//! Prometheus's HTTP API, so names, types and the exposition format must satisfy its parser.

use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::sink::target::Target;
use crate::support::capture::{eventually, Capture};
use crate::support::{free_port, unique_dir};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A few scrape intervals, plus the pipeline's own latency.
const SEEN: Duration = Duration::from_secs(20);

const SCHEMA: &str = "CREATE SCHEMA l1; CREATE TABLE l1.items (id int PRIMARY KEY, v text);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_binaries_during_a_pipeline_run() {
    let mut capture = Capture::on_shared_sink_testbed(SCHEMA).await;
    let source_addr = format!("127.0.0.1:{}", free_port());
    let config = capture
        .config(&["l1.*"], "snapshot = \"never\"", "")
        .replace("listen = \"\"", &format!("listen = \"{source_addr}\""));
    capture.start(&config).await;
    let mut target = Target::new(&capture, "").await;
    let sink_addr = format!("127.0.0.1:{}", free_port());
    target.config = target
        .config
        .replace("listen = \"\"", &format!("listen = \"{sink_addr}\""));
    target.start();
    let prometheus =
        Prometheus::start(&[("cdc-source", &source_addr), ("cdc-sink", &sink_addr)]).await;

    for job in ["cdc-source", "cdc-sink"] {
        prometheus
            .wait_for(&format!("up{{job=\"{job}\"}}"), |v| v == 1.0)
            .await;
        prometheus
            .wait_for(
                &format!("process_resident_memory_bytes{{job=\"{job}\"}}"),
                |v| v > 0.0,
            )
            .await;
    }
    prometheus
        .wait_for("pgcdc_source_lag_bytes{job=\"cdc-source\"}", |v| v >= 0.0)
        .await;

    // Two phases, each awaited through Prometheus, so the counters are seen growing between
    // two instants; distinct keys per phase, because the sink collapses a batch's changes to
    // the last one per key and would otherwise count fewer rows than the source sent.
    capture
        .client
        .batch_execute("INSERT INTO l1.items SELECT g, 'v' FROM generate_series(1, 20) g")
        .await
        .expect("insert");
    prometheus
        .wait_for("sum(pgcdc_source_events_total{table=\"l1.items\"})", |v| {
            v >= 20.0
        })
        .await;
    prometheus
        .wait_for("sum(pgcdc_sink_applied_total{table=\"l1.items\"})", |v| {
            v >= 20.0
        })
        .await;
    prometheus
        .wait_for("pgcdc_source_ms_behind_source{job=\"cdc-source\"}", |v| {
            v >= 0.0
        })
        .await;

    capture
        .client
        .batch_execute(
            "UPDATE l1.items SET v = 'w' WHERE id <= 10;
             DELETE FROM l1.items WHERE id BETWEEN 11 AND 15;",
        )
        .await
        .expect("update and delete");
    prometheus
        .wait_for("sum(pgcdc_source_events_total{table=\"l1.items\"})", |v| {
            v >= 35.0
        })
        .await;
    prometheus
        .wait_for(
            "pgcdc_source_events_total{table=\"l1.items\",op=\"d\"}",
            |v| v >= 5.0,
        )
        .await;
    prometheus
        .wait_for("sum(pgcdc_sink_applied_total{table=\"l1.items\"})", |v| {
            v >= 35.0
        })
        .await;
    prometheus
        .wait_for(
            "pgcdc_sink_applied_total{table=\"l1.items\",op=\"delete\"}",
            |v| v >= 5.0,
        )
        .await;

    target.settle(&["l1.items -> l1.items: ok (15 rows)"]);
    sink_lag_rises_while_stopped_and_returns_to_0(&prometheus, &capture, &mut target).await;
    target.settle(&["l1.items -> l1.items: ok (45 rows)"]);
    assert_eq!(capture.stop(), 0, "{}", capture.source_log());
}

/// The sink's consumer lag is 0 while it keeps up; rows written while it is stopped show as
/// lag once it runs again, and the lag returns to 0 once they are applied. Until the lag has
/// been seen, a lock on the target table holds the restarted sink's batch back: otherwise the
/// backlog could be applied between two statistics reports (every 5 s), never seen.
async fn sink_lag_rises_while_stopped_and_returns_to_0(
    prometheus: &Prometheus,
    capture: &Capture<'_>,
    target: &mut Target,
) {
    let lag = format!(
        "sum(pgcdc_sink_consumer_lag{{job=\"cdc-sink\",topic=\"{}\"}})",
        capture.topic("l1.items")
    );
    prometheus.wait_for(&lag, |v| v == 0.0).await;
    let mut sink = target.sink.take().expect("sink running");
    sink.terminate();
    assert_eq!(sink.wait_exit(SEEN), 0, "{}", sink.stderr_text());
    capture
        .client
        .batch_execute("INSERT INTO l1.items SELECT g, 'v' FROM generate_series(21, 50) g")
        .await
        .expect("insert while the sink is stopped");
    target
        .client
        .batch_execute("BEGIN; LOCK TABLE l1.items IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock the target table");
    target.start();
    prometheus.wait_for(&lag, |v| v == 30.0).await;
    target
        .client
        .batch_execute("COMMIT")
        .await
        .expect("release the target table");
    prometheus.wait_for(&lag, |v| v == 0.0).await;
}

/// A Prometheus server scraping the given targets every second, with its storage in a test
/// bed directory; killed on drop, so a failing test does not leave it running.
struct Prometheus {
    dir: PathBuf,
    port: u16,
    child: Child,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus with one job per `(job, host:port)` and waits until it is ready.
    async fn start(targets: &[(&str, &str)]) -> Prometheus {
        let jobs: String = targets
            .iter()
            .map(|(job, addr)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{addr}\"]\n")
            })
            .collect();
        let config = format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}");
        let mut attempts = 0;
        loop {
            let mut prometheus = Prometheus::spawn(&config);
            match prometheus.wait_ready().await {
                Ok(()) => return prometheus,
                // Usually another process took the port between choosing and binding it.
                Err(e) if attempts < 3 => {
                    attempts += 1;
                    eprintln!(
                        "prometheus did not start, retrying on another port: {e}\n{}",
                        prometheus.log_text()
                    );
                }
                Err(e) => panic!("{e}\n{}", prometheus.log_text()),
            }
        }
    }

    fn spawn(config: &str) -> Prometheus {
        let dir = unique_dir("prometheus");
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let port = free_port();
        let log = File::create(dir.join("prometheus.log")).expect("create prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {PROMETHEUS}: {e}: run scripts/install-testbed.sh"));
        // For a sweep after a test process died before dropping this.
        std::fs::write(dir.join("prometheus.pid"), child.id().to_string())
            .expect("write prometheus.pid");
        Prometheus {
            dir,
            port,
            child,
            http: reqwest::Client::new(),
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll prometheus") {
                return Err(format!("prometheus exited during startup with {status}"));
            }
            let ready = self.http.get(&url).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("prometheus not ready after {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The samples of an instant query: each series' labels and value.
    async fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>, String> {
        let url = url::Url::parse_with_params(
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            [("query", promql)],
        )
        .expect("query URL");
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        let samples = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(samples
            .into_iter()
            .filter_map(|sample| {
                let value = sample["value"][1].as_str()?.parse().ok()?;
                Some((sample["metric"].clone(), value))
            })
            .collect())
    }

    /// Waits until `promql` returns at least one sample and every sample satisfies `holds`;
    /// fails with the last answer, the scrape targets' state and Prometheus's log.
    async fn wait_for(&self, promql: &str, holds: impl Fn(f64) -> bool) {
        let last = RefCell::new(Ok(Vec::new()));
        let seen = eventually(SEEN, || async {
            let answer = self.query(promql).await;
            let seen = answer
                .as_ref()
                .is_ok_and(|samples| !samples.is_empty() && samples.iter().all(|(_, v)| holds(*v)));
            *last.borrow_mut() = answer;
            seen
        })
        .await;
        if !seen {
            let targets = self.targets().await;
            panic!(
                "Prometheus never answered {promql} as expected; last answer: {:?}\ntargets: {targets}\nprometheus log:\n{}",
                last.into_inner(),
                self.log_text()
            );
        }
    }

    /// Each scrape target's health and last error, for failure messages.
    async fn targets(&self) -> String {
        let url = format!("http://127.0.0.1:{}/api/v1/targets", self.port);
        match self.http.get(url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
