# Stand-in for Redpanda (a Kafka broker with a Confluent-compatible schema registry), which
# cannot be pulled where the smoke test runs: the test bed's tansu broker and the test suite's
# registry (tests/docker/schema-registry.rs), both built on the machine and put in the build
# context by scripts/docker-smoke.sh, on the local debian:bookworm-slim.
FROM debian:bookworm-slim
COPY tansu schema-registry redpanda-standin.sh /usr/local/bin/
# tansu's SQLite file goes where Redpanda keeps its data (the compose file's redpanda-data volume).
WORKDIR /var/lib/redpanda/data
EXPOSE 9092 8081
CMD ["redpanda-standin.sh"]
