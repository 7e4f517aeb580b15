//! The source's tables and the writer that changes them while faults hit: inserts, updates,
//! deletes, primary-key changes, truncates, a keyless `REPLICA IDENTITY FULL` table, schema
//! changes with rows of the same transaction before and after them, and a heartbeat row whose
//! counter tells how far the target has caught up.
//!
//! Every keyed row carries `wal`, the source's WAL insert position when the row was written,
//! set by a trigger: per row it rises with every change, so the target's audit can tell a
//! change applied twice or out of order. The writer logs each transaction it saw commit (its
//! id and a WAL position at or after its commit), for the check that the slot was never
//! confirmed past what the broker held.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// The source's tables; `public.filler` is not published (the capture takes `l1.*`), it only
/// makes WAL for invalidating the slot.
pub const SOURCE_SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE FUNCTION l1.stamp() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN NEW.wal := pg_current_wal_insert_lsn() - '0/0'::pg_lsn; RETURN NEW; END$$;
    CREATE TABLE l1.acct (id bigint PRIMARY KEY, version int NOT NULL, note text, wal bigint NOT NULL);
    CREATE TABLE l1.big (id bigint PRIMARY KEY, payload text NOT NULL, wal bigint NOT NULL);
    CREATE TABLE l1.scratch (id int PRIMARY KEY, v text, wal bigint NOT NULL);
    CREATE TABLE l1.nokey (a bigint, b text);
    ALTER TABLE l1.nokey REPLICA IDENTITY FULL;
    CREATE TABLE l1.beat (id int PRIMARY KEY, n bigint NOT NULL);
    INSERT INTO l1.beat VALUES (1, 0);
    CREATE TABLE l1.shape (id bigint PRIMARY KEY, v int NOT NULL, wal bigint NOT NULL);
    CREATE TABLE public.filler (x text);
    CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON l1.shape FOR EACH ROW EXECUTE FUNCTION l1.stamp();
    INSERT INTO l1.shape (id, v) SELECT g, 0 FROM generate_series(1, 200) g;
    CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON l1.acct FOR EACH ROW EXECUTE FUNCTION l1.stamp();
    CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON l1.big FOR EACH ROW EXECUTE FUNCTION l1.stamp();
    CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON l1.scratch FOR EACH ROW EXECUTE FUNCTION l1.stamp();";

/// The same tables on the target, made before the sink starts, with an audit of every row
/// change the sink's transactions commit to a keyed table.
pub const TARGET_SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE TABLE l1.acct (id bigint PRIMARY KEY, version int NOT NULL, note text, wal bigint NOT NULL);
    CREATE TABLE l1.big (id bigint PRIMARY KEY, payload text NOT NULL, wal bigint NOT NULL);
    CREATE TABLE l1.scratch (id int PRIMARY KEY, v text, wal bigint NOT NULL);
    CREATE TABLE l1.nokey (a bigint, b text);
    CREATE TABLE l1.beat (id int PRIMARY KEY, n bigint NOT NULL);
    CREATE TABLE l1.shape (id bigint PRIMARY KEY, v int NOT NULL, wal bigint NOT NULL);
    CREATE TABLE public.applied (seq bigserial PRIMARY KEY, tbl text NOT NULL, id bigint NOT NULL,
                                 op text NOT NULL, wal bigint NOT NULL);
    CREATE FUNCTION public.applied() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO public.applied (tbl, id, op, wal) VALUES (TG_TABLE_NAME, OLD.id, 'd', OLD.wal);
            RETURN OLD;
        END IF;
        INSERT INTO public.applied (tbl, id, op, wal)
            VALUES (TG_TABLE_NAME, NEW.id, lower(left(TG_OP, 1)), NEW.wal);
        RETURN NEW;
    END$$;
    CREATE FUNCTION public.truncated() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
        INSERT INTO public.applied (tbl, id, op, wal) VALUES (TG_TABLE_NAME, 0, 't', 0);
        RETURN NULL;
    END$$;
    CREATE TRIGGER applied AFTER INSERT OR UPDATE OR DELETE ON l1.acct FOR EACH ROW EXECUTE FUNCTION public.applied();
    CREATE TRIGGER applied AFTER INSERT OR UPDATE OR DELETE ON l1.big FOR EACH ROW EXECUTE FUNCTION public.applied();
    CREATE TRIGGER applied AFTER INSERT OR UPDATE OR DELETE ON l1.scratch FOR EACH ROW EXECUTE FUNCTION public.applied();
    CREATE TRIGGER applied AFTER INSERT OR UPDATE OR DELETE ON l1.shape FOR EACH ROW EXECUTE FUNCTION public.applied();
    CREATE TRIGGER truncated AFTER TRUNCATE ON l1.scratch FOR EACH STATEMENT EXECUTE FUNCTION public.truncated();";

