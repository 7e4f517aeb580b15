-- Target database of the compose demo, run once by the postgres image's entrypoint (as the
-- superuser, in database replica) when the data volume is empty.
--
-- cdc-sink creates the schemas it writes (the source's l1, and pgcdc for its offsets) and the
-- tables in them, so CREATE on the database is all its role needs.

\set ON_ERROR_STOP on

-- The password comes from the compose secret, so it is written down in one place only.
\set apply_password `cat /run/secrets/apply_password`
SELECT :'apply_password' = '' AS apply_password_missing \gset
\if :apply_password_missing
DO $$ BEGIN RAISE EXCEPTION 'the apply_password secret (/run/secrets/apply_password) is missing or empty'; END $$;
\endif

CREATE ROLE apply WITH LOGIN PASSWORD :'apply_password';
SELECT current_database() AS target_database \gset
GRANT CREATE ON DATABASE :"target_database" TO apply;
