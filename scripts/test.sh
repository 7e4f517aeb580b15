#!/usr/bin/env bash
# The one test command (README, CI): installs the test bed if needed, runs every test target,
# then stops whatever test clusters and brokers a crashed test process left behind.
# Exits with cargo's status.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-testbed.sh
# cargo install puts tansu here; CI shells do not always have it on PATH.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# Tests mostly wait on PostgreSQL, the broker and timeouts, so more threads than the two
# cores keep the run short without starving the servers.
status=0
cargo test --lib --bins --tests -- --test-threads="${PGCDC_TEST_THREADS:-4}" || status=$?

# Each test process's watchdog cleans up within a second of its exit; give them that
# second, then sweep what is left (a watchdog killed along with its test process).
sleep 2
scripts/testbed-cleanup.sh
exit "$status"
