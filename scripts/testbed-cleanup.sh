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

clean() {
    local dir="$1" pidfile pid version
    # Brokers first: one may store its data in a cluster about to stop.
    while IFS= read -r pidfile; do
        pid="$(cat "$pidfile" 2>/dev/null)"
        # The pid may have been reused since: only kill a tansu.
        if [ -n "$pid" ] && grep -qs tansu "/proc/$pid/cmdline"; then
            kill -9 "$pid" 2>/dev/null
        fi
    done < <(find "$dir" -name broker.pid 2>/dev/null)
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
