//! Throwaway PostgreSQL clusters on loopback ports, configured for logical replication.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

use super::{free_port, random_suffix, unique_dir, wait_until};

/// Superuser; `pg_hba.conf` trusts it on loopback so tests need no password for setup.
pub const SUPERUSER: &str = "postgres";
/// The role the connector uses: `REPLICATION LOGIN`, authenticated with SCRAM like in production.
pub const REPLICATOR: &str = "replicator";
pub const REPLICATOR_PASSWORD: &str = "replicator-secret";

/// Unix socket paths are limited to 107 bytes; longer cluster paths get TCP only.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// The newest `/usr/lib/postgresql/<version>/bin`.
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/install-testbed.sh")
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb: run scripts/install-testbed.sh")
        .1
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// initdb and the server refuse to run as root (SPEC §9), so as root they run as `postgres`.
fn pg_tool(tool: &str) -> Command {
    let path = bin_dir().join(tool);
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

fn give_to_postgres(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown {} failed", path.display());
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    give_to_postgres(path);
}

async fn run(cmd: Command) -> Output {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd.output().await.expect("spawn a PostgreSQL tool")
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A cluster of its own in `<testbed>/pg-<random>/data`, removed on drop.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
}

/// The default `pg_hba.conf`. A logical replication connection is matched against the
/// database lines (SPEC §9); the `replication` lines cover physical replication
/// (pg_basebackup, pg_receivewal).
pub const DEFAULT_HBA: &str = "local all         postgres                 trust\n\
                               host  all         postgres 127.0.0.1/32    trust\n\
                               host  replication postgres 127.0.0.1/32    trust\n\
                               host  all         all      127.0.0.1/32    scram-sha-256\n\
                               host  replication all      127.0.0.1/32    scram-sha-256\n";

/// How a cluster differs from the test bed's default one.
#[derive(Clone, Debug, Default)]
pub struct ClusterSetup {
    /// Lines appended to `postgresql.conf` (e.g. `ssl = on`).
    pub extra_conf: String,
    /// Replaces [`DEFAULT_HBA`]; keep the superuser's trust lines, the test bed logs in with them.
    pub hba: Option<String>,
    /// Files written into the data directory before the first start, readable by the server
    /// only (mode 0600, as it demands of TLS keys). Paths in `extra_conf` may name them
    /// relative to the data directory.
    pub data_files: Vec<(String, Vec<u8>)>,
}

impl PgCluster {
    /// initdb, configure, start, and create the [`REPLICATOR`] role.
    pub async fn new() -> PgCluster {
        PgCluster::with_setup(ClusterSetup::default()).await
    }

    /// As [`new`](Self::new), with extra configuration, another `pg_hba.conf` and extra files.
    pub async fn with_setup(setup: ClusterSetup) -> PgCluster {
        let dir = unique_dir("pg");
        give_to_postgres(&dir);
        let mut cluster = PgCluster { dir, port: 0 };
        let mut initdb = pg_tool("initdb");
        initdb
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        let out = run(initdb).await;
        assert!(out.status.success(), "{}", describe("initdb", &out));
        cluster.configure(&setup);
        // Another process may take the port between choosing it and binding it: choose again.
        let mut attempts = 0;
        loop {
            cluster.port = free_port();
            write_file(
                &cluster.data_dir().join("port.conf"),
                &format!("port = {}\n", cluster.port),
            );
            let out = cluster.pg_ctl_start().await;
            if out.status.success() {
                break;
            }
            attempts += 1;
            assert!(
                attempts < 5 && cluster.log_text().contains("could not bind"),
                "{}\n{}",
                describe("pg_ctl start", &out),
                cluster.log_text()
            );
        }
        let client = cluster.superuser_client("postgres").await;
        client
            .batch_execute(&format!(
                "CREATE ROLE {REPLICATOR} WITH REPLICATION LOGIN PASSWORD '{REPLICATOR_PASSWORD}'"
            ))
            .await
            .expect("create the replicator role");
        cluster
    }

    /// Appends `line` to `pg_hba.conf`; a `SELECT pg_reload_conf()` applies it.
    pub fn append_hba(&self, line: &str) {
        let path = self.data_dir().join("pg_hba.conf");
        let hba = std::fs::read_to_string(&path).expect("read pg_hba.conf");
        write_file(&path, &format!("{hba}{line}\n"));
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The server log, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn configure(&self, setup: &ClusterSetup) {
        let data = self.data_dir();
        let socket_dir = if self.dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            self.dir.display().to_string()
        } else {
            String::new()
        };
        let mut conf =
            std::fs::read_to_string(data.join("postgresql.conf")).expect("read postgresql.conf");
        conf.push_str(&format!(
            "\n# pgcdc test bed\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             wal_level = logical\n\
             max_replication_slots = 64\n\
             max_wal_senders = 64\n\
             max_connections = 200\n\
             password_encryption = 'scram-sha-256'\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 32MB\n\
             include 'port.conf'\n"
        ));
        conf.push_str(&setup.extra_conf);
        conf.push('\n');
        write_file(&data.join("postgresql.conf"), &conf);
        write_file(
            &data.join("pg_hba.conf"),
            setup.hba.as_deref().unwrap_or(DEFAULT_HBA),
        );
        for (name, contents) in &setup.data_files {
            let path = data.join(name);
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
            give_to_postgres(&path);
        }
    }

    async fn pg_ctl_start(&self) -> Output {
        let mut cmd = pg_tool("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "start"]);
        run(cmd).await
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = pg_tool("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).args(args);
        let out = run(cmd).await;
        assert!(
            out.status.success(),
            "{}\n{}",
            describe(&format!("pg_ctl {args:?}"), &out),
            self.log_text()
        );
    }

    /// Starts a stopped (or killed) cluster on the same port. Retries for a while because
    /// after [`kill`](Self::kill) orphaned backends may still hold the old shared memory.
    pub async fn start(&self) {
        let mut last = None;
        for _ in 0..30 {
            let out = self.pg_ctl_start().await;
            if out.status.success() {
                return;
            }
            last = Some(out);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "{}\n{}",
            describe("pg_ctl start", &last.expect("at least one attempt")),
            self.log_text()
        );
    }

    /// Fast shutdown: disconnects clients, including walsenders, and checkpoints.
    pub async fn stop(&self) {
        self.pg_ctl(&["-w", "-t", "60", "stop", "-m", "fast"]).await;
    }

    pub async fn restart(&self) {
        // Without `-l` the new server would inherit pg_ctl's stdout, and waiting for
        // pg_ctl's output would then wait for the server to exit.
        let log = self.log_path().display().to_string();
        self.pg_ctl(&["-w", "-t", "60", "-l", &log, "restart", "-m", "fast"])
            .await;
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`): every process quits at once without
    /// a checkpoint, so the next start runs crash recovery.
    pub async fn stop_immediate(&self) {
        self.pg_ctl(&["-w", "-t", "60", "stop", "-m", "immediate"])
            .await;
    }

    /// Crash: SIGKILL the postmaster, like an OOM kill. [`start`](Self::start) recovers.
    pub async fn kill(&self) {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .expect("the cluster is running");
        let pid = pid_file.lines().next().expect("pid line").trim().to_owned();
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -9 {pid} failed");
        let gone = wait_until(Duration::from_secs(10), || {
            !Path::new("/proc").join(&pid).exists()
        });
        assert!(gone, "postmaster {pid} survived SIGKILL");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq-style URL; it carries the password for [`REPLICATOR`], the superuser needs none.
    pub fn url(&self, db: &str, user: &str) -> String {
        let password = if user == REPLICATOR {
            format!(":{REPLICATOR_PASSWORD}")
        } else {
            String::new()
        };
        format!(
            "postgresql://{user}{password}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A superuser connection whose connection task runs on the caller's runtime.
    pub async fn superuser_client(&self, db: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user={SUPERUSER} dbname={db}",
                self.port
            ),
            NoTls,
        )
        .await
        .unwrap_or_else(|e| panic!("connect to {db} on port {}: {e}", self.port));
        tokio::spawn(async move {
            // Ends with an error when the server stops under a test that restarts it.
            let _ = connection.await;
        });
        client
    }

    pub async fn create_database(&self, name: &str) {
        self.superuser_client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = pg_tool("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes the server invalidate `slot` (`wal_status = lost`), as `max_slot_wal_keep_size`
/// does to a slot whose consumer stays away too long: lowers the limit, writes WAL into
/// `filler_table` (a table of the connected database, unpublished) and checkpoints until the
/// slot is lost, then lifts the limit. Changes the cluster's configuration for a moment: only
/// for a cluster of the test's own.
pub async fn invalidate_slot(client: &Client, slot: &str, filler_table: &str) {
    // ALTER SYSTEM refuses to run in a transaction block, as a multi-statement string is.
    for sql in [
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'",
        "SELECT pg_reload_conf()",
    ] {
        client
            .batch_execute(sql)
            .await
            .expect("limit the slot's WAL");
    }
    let mut status = String::new();
    for _ in 0..40 {
        for sql in [
            format!(
                "INSERT INTO {filler_table} SELECT repeat('f', 1000) FROM generate_series(1, 3000)"
            ),
            "SELECT pg_switch_wal()".to_owned(),
            "CHECKPOINT".to_owned(),
        ] {
            client
                .batch_execute(&sql)
                .await
                .expect("write WAL past the limit");
        }
        status = client
            .query_one(
                "SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("the slot's wal_status")
            .get(0);
        if status == "lost" {
            break;
        }
    }
    assert_eq!(status, "lost", "slot {slot} was not invalidated");
    for sql in [
        "ALTER SYSTEM RESET max_slot_wal_keep_size".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
        format!("TRUNCATE {filler_table}"),
    ] {
        client.batch_execute(&sql).await.expect("lift the limit");
    }
}

/// A table's columns as `name type [not null] [default]`, in order.
pub async fn table_columns(client: &Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod)
                    || CASE WHEN attnotnull THEN ' not null' ELSE '' END
                    || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table],
        )
        .await
        .unwrap_or_else(|e| panic!("columns of {table}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// One cluster per test process for the tests that never stop or restart it. Isolate tests
/// with [`fresh_database`] / [`TestNames`]; the testbed watchdog stops it after the run.
pub async fn shared_pg() -> &'static PgCluster {
    static SHARED: OnceCell<PgCluster> = OnceCell::const_new();
    SHARED.get_or_init(PgCluster::new).await
}

/// A new, uniquely named database and a superuser connection to it.
pub async fn fresh_database(pg: &PgCluster) -> (String, Client) {
    let db = format!("db_{}", random_suffix());
    pg.create_database(&db).await;
    let client = pg.superuser_client(&db).await;
    (db, client)
}

/// Names one test owns, all derived from one random suffix so parallel tests never collide.
#[derive(Clone, Debug)]
pub struct TestNames {
    pub suffix: String,
    pub db: String,
    pub slot: String,
    pub publication: String,
    pub topic_prefix: String,
}

impl TestNames {
    pub fn new() -> TestNames {
        let suffix = random_suffix();
        TestNames {
            db: format!("db_{suffix}"),
            slot: format!("slot_{suffix}"),
            publication: format!("pub_{suffix}"),
            topic_prefix: format!("test_{suffix}"),
            suffix,
        }
    }

    /// Creates the database [`Self::db`] and connects to it as superuser.
    pub async fn create_database(&self, pg: &PgCluster) -> Client {
        pg.create_database(&self.db).await;
        pg.superuser_client(&self.db).await
    }

    /// Drops this test's slot and publication when it goes out of scope, panics included.
    pub fn guard(&self, pg: &PgCluster) -> ReplicationGuard {
        ReplicationGuard {
            port: pg.port(),
            db: self.db.clone(),
            slot: self.slot.clone(),
            publication: self.publication.clone(),
        }
    }
}

/// Drops a slot and a publication on drop. A slot left behind holds WAL forever (SPEC §9).
/// Works through `psql` so it needs no async runtime, which may be gone during a panic.
pub struct ReplicationGuard {
    port: u16,
    db: String,
    slot: String,
    publication: String,
}

impl ReplicationGuard {
    fn psql(&self, sql: &str) -> bool {
        Command::new(bin_dir().join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                &self.db,
            ])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .is_ok_and(|out| out.status.success())
    }
}

impl Drop for ReplicationGuard {
    fn drop(&mut self) {
        let slot = self.slot.replace('\'', "''");
        // The slot cannot be dropped while a walsender streams from it: end that first.
        // Retried because the terminated walsender releases the slot asynchronously.
        let dropped = wait_until(Duration::from_secs(10), || {
            self.psql(&format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = '{slot}' AND active_pid IS NOT NULL"
            )) && self.psql(&format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = '{slot}'"
            ))
        });
        let publication = self.publication.replace('"', "\"\"");
        let dropped =
            dropped && self.psql(&format!("DROP PUBLICATION IF EXISTS \"{publication}\""));
        if !dropped && !std::thread::panicking() {
            eprintln!(
                "warning: could not drop slot {} / publication {} in {}",
                self.slot, self.publication, self.db
            );
        }
    }
}