/// The tables compared at the end.
pub const TABLES: [&str; 6] = [
    "l1.acct",
    "l1.big",
    "l1.scratch",
    "l1.nokey",
    "l1.beat",
    "l1.shape",
];

/// Every this many rounds the writer changes `l1.shape`'s definition.
const ROUNDS_PER_DDL: i64 = 25;

/// Key changes move a row to an id above this, so new ids never meet old ones.
const MOVED_IDS: i64 = 1_000_000_000;

/// A transaction the writer saw commit: its id and a WAL position at or after its commit.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub xid: i64,
    pub at_or_after: u64,
}

/// What the harness shares with the running writer.
#[derive(Default)]
pub struct WriterState {
    pub stop: AtomicBool,
    /// While set the writer neither deletes keyed rows, nor changes their keys, nor changes
    /// a table's definition: a new snapshot after a lost slot brings the rows there are, not
    /// the deletion of the others (a table without a key is replaced whole, and a truncated
    /// one is refilled with the same keys), nor the schema changes made meanwhile.
    pub no_removals: AtomicBool,
    /// The heartbeat's last committed value.
    pub beat: AtomicI64,
    /// Row changes committed (snapshot prefill and the large transaction not included).
    pub changes: AtomicI64,
    /// Schema changes of `l1.shape` committed.
    pub schema_changes: AtomicI64,
    /// Rounds that failed (the source cluster restarting) and were retried.
    pub failed_rounds: AtomicI64,
    pub committed: Mutex<Vec<Committed>>,
}

/// Creates the prefilled rows of `l1.big`.
pub async fn prefill(client: &Client, rows: i64) {
    client
        .batch_execute(&format!(
            "INSERT INTO l1.big (id, payload) SELECT g, repeat('p', 80) || g FROM generate_series(1, {rows}) g"
        ))
        .await
        .expect("prefill l1.big");
}

