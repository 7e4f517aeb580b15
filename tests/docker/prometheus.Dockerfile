# Stand-in for prom/prometheus:v2.53.0, which cannot be pulled where the smoke test runs:
# Debian's prometheus on the local debian:bookworm-slim, run as the official image runs its own
# (as nobody, /prometheus as the working and storage directory, the same entrypoint and flags).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
VOLUME /prometheus
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
