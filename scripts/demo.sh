#!/usr/bin/env bash
# Runs a local pipeline on the test bed: a PostgreSQL cluster with a sample schema `l1` in
# database `shop`, a tansu broker, cdc-source streaming `l1.*` to topics `shop.l1.<table>` in
# JSON (no schema registry needed), and cdc-sink applying those topics to database `replica`.
# It makes a few changes, prints the change events and the target's rows, and keeps running
# until Ctrl-C, when it stops everything it started.
# Usage: scripts/demo.sh            (installs what is missing first)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

scripts/install-testbed.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release --bin cdc-source --bin cdc-sink

PG_PORT="${PGCDC_DEMO_PG_PORT:-55432}"
BROKER_PORT="${PGCDC_DEMO_BROKER_PORT:-59092}"
dir="$root/.testbed/demo"
bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
as_postgres=()
[ "$(id -u)" = 0 ] && as_postgres=(runuser -u postgres --)

cleanup() {
    set +e
    if [ -n "${sink_pid:-}" ]; then
        kill -TERM "$sink_pid" 2>/dev/null
        wait "$sink_pid" 2>/dev/null
    fi
    if [ -n "${source_pid:-}" ]; then
        kill -TERM "$source_pid" 2>/dev/null
        wait "$source_pid" 2>/dev/null
    fi
    [ -n "${broker_pid:-}" ] && kill "$broker_pid" 2>/dev/null
    "${as_postgres[@]}" "$bindir/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1
    echo "demo: stopped"
}

# One line per event: op, key and the row images, without the Connect schemas.
summarize() {
    python3 -c '
import json, sys
for record in json.load(sys.stdin):
    value = (record.get("value") or {}).get("payload")
    key = (record.get("key") or {}).get("payload")
    if value is None:
        print("  tombstone key=%s" % json.dumps(key))
    else:
        print("  %s key=%s before=%s after=%s" % (value["op"], json.dumps(key), json.dumps(value["before"]), json.dumps(value["after"])))
' 2>/dev/null || cat
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A fresh cluster each time: wal_level=logical, loopback only, SCRAM for the connector role.
"${as_postgres[@]}" "$bindir/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
rm -rf "$dir"
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
"${as_postgres[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-instructions >/dev/null
"${as_postgres[@]}" tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
wal_level = logical
password_encryption = 'scram-sha-256'
EOF
"${as_postgres[@]}" tee "$dir/data/pg_hba.conf" >/dev/null <<EOF
host all postgres 127.0.0.1/32 trust
host all all      127.0.0.1/32 scram-sha-256
EOF
"${as_postgres[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start >/dev/null
psql_admin=("$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres)
"${psql_admin[@]}" -d postgres -c "CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD 'demo'" \
    -c "CREATE DATABASE shop OWNER replicator" \
    -c "CREATE ROLE apply WITH LOGIN PASSWORD 'demo'" -c "CREATE DATABASE replica OWNER apply"
PGPASSWORD=demo "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U replicator -d shop <<'SQL'
CREATE SCHEMA l1;
CREATE TABLE l1.customer (id int PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE l1.orders (id bigint PRIMARY KEY, customer_id int, total numeric(10,2), placed_at timestamptz DEFAULT now());
CREATE TABLE l1.audit_log (at timestamptz DEFAULT now(), message text);  -- no primary key
ALTER TABLE l1.audit_log REPLICA IDENTITY FULL;
SQL

tansu broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --storage-engine memory://tansu/ >"$dir/broker.log" 2>&1 &
broker_pid=$!

cat >"$dir/source.toml" <<EOF
[postgres]
url = "postgresql://replicator:demo@127.0.0.1:$PG_PORT/shop?sslmode=disable"

[capture]
slot = "pgcdc"
publication = "pgcdc"
tables = ["l1.*"]
snapshot = "never"

[kafka]
brokers = "127.0.0.1:$BROKER_PORT"
topic_prefix = "shop"
format = "json"
[kafka.topic]
partitions = 1          # one partition, so the demo's single-partition reader sees every event

[metrics]
listen = "127.0.0.1:9187"
EOF
sleep 2
echo "demo: cdc-source check (every prerequisite, with its fix when missing):"
target/release/cdc-source check --config "$dir/source.toml"
target/release/cdc-source run --config "$dir/source.toml" 2>"$dir/source.log" &
source_pid=$!
for _ in $(seq 1 100); do
    active=$("${psql_admin[@]}" -d shop -Atc "SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'pgcdc' AND r.state IN ('catchup', 'streaming')")
    [ "$active" = 1 ] && break
    kill -0 "$source_pid" 2>/dev/null || { cat "$dir/source.log"; exit 1; }
    sleep 0.2
done

cat >"$dir/sink.toml" <<EOF
[postgres]
url = "postgresql://apply:demo@127.0.0.1:$PG_PORT/replica?sslmode=disable"

[apply]
topics = ["shop.l1.*"]
group_id = "pgcdc-demo-sink"
batch_timeout = "100ms"

[source_postgres]
url = "postgresql://replicator:demo@127.0.0.1:$PG_PORT/shop?sslmode=disable"

[kafka]
brokers = "127.0.0.1:$BROKER_PORT"

[metrics]
listen = "127.0.0.1:9188"
EOF
target/release/cdc-sink run --config "$dir/sink.toml" 2>"$dir/sink.log" &
sink_pid=$!

PGPASSWORD=demo "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U replicator -d shop <<'SQL'
INSERT INTO l1.customer VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace', NULL);
INSERT INTO l1.orders (id, customer_id, total) VALUES (100, 1, 42.50);
UPDATE l1.customer SET email = 'grace@example.com' WHERE id = 2;
DELETE FROM l1.orders WHERE id = 100;
INSERT INTO l1.audit_log (message) VALUES ('demo ran');
SQL
sleep 2
for table in customer orders audit_log; do
    echo "== topic shop.l1.$table"
    tansu cat consume --broker "tcp://127.0.0.1:$BROKER_PORT" --max-wait-time-ms 2000 "shop.l1.$table" \
        2>>"$dir/consume.log" | summarize || true
done
echo "== cdc-sink verify (waits until the sink has applied all three tables)"
for _ in $(seq 1 60); do
    if target/release/cdc-sink verify --config "$dir/sink.toml" >"$dir/verify.out" 2>>"$dir/sink.log" &&
        [ "$(grep -c ': ok' "$dir/verify.out")" = 3 ]; then
        break
    fi
    kill -0 "$sink_pid" 2>/dev/null || { cat "$dir/sink.log"; exit 1; }
    sleep 1
done
cat "$dir/verify.out"
echo "== target database replica (applied by cdc-sink)"
for table in customer orders audit_log; do
    PGPASSWORD=demo "$bindir/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U apply -d replica \
        -c "TABLE l1.$table" 2>>"$dir/sink.log" || true
done
cat <<EOF
demo: cdc-source streams shop's l1.* tables to the broker at 127.0.0.1:$BROKER_PORT and
      cdc-sink applies them to database replica.
      Make changes:  PGPASSWORD=demo psql -h 127.0.0.1 -p $PG_PORT -U replicator shop
      See them:      PGPASSWORD=demo psql -h 127.0.0.1 -p $PG_PORT -U apply replica
      Compare:       target/release/cdc-sink verify --config $dir/sink.toml
      Metrics:       curl -s 127.0.0.1:9187/metrics 127.0.0.1:9188/metrics | grep pgcdc_
      Logs:          $dir/source.log $dir/sink.log
      Ctrl-C stops everything.
EOF
wait "$source_pid"
