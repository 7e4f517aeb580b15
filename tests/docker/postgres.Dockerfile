# Stand-in for postgres:15, which cannot be pulled where the smoke test runs: Debian's
# postgresql-15 on the local debian:bookworm-slim, behind postgres-entrypoint.sh, which does what
# the official image's entrypoint does for docker/docker-compose.yml (POSTGRES_* and *_FILE
# variables, /docker-entrypoint-initdb.d scripts). Users, paths and defaults are the official
# image's: postgres is uid 999, PGDATA /var/lib/postgresql/data, listen_addresses '*'.
FROM debian:bookworm-slim
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql \
        --shell /bin/bash postgres \
    && mkdir -p /var/lib/postgresql \
    && chown postgres:postgres /var/lib/postgresql
# Debian's package would make a cluster of its own at install; the entrypoint makes PGDATA's.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common \
    && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" \
        /usr/share/postgresql/15/postgresql.conf.sample \
    && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql \
    && chown postgres:postgres /var/run/postgresql \
    && chmod 3777 /var/run/postgresql
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
