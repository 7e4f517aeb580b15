//! The whole pipeline of a chaos run, every part its own: a source cluster, a target cluster,
//! a broker with persistent storage, the registry, and cdc-source and cdc-sink each in a
//! network namespace of its own, so the links they use can be cut. The harness acts as the
//! service manager: it restarts what it stopped, and what exited by itself (counted).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Client;

use super::network::Namespace;
use super::workload::{SOURCE_SCHEMA, TARGET_SCHEMA};
use crate::support::capture::{current_wal_lsn, hand_to_replicator};
use crate::support::postgres::DEFAULT_HBA;
use crate::support::process::{Binary, CdcProcess};
use crate::support::registry::Compatibility;
use crate::support::{Broker, ClusterSetup, PgCluster, SchemaRegistry, TestNames};

/// What stays of a process that ended: how, and the end of its log.
#[derive(Debug)]
pub struct Ended {
    pub binary: Binary,
    pub planned: bool,
    pub code: i32,
    pub log_tail: String,
}

/// The pipeline. Processes come first so that they are dropped (killed) before the servers.
pub struct Bed {
    pub source: Option<CdcProcess>,
    pub sink: Option<CdcProcess>,
    pub ended: Vec<Ended>,
    pub names: TestNames,
    pub source_client: Client,
    pub target_client: Client,
    pub target_db: String,
    pub source_config: String,
    pub sink_config: String,
    pub broker: Broker,
    pub registry: SchemaRegistry,
    pub source_pg: PgCluster,
    pub target_pg: PgCluster,
    pub source_ns: Namespace,
    pub sink_ns: Namespace,
    /// Where each process's whole log is kept when it ends (`PGCDC_CHAOS_LOGS`), for looking
    /// into a long run afterwards.
    pub log_dir: Option<PathBuf>,
    /// The binaries' `--log-level` (`PGCDC_CHAOS_LOG_LEVEL`; their default otherwise).
    pub log_level: Option<String>,
}

/// The last lines of a log, for reports.
pub fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A cluster reachable on loopback and on the hosts' ends of both namespaces' pairs. A short
/// `wal_sender_timeout` makes a cut link end the walsender within the outage.
async fn cluster(source_ns: &Namespace, sink_ns: &Namespace) -> PgCluster {
    let nets = "198.18.0.0/15";
    PgCluster::with_setup(ClusterSetup {
        extra_conf: format!(
            "listen_addresses = '127.0.0.1,{},{}'\nwal_sender_timeout = '10s'\n",
            source_ns.host_address, sink_ns.host_address
        ),
        hba: Some(format!(
            "{DEFAULT_HBA}host all postgres {nets} trust\n\
             host all all {nets} scram-sha-256\n"
        )),
        data_files: Vec::new(),
    })
    .await
}

