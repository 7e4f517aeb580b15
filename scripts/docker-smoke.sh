#!/usr/bin/env bash
# The docker-compose quickstart, run for real: builds the images from docker/, brings the
# compose stack up, runs the README's "Quickstart with docker compose" commands exactly as
# written there (the configuration check, `cdc-source check`, an insert into the source, the
# row read back from the target, `cdc-sink verify`, Prometheus' `up` for both binaries), and
# tears the stack down, volumes included. Any failing step fails the script.
#
# Where no image can be pulled, it first builds local stand-ins under the names the stack
# pulls (tests/docker/): debian:bookworm-slim by debootstrap, rust:1-slim-bookworm from this
# machine's Rust toolchain, postgres:15 and prom/prometheus from Debian's packages; an image
# that already exists (pulled, or built by an earlier run) is used as it is. Redpanda, which
# Debian does not package, is replaced by tansu and the test suite's schema registry through
# tests/docker/docker-compose.smoke.yml, which also leaves out Redpanda Console and Grafana.
#
# Usage: scripts/docker-smoke.sh [--compose v1|v2] [--cold]
#   --compose  docker-compose (v1) or `docker compose` (v2); default: v2 when installed
#   --cold     first remove the stack's images and the build cache, to time a cold build
# Needs: a running Docker engine, curl and psql (postgresql-client), debootstrap (to make
# debian:bookworm-slim), cargo, and tansu (scripts/install-testbed.sh installs it). As root.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
standins="$root/tests/docker"

flavour=""
cold=0
while [ $# -gt 0 ]; do
    case "$1" in
        --compose)
            flavour="${2:-}"
            shift 2 || { echo "docker-smoke: --compose needs v1 or v2" >&2; exit 2; }
            ;;
        --cold) cold=1; shift ;;
        *) echo "docker-smoke: unknown argument $1 (usage: $0 [--compose v1|v2] [--cold])" >&2; exit 2 ;;
    esac
done
if [ -z "$flavour" ]; then
    if docker compose version >/dev/null 2>&1; then flavour=v2; else flavour=v1; fi
fi
case "$flavour" in
    v1) compose=(docker-compose) ;;
    v2) compose=(docker compose) ;;
    *) echo "docker-smoke: --compose must be v1 or v2, not $flavour" >&2; exit 2 ;;
esac

say() { echo "docker-smoke: $*"; }
fail() { echo "docker-smoke: FAILED: $*" >&2; exit 1; }

require() {
    command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed ($2)"
}
require docker "Debian package docker.io"
require curl "Debian package curl"
require psql "Debian package postgresql-client"
require cargo "a Rust toolchain"
require tansu "run scripts/install-testbed.sh"
docker info >/dev/null 2>&1 || fail "no Docker engine answers (start one, e.g. dockerd --storage-driver=vfs)"
"${compose[@]}" version >/dev/null 2>&1 || fail "${compose[*]} is not installed"
say "compose: $("${compose[@]}" version | head -n 1); engine $(docker version --format '{{.Server.Version}}')"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# --- Stand-ins for the images that cannot be pulled -------------------------------------------

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# debian:bookworm-slim: a minbase debootstrap without documentation, man pages and locales, told
# (as the official image is) not to install them later nor to keep apt's caches in a layer.
debian_image() {
    require debootstrap "Debian package debootstrap"
    local rootfs="$scratch/rootfs"
    say "building debian:bookworm-slim with debootstrap"
    debootstrap --variant=minbase bookworm "$rootfs" >"$scratch/debootstrap.log" 2>&1 \
        || { tail -n 20 "$scratch/debootstrap.log" >&2; fail "debootstrap"; }
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale}/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
}

# rust:1-slim-bookworm: this machine's default toolchain (without its documentation), rustup, and
# the CAs this machine trusts (cargo in the build reaches crates.io as the machine does).
rust_image() {
    local context="$scratch/rust" sysroot toolchain
    sysroot="$(rustc --print sysroot)"
    toolchain="$(basename "$sysroot")"
    say "building rust:1-slim-bookworm from the toolchain $toolchain"
    mkdir -p "$context/rustup/toolchains/$toolchain" "$context/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$context/rustup/toolchains/$toolchain" -x
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
        "$toolchain" >"$context/rustup/settings.toml"
    cp "$(command -v rustup)" "$context/cargo/bin/rustup"
    for proxy in cargo rustc rustdoc; do ln -s rustup "$context/cargo/bin/$proxy"; done
    cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-certificates.crt"
    cp "$standins/rust.Dockerfile" "$context/Dockerfile"
    docker build -q -t rust:1-slim-bookworm "$context" >/dev/null
    rm -rf "$context"
}

