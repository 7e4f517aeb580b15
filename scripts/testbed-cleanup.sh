#!/usr/bin/env bash
# Stops the PostgreSQL clusters and tansu brokers of integration-test runs and removes their
# directories. With DIR arguments it cleans those run directories; without, every run
# directory under target/tmp/testbed whose test process (named by the directory) is gone.
# Used by the test processes' exit watchdogs (tests/support/mod.rs) and by scripts/test.sh.
set -uo pipefail

base="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/tmp/testbed"

pg_ctl="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/pg_ctl"
as_postgres=()
if [ "$(id -u)" = 0 ]; then
    as_postgres=(runuser -u postgres --)
fi

# Kills the processes whose pid files named $2 lie under $1, if they still run program $3
# (the pid may have been reused since).
kill_recorded() {
    local pidfile pid
    while IFS= read -r pidfile; do
        pid="$(cat "$pidfile" 2>/dev/null)"
        if [ -n "$pid" ] && grep -qs "$3" "/proc/$pid/cmdline"; then
            kill -9 "$pid" 2>/dev/null
        fi
    done < <(find "$1" -name "$2" 2>/dev/null)
}

clean() {
    local dir="$1" version
    # Brokers first: one may store its data in a cluster about to stop.
    kill_recorded "$dir" broker.pid tansu
    kill_recorded "$dir" prometheus.pid prometheus
    # The chaos run's network namespaces (tests/chaos/network.rs) are named after the run's
    # pid; deleting one removes its veth pair.
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^pgcdc-$(basename "$dir")-"); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    while IFS= read -r version; do
        "${as_postgres[@]}" "$pg_ctl" -D "$(dirname "$version")" stop -m immediate >/dev/null 2>&1
    done < <(find "$dir" -path '*/data/PG_VERSION' 2>/dev/null)
    rm -rf "$dir"
}

if [ $# -gt 0 ]; then
    for dir in "$@"; do clean "$dir"; done
    exit 0
fi
[ -d "$base" ] || exit 0
for dir in "$base"/*/; do
    dir="${dir%/}"
    pid="$(basename "$dir")"
    case "$pid" in *[!0-9]* | '') continue ;; esac
    [ -e "/proc/$pid" ] || clean "$dir"
done