impl Bed {
    /// Makes everything, creates and fills the source tables and the target tables; starts
    /// no process.
    pub async fn new(prefill_rows: i64) -> Result<Bed, String> {
        let source_ns = Namespace::create("src", 0)?;
        let sink_ns = Namespace::create("snk", 1)?;
        let source_pg = cluster(&source_ns, &sink_ns).await;
        let target_pg = cluster(&source_ns, &sink_ns).await;
        let host = source_ns.host_address.to_string();
        let broker = Broker::start_persistent_on(&host).await;
        broker.index_record_headers();
        let registry = SchemaRegistry::start_on(&format!("{host}:0"))
            .map_err(|e| format!("start the registry on {host}: {e}"))?;
        let names = TestNames::new();
        // `l1.shape`'s `v` goes from bigint back to int, which Avro cannot promote.
        for part in ["key", "value"] {
            let subject = format!("{}.l1.shape-{part}", names.topic_prefix);
            registry.set_compatibility(Some(&subject), Compatibility::None);
        }
        // A truncate has no key: it lands in one partition, and the sink cannot order it
        // against changes in the others (README, Limitations), so the truncated table gets a
        // topic of one partition, as the README advises.
        broker
            .create_topic(&format!("{}.l1.scratch", names.topic_prefix), 1)
            .await;
        let source_client = names.create_database(&source_pg).await;
        source_client
            .batch_execute(SOURCE_SCHEMA)
            .await
            .expect("the source tables");
        super::workload::prefill(&source_client, prefill_rows).await;
        hand_to_replicator(&source_client, &names.db).await;
        let target_names = TestNames::new();
        let target_client = target_names.create_database(&target_pg).await;
        target_client
            .batch_execute(TARGET_SCHEMA)
            .await
            .expect("the target tables and their audit");
        let on =
            |url: String, ns: &Namespace| url.replace("127.0.0.1", &ns.host_address.to_string());
        let source_config = format!(
            r#"
[postgres]
url = "{url}"

[capture]
slot = "{slot}"
publication = "{publication}"
tables = ["l1.*"]
snapshot = "when_needed"
ddl = true
heartbeat_interval = "1s"
status_interval = "200ms"

[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
format = "avro"

# tansu stores records uncompressed and compresses a fetch's batch again, spending a fetch's
# byte budget by the compressed size: with lz4 each fetch rescans the consumer's backlog many
# times over (slow once the large transaction is in).
[kafka.options]
"compression.type" = "none"

[schema_registry]
url = "{registry}"

[metrics]
listen = ""
"#,
            // DDL capture's event triggers need a superuser.
            url = on(source_pg.url(&names.db, "postgres"), &source_ns),
            slot = names.slot,
            publication = names.publication,
            brokers = broker.bootstrap(),
            prefix = names.topic_prefix,
            registry = registry.url(),
        );
        // A static member takes its predecessor's partitions at once after a crash, as a
        // restarted pod does, instead of waiting for the old session to time out.
        let sink_config = format!(
            r#"
[postgres]
url = "{target}"

[apply]
topics = ["{prefix}.l1.*"]
group_id = "chaos_{db}"
batch_timeout = "100ms"

[source_postgres]
url = "{source}"

[kafka]
brokers = "{brokers}"

[kafka.options]
"group.instance.id" = "chaos-sink"
# tansu's largest fetch: each one rescans the partition's backlog, so fewer, larger ones.
"fetch.max.bytes" = "5242880"

[schema_registry]
url = "{registry}"

[metrics]
listen = ""
"#,
            target = on(target_pg.url(&target_names.db, "postgres"), &sink_ns),
            prefix = names.topic_prefix,
            db = target_names.db,
            source = on(source_pg.url(&names.db, "postgres"), &sink_ns),
            brokers = broker.bootstrap(),
            registry = registry.url(),
        );
        Ok(Bed {
            source: None,
            sink: None,
            ended: Vec::new(),
            names,
            source_client,
            target_client,
            target_db: target_names.db,
            source_config,
            sink_config,
            broker,
            registry,
            source_pg,
            target_pg,
            source_ns,
            sink_ns,
            log_dir: std::env::var_os("PGCDC_CHAOS_LOGS").map(PathBuf::from),
            log_level: std::env::var("PGCDC_CHAOS_LOG_LEVEL").ok(),
        })
    }

    pub fn start_source(&mut self) {
        let process = CdcProcess::in_netns(
            &self.source_ns.name,
            Binary::Source,
            "run",
            &self.source_config,
            &self.log_args(),
        );
        self.source = Some(process);
    }

    pub fn start_sink(&mut self) {
        let process = CdcProcess::in_netns(
            &self.sink_ns.name,
            Binary::Sink,
            "run",
            &self.sink_config,
            &self.log_args(),
        );
        self.sink = Some(process);
    }

    fn log_args(&self) -> Vec<String> {
        match &self.log_level {
            Some(level) => vec![format!("--log-level={level}")],
            None => Vec::new(),
        }
    }

    /// Appends the whole log of `process`, which ended with `code` (`None`: still running at
    /// the end), to its binary's file in the log directory, if there is one.
    fn keep_log(
        log_dir: Option<&PathBuf>,
        binary: Binary,
        process: &CdcProcess,
        code: Option<i32>,
    ) {
        let Some(dir) = log_dir else {
            return;
        };
        let path = dir.join(format!("{binary:?}.log").to_lowercase());
        let kept = std::fs::create_dir_all(dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            })
            .and_then(|mut file| {
                let ended = code.map_or("running at the end".to_owned(), |c| {
                    format!("ended with {c}")
                });
                writeln!(file, "===== {binary:?} pid {} ({ended})", process.pid())?;
                file.write_all(process.stderr_text().as_bytes())
            });
        if let Err(error) = kept {
            eprintln!("cannot keep the log in {}: {error}", path.display());
        }
    }