debian_package_image() {
    local name="$1" dockerfile="$2"
    say "building $name from Debian's packages"
    docker build -q -t "$name" -f "$standins/$dockerfile" "$standins" >/dev/null
}

# tansu and the test suite's registry, both built on this machine.
redpanda_image() {
    local context="$scratch/redpanda"
    say "building the Redpanda stand-in (tansu and the test suite's schema registry)"
    (cd "$root" && cargo build --quiet --example schema-registry)
    mkdir -p "$context"
    cp "$(command -v tansu)" "$root/target/debug/examples/schema-registry" \
        "$standins/redpanda-standin.sh" "$context/"
    cp "$standins/redpanda.Dockerfile" "$context/Dockerfile"
    docker build -q -t pgcdc-smoke/redpanda-standin "$context" >/dev/null
    rm -rf "$context"
}

have_image debian:bookworm-slim || debian_image
have_image rust:1-slim-bookworm || rust_image
have_image postgres:15 || debian_package_image postgres:15 postgres.Dockerfile
have_image prom/prometheus:v2.53.0 || debian_package_image prom/prometheus:v2.53.0 prometheus.Dockerfile
redpanda_image

# --- The stack -------------------------------------------------------------------------------

# COMPOSE_FILE adds the stand-ins without changing the README's commands; a project name of its
# own keeps the stack apart from one the user runs from docker/.
export COMPOSE_FILE="$root/docker/docker-compose.yml:$standins/docker-compose.smoke.yml"
export COMPOSE_PROJECT_NAME=pgcdcsmoke

teardown() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        "${compose[@]}" ps >&2 || true
        "${compose[@]}" logs --no-color --tail 40 >&2 || true
    fi
    say "tearing the stack down"
    "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
    # Layers of images that a rebuild replaced, and unused build cache: with the vfs storage
    # driver each layer is a full copy of the image, and a few runs would fill the disk.
    docker image prune --force >/dev/null 2>&1 || true
    docker builder prune --force >/dev/null 2>&1 || true
    rm -rf "$scratch"
    exit "$status"
}
trap teardown EXIT
"${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true

if [ "$cold" -eq 1 ]; then
    say "removing the stack's images and the build cache (--cold)"
    docker rmi -f pgcdc:demo "${COMPOSE_PROJECT_NAME}_source-db" "${COMPOSE_PROJECT_NAME}_target-db" \
        "${COMPOSE_PROJECT_NAME}_prometheus" "${COMPOSE_PROJECT_NAME}-source-db" \
        "${COMPOSE_PROJECT_NAME}-target-db" "${COMPOSE_PROJECT_NAME}-prometheus" >/dev/null 2>&1 || true
    docker builder prune --all --force >/dev/null 2>&1 || true
    docker image prune --force >/dev/null
fi

# --- The README's quickstart, command by command ------------------------------------------------

# The fenced sh block under "## Quickstart with docker compose", with continuation lines joined.
quickstart="$(awk '
    /^## Quickstart with docker compose/ { section = 1; next }
    section && /^## / { exit }
    section && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }
' "$root/README.md" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')"
[ -n "$quickstart" ] || fail "no sh block under \"## Quickstart with docker compose\" in README.md"

# Written for `docker compose`; the README tells v1 users to type docker-compose instead.
as_flavour() {
    if [ "$flavour" = v1 ]; then sed 's/docker compose /docker-compose /g' <<<"$1"; else echo "$1"; fi
}