/// Commits the large transaction (retrying, with the same rows, if the cluster restarts under
/// it): `rows` rows into `l1.big` above the prefilled ones.
pub fn large_transaction(url: String, first: i64, rows: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let sql = format!(
            "INSERT INTO l1.big (id, payload) SELECT g, repeat('b', 60) || g FROM generate_series({first}, {last}) g",
            last = first + rows - 1
        );
        loop {
            if let Ok(client) = connect(&url).await {
                if client.batch_execute(&sql).await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The writer's picture of the rows it may change. The lists are read again after a failed
/// round, whose commit may or may not have happened; the counters only grow, so an id is
/// never used twice.
struct Rows {
    acct: Vec<i64>,
    nokey: Vec<i64>,
    next_id: i64,
    next_moved: i64,
    next_a: i64,
    shape: Shape,
}

/// `l1.shape`'s definition beyond `id`, `v` and `wal`, which its schema changes cycle
/// through: a column added (`c<n>`), renamed (`r<n>`), then dropped along with a change of
/// `v`'s type between `int` and `bigint`.
#[derive(Default)]
struct Shape {
    extra: Option<String>,
    v_bigint: bool,
}

impl Shape {
    async fn read(client: &Client) -> Result<Shape, tokio_postgres::Error> {
        let mut shape = Shape::default();
        for row in client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = 'l1.shape'::regclass AND attnum > 0 AND NOT attisdropped",
                &[],
            )
            .await?
        {
            let (name, kind): (String, String) = (row.get(0), row.get(1));
            match name.as_str() {
                "v" => shape.v_bigint = kind == "bigint",
                "id" | "wal" => {}
                _ => shape.extra = Some(name),
            }
        }
        Ok(shape)
    }

    /// The next schema change, between an upsert of one row and an update of another that
    /// uses the new definition, all in the round's transaction; changes the picture as if it
    /// commits.
    fn change(&mut self, rng: &mut StdRng, round: i64, sql: &mut String) -> i64 {
        let (before, after) = (rng.random_range(1..=200), rng.random_range(1..=200));
        sql.push_str(&format!(
            "INSERT INTO l1.shape (id, v) VALUES ({before}, {round}) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;"
        ));
        let (ddl, update) = match self.extra.take() {
            None => {
                let added = format!("c{round}");
                let ddl = format!("ADD COLUMN {added} text DEFAULT 'd{round}'");
                let update = format!("{added} = 'u{round}'");
                self.extra = Some(added);
                (ddl, update)
            }
            Some(added) if added.starts_with('c') => {
                let renamed = added.replacen('c', "r", 1);
                let ddl = format!("RENAME COLUMN {added} TO {renamed}");
                let update = format!("{renamed} = 'u{round}'");
                self.extra = Some(renamed);
                (ddl, update)
            }
            Some(renamed) => {
                self.v_bigint = !self.v_bigint;
                let kind = if self.v_bigint { "bigint" } else { "int" };
                (
                    format!("DROP COLUMN {renamed}, ALTER COLUMN v TYPE {kind}"),
                    "v = v + 1".to_owned(),
                )
            }
        };
        sql.push_str(&format!(
            "ALTER TABLE l1.shape {ddl}; UPDATE l1.shape SET {update} WHERE id = {after};"
        ));
        2
    }
}

impl Rows {
    fn new() -> Rows {
        Rows {
            acct: Vec::new(),
            nokey: Vec::new(),
            next_id: 1,
            next_moved: MOVED_IDS,
            next_a: 1,
            shape: Shape::default(),
        }
    }

    async fn refresh(&mut self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let ids = |rows: Vec<tokio_postgres::Row>| -> Vec<i64> {
            rows.iter().map(|r| r.get::<_, i64>(0)).collect()
        };
        self.acct = ids(client.query("SELECT id FROM l1.acct", &[]).await?);
        self.nokey = ids(client.query("SELECT a FROM l1.nokey", &[]).await?);
        self.shape = Shape::read(client).await?;
        Ok(())
    }

    /// One transaction's statements, how many row changes they make, and whether they change
    /// a table's definition. Changes the picture as if it commits.
    fn round(&mut self, rng: &mut StdRng, round: i64, removals: bool) -> (String, i64, bool) {
        let mut sql = String::new();
        let mut changes = 0;
        let inserts = rng.random_range(5..=25);
        sql.push_str(&format!(
            "INSERT INTO l1.acct (id, version, note) SELECT g, 0, 'n' || g FROM generate_series({}, {}) g;",
            self.next_id,
            self.next_id + inserts - 1
        ));
        self.acct.extend(self.next_id..self.next_id + inserts);
        self.next_id += inserts;
        changes += inserts;
        let mut picked = Vec::new();
        for _ in 0..rng.random_range(0..=10) {
            if !self.acct.is_empty() {
                picked.push(self.acct[rng.random_range(0..self.acct.len())]);
            }
        }
        picked.sort_unstable();
        picked.dedup();
        if !picked.is_empty() {
            sql.push_str(&format!(
                "UPDATE l1.acct SET version = version + 1 WHERE id = ANY('{{{}}}');",
                join(&picked)
            ));
            changes += picked.len() as i64;
        }
        let a = self.next_a;
        self.next_a += 2;
        sql.push_str(&format!(
            "INSERT INTO l1.nokey VALUES ({a}, 'x'), ({b}, 'y'), ({b}, 'y');",
            b = a + 1
        ));
        self.nokey.extend([a, a + 1, a + 1]);
        changes += 3;
        if let Some(&target) = self.nokey.get(rng.random_range(0..self.nokey.len())) {
            sql.push_str(&format!(
                "UPDATE l1.nokey SET b = b || '+' WHERE a = {target};"
            ));
            changes += 1;
        }
        changes += self.removals(rng, &mut sql, removals);
        // A new snapshot after a lost slot cannot bring a schema change made in the gap.
        let schema_change = removals && round % ROUNDS_PER_DDL == 0;
        if schema_change {
            changes += self.shape.change(rng, round, &mut sql);
        } else {
            let id = rng.random_range(1..=200);
            sql.push_str(&format!("UPDATE l1.shape SET v = v + 1 WHERE id = {id};"));
            changes += 1;
        }
        if round % 40 == 0 {
            sql.push_str(&format!(
                "TRUNCATE l1.scratch; INSERT INTO l1.scratch (id, v) SELECT g, 'r{round}' FROM generate_series(1, 30) g;"
            ));
            changes += 31;
        } else {
            let id = rng.random_range(1..=30);
            sql.push_str(&format!(
                "INSERT INTO l1.scratch (id, v) VALUES ({id}, 'r{round}') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;"
            ));
            changes += 1;
        }
        (sql, changes, schema_change)
    }

    /// A keyless delete, and with `keyed` deletes and a key change.
    fn removals(&mut self, rng: &mut StdRng, sql: &mut String, keyed: bool) -> i64 {
        let mut changes = 0;
        if keyed && self.acct.len() > 50 {
            let mut gone = Vec::new();
            for _ in 0..rng.random_range(0..=4) {
                gone.push(self.acct.swap_remove(rng.random_range(0..self.acct.len())));
            }
            if !gone.is_empty() {
                sql.push_str(&format!(
                    "DELETE FROM l1.acct WHERE id = ANY('{{{}}}');",
                    join(&gone)
                ));
                changes += gone.len() as i64;
            }
            if rng.random_bool(0.5) {
                let slot = rng.random_range(0..self.acct.len());
                let moved = self.next_moved;
                self.next_moved += 1;
                sql.push_str(&format!(
                    "UPDATE l1.acct SET id = {moved} WHERE id = {};",
                    self.acct[slot]
                ));
                self.acct[slot] = moved;
                changes += 1;
            }
        }
        if self.nokey.len() > 20 && rng.random_bool(0.5) {
            let a = self
                .nokey
                .swap_remove(rng.random_range(0..self.nokey.len()));
            self.nokey.retain(|&other| other != a);
            sql.push_str(&format!("DELETE FROM l1.nokey WHERE a = {a};"));
            changes += 1;
        }
        changes
    }
}

fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Runs transactions (with a short pause between them) until `state.stop`, each followed by
/// a heartbeat; a failed round is retried on a new connection.
pub fn writer(url: String, mut rng: StdRng, state: Arc<WriterState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut round = 0;
        let mut rows = Rows::new();
        let mut session: Option<Client> = None;
        while !state.stop.load(Ordering::Relaxed) {
            if session.is_none() {
                session = match connect(&url).await {
                    Ok(client) if rows.refresh(&client).await.is_ok() => Some(client),
                    _ => None,
                };
                if session.is_none() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            }
            let client = session.as_mut().expect("connected");
            round += 1;
            let removals = !state.no_removals.load(Ordering::Relaxed);
            let (sql, changes, schema_change) = rows.round(&mut rng, round, removals);
            match commit_round(client, &sql, round).await {
                Ok(committed) => {
                    state.committed.lock().unwrap().push(committed);
                    state.changes.fetch_add(changes + 1, Ordering::Relaxed);
                    state
                        .schema_changes
                        .fetch_add(i64::from(schema_change), Ordering::Relaxed);
                    state.beat.store(round, Ordering::Relaxed);
                }
                Err(_) => {
                    state.failed_rounds.fetch_add(1, Ordering::Relaxed);
                    session = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    })
}

/// One round's transaction, the heartbeat in it; returns its id and a WAL position read
/// after its commit returned.
async fn commit_round(
    client: &mut Client,
    sql: &str,
    round: i64,
) -> Result<Committed, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let xid: i64 = tx.query_one("SELECT txid_current()", &[]).await?.get(0);
    tx.batch_execute(sql).await?;
    tx.execute("UPDATE l1.beat SET n = $1 WHERE id = 1", &[&round])
        .await?;
    tx.commit().await?;
    let lsn: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await?
        .get(0);
    Ok(Committed {
        xid,
        at_or_after: crate::support::capture::parse_lsn(&lsn),
    })
}
