//! tansu brokers (SPEC §8) on loopback ports, with in-memory or PostgreSQL-backed storage.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::sync::OnceCell;

use super::tls::{TestPki, TlsProxy};
use super::{free_port, unique_dir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A tansu process. Its port and storage survive [`stop`](Self::stop) /
/// [`restart`](Self::restart), so clients reconnect to the same bootstrap address.
pub struct Broker {
    dir: PathBuf,
    /// The address it listens on and advertises: loopback unless a test needs another.
    host: String,
    port: u16,
    storage: String,
    /// The SCRAM-SHA-512 user clients must log in as, once the broker requires it.
    scram_user: Option<(String, String)>,
    /// The TLS proxy clients reach the broker through, and their librdkafka settings for it.
    tls: Option<(TlsProxy, Vec<(&'static str, String)>)>,
    child: Mutex<Option<Child>>,
}

impl Broker {
    /// Storage in the broker's memory: fast, lost on restart.
    pub async fn start_memory() -> Broker {
        Broker::launch("memory://tansu/".to_owned(), "127.0.0.1").await
    }

    /// Storage in an SQLite file in the broker's directory, so topics, offsets and consumer
    /// group state survive [`restart`](Self::restart). tansu's PostgreSQL engine would do
    /// too, but the crates.io release ships no schema for it; its SQLite engine creates its own.
    pub async fn start_persistent() -> Broker {
        Broker::launch("sqlite://tansu.db".to_owned(), "127.0.0.1").await
    }

    /// As [`start_persistent`](Self::start_persistent), listening on and advertising `host`:
    /// for clients in network namespaces, which reach the host by a veth address.
    pub async fn start_persistent_on(host: &str) -> Broker {
        Broker::launch("sqlite://tansu.db".to_owned(), host).await
    }

    /// A persistent broker that requires SASL/SCRAM-SHA-512 as `user` / `password` (tansu's
    /// `--authentication`). tansu creates users only for an authenticated client or while
    /// authentication is off, so the user is made first and the broker restarted with it on.
    pub async fn start_with_scram_user(user: &str, password: &str) -> Broker {
        let mut broker = Broker::start_persistent().await;
        let status = Command::new("tansu")
            .args(["user", "create", "--mechanism", "scram512"])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", broker.port)])
            .args([user, password])
            .status()
            .expect("run tansu user create");
        assert!(status.success(), "tansu user create: {status}");
        broker.stop().await;
        broker.scram_user = Some((user.to_owned(), password.to_owned()));
        broker.start().await;
        broker
    }

    /// A persistent broker that clients reach only over TLS with a client certificate of
    /// `pki`: tansu advertises the port of a TLS proxy in front of its own listener.
    pub async fn start_behind_tls(pki: &TestPki) -> Broker {
        let mut broker = Broker::start_persistent().await;
        broker.stop().await;
        broker.tls = Some((
            TlsProxy::start(pki, broker.port),
            pki.kafka_client_options(),
        ));
        broker.start().await;
        broker
    }

    /// The librdkafka settings a client of this broker needs (SASL or TLS, when it requires
    /// them).
    pub fn client_options(&self) -> Vec<(&'static str, String)> {
        if let Some((_, options)) = &self.tls {
            return options.clone();
        }
        match &self.scram_user {
            Some((user, password)) => vec![
                ("security.protocol", "SASL_PLAINTEXT".to_owned()),
                ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
                ("sasl.username", user.clone()),
                ("sasl.password", password.clone()),
            ],
            None => Vec::new(),
        }
    }

    async fn launch(storage: String, host: &str) -> Broker {
        let dir = unique_dir("broker");
        let mut attempts = 0;
        loop {
            let broker = Broker {
                dir: dir.clone(),
                host: host.to_owned(),
                port: free_port(),
                storage: storage.clone(),
                scram_user: None,
                tls: None,
                child: Mutex::new(None),
            };
            match broker.spawn_and_wait().await {
                Ok(()) => return broker,
                // Usually another process took the port between choosing and binding it.
                Err(e) if attempts < 3 => {
                    attempts += 1;
                    eprintln!("tansu did not start, retrying on another port: {e}");
                }
                Err(e) => panic!("{e}\n{}", broker.log_text()),
            }
        }
    }

    /// The address clients connect to: the broker's, or its TLS proxy's.
    pub fn bootstrap(&self) -> String {
        match &self.tls {
            Some((proxy, _)) => format!("127.0.0.1:{}", proxy.port()),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running broker's process id (benchmarks read its CPU time), 0 when unknown.
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("broker.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Everything the broker printed, across restarts.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    fn spawn(&self) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("open broker.log");
        let listener = format!("tcp://{}:{}", self.host, self.port);
        let advertised = format!("tcp://{}", self.bootstrap());
        let child = Command::new("tansu")
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", &self.storage])
            .args(self.scram_user.as_ref().map(|_| "--authentication"))
            // The SQLite engine resolves its file relative to the working directory.
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu: run scripts/install-testbed.sh");
        // Read by the testbed sweep to kill brokers of a test process that died.
        std::fs::write(self.dir.join("broker.pid"), child.id().to_string())
            .expect("write broker.pid");
        child
    }

    async fn spawn_and_wait(&self) -> Result<(), String> {
        let child = self.spawn();
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll tansu"))
            {
                *self.child.lock().unwrap() = None;
                return Err(format!("tansu exited during startup with {status}"));
            }
            if metadata_answers(self.bootstrap(), self.client_options()).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("tansu not ready after {READY_TIMEOUT:?}"));
            }
        }
    }

    /// SIGTERM, then SIGKILL after a grace period. Committed data is in the storage engine.
    pub async fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().expect("poll tansu").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_file(self.dir.join("broker.pid"));
    }

    /// Indexes the SQLite engine's record headers by record. tansu 0.6 looks up the headers of
    /// every record it fetches in a table without an index, so a fetch slows down with every
    /// header the topics ever got (key changes carry two): after a long run's thousands of key
    /// changes a consumer read a few hundred records a second. Its schema is made with
    /// `if not exists`, so the index survives restarts.
    pub fn index_record_headers(&self) {
        let database = self.dir.join("tansu.db");
        let output = Command::new("sqlite3")
            .arg(&database)
            .arg("CREATE INDEX IF NOT EXISTS header_by_record ON header (topition, offset_id)")
            .output()
            .expect("run sqlite3: run scripts/install-testbed.sh");
        assert!(
            output.status.success(),
            "index {}: {}",
            database.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A crash: SIGKILL, no chance to finish anything. [`start`](Self::start) brings it back.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("broker.pid"));
    }

    /// Starts a stopped broker again on the same port and storage.
    pub async fn start(&self) {
        assert!(
            self.child.lock().unwrap().is_none(),
            "the broker is already running"
        );
        if let Err(e) = self.spawn_and_wait().await {
            panic!("{e}\n{}", self.log_text());
        }
    }

    pub async fn restart(&self) {
        self.stop().await;
        self.start().await;
    }

    /// Creates a topic, for tests that need more than the broker's default partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("create admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("CreateTopics request");
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic {topic}: {code}");
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Readiness is a real Metadata round trip, not just an open port.
async fn metadata_answers(bootstrap: String, options: Vec<(&'static str, String)>) -> bool {
    tokio::task::spawn_blocking(move || {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("socket.connection.setup.timeout.ms", "1000");
        for (key, value) in options {
            config.set(key, value);
        }
        let consumer: BaseConsumer = config.create().expect("create metadata probe");
        consumer
            .fetch_metadata(None, Duration::from_millis(1000))
            .is_ok_and(|m| !m.brokers().is_empty())
    })
    .await
    .expect("metadata probe thread")
}

/// One in-memory broker per test process for tests that never stop it. Isolate tests by
/// topic name ([`super::TestNames::topic_prefix`]).
pub async fn shared_broker() -> &'static Broker {
    static SHARED: OnceCell<Broker> = OnceCell::const_new();
    SHARED.get_or_init(Broker::start_memory).await
}

/// One SQLite-backed broker per test process, for tests that resume consuming at stored
/// offsets (the sink's). tansu's memory engine answers a fetch that starts inside a record
/// batch with the next batch, silently skipping the rest of the one holding the offset (it
/// lists batches by base offset); Kafka returns the batch holding the offset. The SQLite
/// engine stores records one by one and fetches from the exact offset.
pub async fn shared_record_broker() -> &'static Broker {
    static SHARED: OnceCell<Broker> = OnceCell::const_new();
    SHARED.get_or_init(Broker::start_persistent).await
}
