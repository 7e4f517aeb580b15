#!/usr/bin/env bash
# Checks the docker/ deployment without a Docker engine (SPEC §8: "validate its syntax in CI"):
# the compose file, the Prometheus configuration, every PromQL query of the Grafana dashboard,
# and the YAML/JSON Grafana and Redpanda Console read.
#
# Needs Debian's docker-compose (1.29; `config` needs no engine) and prometheus (for promtool):
#   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose prometheus
# Exits 0 when everything is valid, 1 on an invalid file, 127 when a tool is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
docker_dir="$root/docker"

require() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "validate-deploy: $1 is not installed; install the Debian package $2 (apt-get install -y --no-install-recommends $2)" >&2
        exit 127
    fi
}
require docker-compose docker-compose
require promtool prometheus

# docker-compose depends on python3-yaml, so Debian's python3 can read YAML wherever
# docker-compose is installed; another python3 first in PATH may lack it.
python=""
for candidate in /usr/bin/python3 python3; do
    if "$candidate" -c 'import yaml' >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "validate-deploy: no python3 with the yaml module; install the Debian package python3-yaml" >&2
    exit 127
fi

failed=0
check() {
    local what="$1"
    shift
    local output
    if output="$("$@" 2>&1)"; then
        echo "ok: $what"
    else
        echo "FAILED: $what" >&2
        echo "$output" >&2
        failed=1
    fi
}

# Warnings (an unset variable, an obsolete key) go to stderr even when config succeeds: they
# count as failures, so the file stays clean for every docker-compose version.
compose_clean() {
    local warnings
    warnings="$(docker-compose -f "$docker_dir/docker-compose.yml" config -q 2>&1)" || {
        echo "$warnings"
        return 1
    }
    if [ -n "$warnings" ]; then
        echo "$warnings"
        return 1
    fi
}
check "docker/docker-compose.yml (docker-compose config)" compose_clean

check "docker/prometheus.yml (promtool check config)" \
    promtool check config "$docker_dir/prometheus.yml"

dashboard="$docker_dir/grafana/dashboards/pgcdc.json"
check "docker/grafana/dashboards/pgcdc.json (JSON)" "$python" -m json.tool "$dashboard"

yaml_loads() {
    "$python" -c 'import sys, yaml; [yaml.safe_load(open(f)) for f in sys.argv[1:]]' "$@"
}
check "Grafana provisioning YAML" yaml_loads \
    "$docker_dir/grafana/provisioning/datasources/prometheus.yml" \
    "$docker_dir/grafana/provisioning/dashboards/pgcdc.yml"

# Console's configuration travels in the compose file's environment, as a YAML document.
console_config_loads() {
    "$python" - "$docker_dir/docker-compose.yml" <<'PY'
import sys, yaml

compose = yaml.safe_load(open(sys.argv[1]))
config = yaml.safe_load(compose["services"]["console"]["environment"]["CONSOLE_CONFIG_FILE"])
if not config.get("kafka", {}).get("brokers") or not config.get("schemaRegistry", {}).get("urls"):
    sys.exit("CONSOLE_CONFIG_FILE names no brokers or no schema registry")
PY
}
check "Redpanda Console configuration (CONSOLE_CONFIG_FILE)" console_config_loads

# promtool parses PromQL only inside rule files, so every dashboard query becomes a recording
# rule, with Grafana's $__rate_interval replaced by a literal range.
rules_dir="$(mktemp -d)"
trap 'rm -rf "$rules_dir"' EXIT
dashboard_rules() {
    "$python" - "$dashboard" "$rules_dir/dashboard.rules.yml" <<'PY'
import json, sys

dashboard = json.load(open(sys.argv[1]))
exprs = [
    target["expr"]
    for panel in dashboard["panels"]
    for target in panel.get("targets", [])
    if target.get("expr")
]
if not exprs:
    sys.exit("the dashboard has no PromQL queries")
rules = [
    {"record": f"pgcdc_dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "1m")}
    for i, expr in enumerate(exprs)
]
# JSON is YAML, which is what promtool reads.
with open(sys.argv[2], "w") as out:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, out)
PY
    promtool check rules "$rules_dir/dashboard.rules.yml"
}
check "dashboard PromQL queries (promtool check rules)" dashboard_rules

if [ "$failed" -ne 0 ]; then
    echo "validate-deploy: invalid deployment files (see above)" >&2
    exit 1
fi
echo "validate-deploy: all deployment files are valid"