    fn slot(&mut self, binary: Binary) -> &mut Option<CdcProcess> {
        match binary {
            Binary::Source => &mut self.source,
            Binary::Sink => &mut self.sink,
        }
    }

    /// Ends a process the harness stops: `kill -9`, or SIGTERM and its exit (which must be 0).
    pub fn stop(&mut self, binary: Binary, kill: bool) {
        let mut process = self.slot(binary).take().expect("the process runs");
        let code = if kill {
            process.kill9();
            137
        } else {
            process.terminate();
            process.wait_exit(Duration::from_secs(60))
        };
        Bed::keep_log(self.log_dir.as_ref(), binary, &process, Some(code));
        self.ended.push(Ended {
            binary,
            planned: kill || code == 0,
            code,
            log_tail: tail(&process.stderr_text(), 30),
        });
    }

    pub fn start(&mut self, binary: Binary) {
        match binary {
            Binary::Source => self.start_source(),
            Binary::Sink => self.start_sink(),
        }
    }

    /// Restarts whichever process exited by itself, recording how it ended.
    pub fn supervise(&mut self) {
        for binary in [Binary::Source, Binary::Sink] {
            let exited = self.slot(binary).as_mut().is_some_and(|p| !p.is_running());
            if exited {
                let mut process = self.slot(binary).take().expect("checked");
                let code = process.wait_exit(Duration::from_secs(1));
                Bed::keep_log(self.log_dir.as_ref(), binary, &process, Some(code));
                self.ended.push(Ended {
                    binary,
                    planned: false,
                    code,
                    log_tail: tail(&process.stderr_text(), 30),
                });
                self.start(binary);
            }
        }
    }

    /// The heartbeat's value on the target, `None` while the target cannot answer.
    pub async fn target_beat(&mut self) -> Option<i64> {
        match self
            .target_client
            .query_one("SELECT n FROM l1.beat WHERE id = 1", &[])
            .await
        {
            Ok(row) => Some(row.get(0)),
            Err(_) => {
                if let Ok(client) = connect(&self.target_pg, &self.target_db).await {
                    self.target_client = client;
                }
                None
            }
        }
    }

    /// A new superuser connection to the source database (after its cluster restarted).
    pub async fn reconnect_source(&mut self) {
        loop {
            if let Ok(client) = connect(&self.source_pg, &self.names.db).await {
                self.source_client = client;
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The slot's `wal_status`, `None` when there is no slot.
    pub async fn slot_wal_status(&self) -> Option<String> {
        self.source_client
            .query_opt(
                "SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.names.slot],
            )
            .await
            .expect("query pg_replication_slots")
            .map(|row| row.get(0))
    }

    /// The source's current WAL position.
    pub async fn source_wal(&self) -> u64 {
        current_wal_lsn(&self.source_client).await
    }

    /// Every log of the source and the sink, ended and running, for a failure's report.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for ended in &self.ended {
            text.push_str(&format!(
                "--- {:?} ended with {} (planned: {}):\n{}\n",
                ended.binary, ended.code, ended.planned, ended.log_tail
            ));
        }
        for (name, process) in [("source", &self.source), ("sink", &self.sink)] {
            if let Some(process) = process {
                text.push_str(&format!(
                    "--- running {name}:\n{}\n",
                    tail(&process.stderr_text(), 40)
                ));
            }
        }
        text
    }
}

/// A superuser connection that fails instead of panicking (the cluster may be down).
pub async fn connect(cluster: &PgCluster, db: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=5",
            cluster.port()
        ),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Drop for Bed {
    /// Keeps the logs of the processes still running (the run ended, or failed).
    fn drop(&mut self) {
        for (binary, process) in [(Binary::Source, &self.source), (Binary::Sink, &self.sink)] {
            if let Some(process) = process {
                Bed::keep_log(self.log_dir.as_ref(), binary, process, None);
            }
        }
    }
}
