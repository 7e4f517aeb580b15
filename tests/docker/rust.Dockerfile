# Stand-in for rust:1-slim-bookworm (docker/Dockerfile's builder), which cannot be pulled where
# the smoke test runs: the machine's own Rust toolchain, which scripts/docker-smoke.sh puts in
# the build context (without its documentation), on the local debian:bookworm-slim, laid out as
# the official image lays out its own (rustup under RUSTUP_HOME, proxies in CARGO_HOME/bin, gcc).
# It also trusts what the machine trusts (its CA bundle, also put in the context): where the smoke
# test runs, crates.io is reached through a TLS-inspecting proxy whose CA only the machine knows.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY host-ca-certificates.crt /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN rustc --version && cargo --version
