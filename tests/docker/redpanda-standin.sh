#!/usr/bin/env bash
# Runs the broker and the registry of the Redpanda stand-in (tests/docker/redpanda.Dockerfile)
# under the names and ports docker/docker-compose.yml gives Redpanda's: the broker at
# redpanda:9092 for the other containers, the registry at redpanda:8081. The container stops
# (and compose reports it) as soon as either one exits.
set -uo pipefail
schema-registry 0.0.0.0:8081 &
tansu broker \
    --listener-url tcp://0.0.0.0:9092 \
    --advertised-listener-url tcp://redpanda:9092 \
    --storage-engine sqlite://tansu.db &
wait -n
status=$?
echo "redpanda-standin: a process exited with status $status" >&2
exit "$status"
