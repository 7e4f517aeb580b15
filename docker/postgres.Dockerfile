# The compose demo's two databases: the official image with each one's init script and the
# passwords it reads copied in and owned by postgres, which runs the init scripts. Bind-mounted,
# a file of a checkout made under umask 077 is 0600 and owned by the host user, which postgres
# cannot read; compose cannot change a mounted secret's mode or owner. The passwords sit where
# compose and swarm mount secrets (POSTGRES_PASSWORD_FILE and the init scripts name them there).
# Built by docker-compose.yml with this directory as the context.

FROM postgres:15 AS source-db
COPY --chown=postgres:postgres secrets/postgres_password secrets/pgcdc_password /run/secrets/
COPY --chown=postgres:postgres source-init.sql /docker-entrypoint-initdb.d/

FROM postgres:15 AS target-db
COPY --chown=postgres:postgres secrets/postgres_password secrets/apply_password /run/secrets/
COPY --chown=postgres:postgres target-init.sql /docker-entrypoint-initdb.d/
