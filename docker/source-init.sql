-- Source database of the compose demo, run once by the postgres image's entrypoint (as the
-- superuser, in database shop) when the data volume is empty.
--
-- Everything cdc-source would need a superuser or table ownership for is created here, so its
-- own role stays least-privilege: LOGIN and REPLICATION, read access to l1, and write access to
-- the signal table only. `cdc-source teardown` leaves these objects alone because they do not
-- carry pgcdc's "created by" mark.

\set ON_ERROR_STOP on

-- The password comes from the compose secret, so it is written down in one place only.
\set pgcdc_password `cat /run/secrets/pgcdc_password`
SELECT :'pgcdc_password' = '' AS pgcdc_password_missing \gset
\if :pgcdc_password_missing
DO $$ BEGIN RAISE EXCEPTION 'the pgcdc_password secret (/run/secrets/pgcdc_password) is missing or empty'; END $$;
\endif

CREATE SCHEMA l1;

CREATE TABLE l1.customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE l1.orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES l1.customers (id),
    status      text NOT NULL DEFAULT 'new',
    total       numeric(12, 2) NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now()
);

-- No primary key: without FULL, PostgreSQL would refuse its updates and deletes once it is
-- published, and events would carry no before image to match target rows by.
CREATE TABLE l1.events_log (
    occurred_at timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    payload     jsonb
);
ALTER TABLE l1.events_log REPLICA IDENTITY FULL;

INSERT INTO l1.customers (email, name) VALUES
    ('ada@example.com', 'Ada Lovelace'),
    ('alan@example.com', 'Alan Turing'),
    ('grace@example.com', 'Grace Hopper');

INSERT INTO l1.orders (customer_id, status, total) VALUES
    (1, 'paid', 120.50),
    (1, 'new', 15.00),
    (2, 'shipped', 89.99),
    (3, 'paid', 42.00);

INSERT INTO l1.events_log (kind, payload) VALUES
    ('signup', '{"customer": 1}'),
    ('signup', '{"customer": 2}'),
    ('login', '{"customer": 1, "ip": "192.0.2.10"}');

-- Debezium's signal-table shape; incremental snapshots write their watermarks here.
CREATE SCHEMA pgcdc;
CREATE TABLE pgcdc.signal (
    id   varchar(64) PRIMARY KEY,
    type varchar(32) NOT NULL,
    data varchar(2048)
);

CREATE ROLE pgcdc WITH LOGIN REPLICATION PASSWORD :'pgcdc_password';
GRANT USAGE ON SCHEMA l1 TO pgcdc;
GRANT SELECT ON ALL TABLES IN SCHEMA l1 TO pgcdc;
-- Tables created later in l1 are readable too, so the l1.* capture picks them up.
ALTER DEFAULT PRIVILEGES IN SCHEMA l1 GRANT SELECT ON TABLES TO pgcdc;
GRANT USAGE ON SCHEMA pgcdc TO pgcdc;
GRANT SELECT, INSERT, DELETE ON pgcdc.signal TO pgcdc;

-- Creating or extending a publication needs table ownership; publishing the whole schema makes
-- tables created in l1 later published without cdc-source needing that.
CREATE PUBLICATION pgcdc FOR TABLES IN SCHEMA l1, TABLE pgcdc.signal;
