#!/usr/bin/env bash
# Installs what the test bed needs on a fresh Debian machine, skipping what is already there:
# PostgreSQL server and client (Debian's packages) and the tansu Kafka-protocol broker (crates.io).
set -euo pipefail

TANSU_VERSION=0.6.0

pg_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(pg_bindir)" ] || [ ! -x "$(pg_bindir)/initdb" ] || ! command -v pg_recvlogical >/dev/null; then
    echo "install-testbed: installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >/dev/null
fi
# Debian's package starts a default cluster; the tests create their own and do not need it.
if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r ver name; do
        pg_ctlcluster "$ver" "$name" stop || true
    done
fi

if ! command -v tansu >/dev/null || ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "install-testbed: installing tansu $TANSU_VERSION (takes about 12 minutes once per machine)"
    cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore,postgres
fi
echo "install-testbed: PostgreSQL at $(pg_bindir), tansu at $(command -v tansu)"
