#!/usr/bin/env bash
# Installs what the test bed needs on a fresh Debian machine, skipping what is already there:
# PostgreSQL server and client (Debian's packages), the tools the test harness calls, and the
# tansu Kafka-protocol broker (crates.io).
set -euo pipefail

TANSU_VERSION=0.6.0
# memory:// storage needs dynostore; restart tests need storage that survives the process:
# libsql gives sqlite://, which creates its own schema (the crates.io release ships none
# for its postgres:// engine).
TANSU_FEATURES=dynostore,postgres,libsql

pg_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# The harness runs initdb/pg_ctl through runuser (util-linux), signals with kill (procps)
# and makes TLS material with openssl; the fault-injection run indexes tansu's SQLite file
# with sqlite3 and cuts connections with ip (iproute2) and iptables.
if [ -z "$(pg_bindir)" ] || [ ! -x "$(pg_bindir)/initdb" ] || ! command -v pg_recvlogical >/dev/null \
    || [ ! -x /bin/kill ] || ! command -v openssl >/dev/null || ! command -v runuser >/dev/null \
    || ! command -v sqlite3 >/dev/null || ! command -v ip >/dev/null \
    || ! command -v iptables >/dev/null; then
    echo "install-testbed: installing PostgreSQL and tools from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        postgresql postgresql-contrib procps openssl util-linux sqlite3 iproute2 iptables \
        >/dev/null
fi
# Debian's package starts a default cluster; the tests create their own and do not need it.
if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r ver name; do
        pg_ctlcluster "$ver" "$name" stop || true
    done
fi

# The metrics test scrapes both binaries with a real Prometheus; the deployment check validates
# docker/ with docker-compose (no Docker engine needed for `config`) and promtool.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
    || ! command -v docker-compose >/dev/null; then
    echo "install-testbed: installing Prometheus and docker-compose from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus docker-compose >/dev/null
fi
# The package may start its own Prometheus service; the tests start theirs on free ports.
if command -v service >/dev/null; then
    service prometheus stop >/dev/null 2>&1 || true
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
tansu_ok() {
    command -v tansu >/dev/null \
        && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION" \
        && tansu --help 2>/dev/null | grep -q '^Storage engines:.*libsql'
}
if ! tansu_ok; then
    echo "install-testbed: installing tansu $TANSU_VERSION (takes about 17 minutes once per machine)"
    cargo install --locked tansu --version "$TANSU_VERSION" --features "$TANSU_FEATURES"
fi
echo "install-testbed: PostgreSQL at $(pg_bindir), tansu at $(command -v tansu)"
