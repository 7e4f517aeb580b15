#!/usr/bin/env bash
# The long fault-injection run (tests/chaos): the whole pipeline under a mixed workload while
# faults drawn from a seed hit it, then the checks that nothing was lost or applied twice.
# Prints the README's figures table and writes it to target/chaos-<seed>.md.
#
#   scripts/chaos.sh [--seed N] [--faults kind=count,...] [--duration 30m] [--prefill ROWS]
#                    [--big-transaction ROWS] [--log-level FILTER] [--logs DIR]
#
# Defaults: a seed from the clock, 20 `kill -9` each of cdc-source and cdc-sink, 2 lost slots
# and 5 of every other kind, in the seed's order, with no time limit (--duration: no fault
# after that); 100,000 rows snapshotted at the start, a 1,000,000-row transaction. Fault kinds: source-kill9 source-term sink-kill9 sink-term broker-kill9
# broker-restart source-pg-restart target-pg-restart source-pg-cut sink-broker-cut slot-lost.
# Every log of cdc-source and cdc-sink is kept in DIR (default target/chaos-<seed>-logs), at
# the binaries' --log-level FILTER (e.g. info,pgcdc::sink::run=debug; default info).
# Needs root (network namespaces and iptables, for the network cuts).
set -euo pipefail
cd "$(dirname "$0")/.."

while [ $# -gt 0 ]; do
    case "$1" in
        --seed) export PGCDC_CHAOS_SEED="$2"; shift 2 ;;
        --faults) export PGCDC_CHAOS_FAULTS="$2"; shift 2 ;;
        --duration) export PGCDC_CHAOS_DURATION="$2"; shift 2 ;;
        --prefill) export PGCDC_CHAOS_PREFILL="$2"; shift 2 ;;
        --big-transaction) export PGCDC_CHAOS_BIG_TRANSACTION="$2"; shift 2 ;;
        --log-level) export PGCDC_CHAOS_LOG_LEVEL="$2"; shift 2 ;;
        --logs) export PGCDC_CHAOS_LOGS="$2"; shift 2 ;;
        *) echo "unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
done
export PGCDC_CHAOS_SEED="${PGCDC_CHAOS_SEED:-$(date +%s)}"
export PGCDC_CHAOS_LONG=1
export PGCDC_CHAOS_REPORT="$PWD/target/chaos-$PGCDC_CHAOS_SEED.md"
export PGCDC_CHAOS_LOGS="${PGCDC_CHAOS_LOGS:-$PWD/target/chaos-$PGCDC_CHAOS_SEED-logs}"

scripts/install-testbed.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
echo "chaos run, seed $PGCDC_CHAOS_SEED"
status=0
cargo test --test main chaos::short_run_loses_nothing -- --nocapture || status=$?
sleep 2
scripts/testbed-cleanup.sh
[ -f "$PGCDC_CHAOS_REPORT" ] && echo "figures: $PGCDC_CHAOS_REPORT"
echo "logs: $PGCDC_CHAOS_LOGS"
exit "$status"