# run_step COMMAND [LINES]: runs it under a pseudo-terminal (as typed in a terminal: docker-compose
# v1's exec wants one) from the current directory, and prints it with its output (the last
# LINES lines of it when given; all of it is in $logs). Its output is in $output. psql's pager
# would wait for a key on that terminal, as it does for a user whose screen is too small.
logs="$root/target/docker-smoke"
rm -rf "$logs"
mkdir -p "$logs"
export PSQL_PAGER=cat
output=""
steps=0
run_step() {
    local command="$1" lines="${2:-}" status=0
    steps=$((steps + 1))
    output="$(script -qefc "$command" /dev/null </dev/null 2>&1 | tr -d '\r\000')" || status=$?
    printf '$ %s\n%s\n' "$command" "$output" >"$logs/step-$steps.log"
    if [ -n "$lines" ]; then
        printf '$ %s\n(last %s lines of %s)\n%s\n' "$command" "$lines" "$logs/step-$steps.log" \
            "$(tail -n "$lines" <<<"$output")" | sed 's/^/    /'
    else
        printf '$ %s\n%s\n' "$command" "$output" | sed 's/^/    /'
    fi
    return "$status"
}

# retry_step NAME SECONDS COMMAND CHECK: runs COMMAND until it succeeds and CHECK (a function of
# $output) holds, for what becomes true a few seconds after the previous step (replication,
# scraping), as a user would run it again.
retry_step() {
    local name="$1" seconds="$2" command="$3" check="$4" deadline
    deadline=$((SECONDS + seconds))
    until run_step "$command" && "$check"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$name: not true after ${seconds}s"
        sleep 2
    done
}

row_arrived() { grep -q 'edsger@example.com' <<<"$output"; }
both_up() {
    python3 - "$output" <<'PY'
import json, sys
up = {r["metric"].get("job"): r["value"][1] for r in json.loads(sys.argv[1])["data"]["result"]}
sys.exit(0 if up.get("pgcdc-source") == "1" and up.get("pgcdc-sink") == "1" else 1)
PY
}

expected=(cd config up check insert read verify prometheus)
seen=()
cd "$root"
while IFS= read -r line; do
    command="$(as_flavour "$line")"
    [ -n "${command// /}" ] || continue
    case "$command" in
        "cd docker")
            seen+=(cd)
            cd docker
            ;;
        *"compose config --quiet"*)
            seen+=(config)
            say "checking the compose file"
            run_step "$command" || fail "the compose file does not validate"
            ;;
        *"compose up --build -d"*)
            seen+=(up)
            say "building the images and starting the stack"
            started=$SECONDS
            run_step "$command" 8 || fail "up --build"
            say "up --build took $((SECONDS - started))s"
            ;;
        *"exec cdc-source cdc-source check "*)
            seen+=(check)
            say "checking the source's prerequisites"
            run_step "$command" || fail "cdc-source check"
            ;;
        *"-p 15432 "*"INSERT INTO l1.customers"*)
            seen+=(insert)
            say "inserting a row into the source"
            run_step "$command" || fail "the insert into the source"
            grep -q '^INSERT 0 1' <<<"$output" || fail "the insert did not insert one row"
            ;;
        *"-p 15433 "*"TABLE l1.customers"*)
            seen+=(read)
            say "reading the row in the target"
            retry_step read 60 "$command" row_arrived
            ;;
        *"exec cdc-sink cdc-sink verify "*)
            seen+=(verify)
            say "verifying the target against the source"
            run_step "$command" || fail "cdc-sink verify"
            ;;
        *"9090/api/v1/query?query=up"*)
            seen+=(prometheus)
            say "asking Prometheus whether both binaries are up"
            retry_step prometheus 60 "$command" both_up
            ;;
        *) fail "README quickstart line not known to this script: $line" ;;
    esac
done <<<"$quickstart"
[ "${seen[*]}" = "${expected[*]}" ] \
    || fail "README quickstart steps are (${seen[*]}), this script expects (${expected[*]})"

# Nothing the quickstart does is an error for the binaries (a sink subscribing before the source
# has made its topics, for one, is expected).
errors="$("${compose[@]}" logs --no-color cdc-source cdc-sink | grep ' ERROR ' || true)"
[ -z "$errors" ] || fail "the binaries logged errors:"$'\n'"$errors"

say "image pgcdc:demo: $(docker image inspect --format '{{.Size}}' pgcdc:demo | awk '{printf "%.1f MB", $1 / 1e6}')"
say "passed (${compose[*]})"
