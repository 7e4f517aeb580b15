-- pgcdc's DDL capture (`capture.ddl`), installed by `cdc-source init` and `run` in one
-- transaction under an advisory lock, after the schema pgcdc exists. Every statement is
-- idempotent: sources sharing a database share these objects, and each start refreshes them.
--
-- For every DDL command on a followed table (ordinary or partitioned, not a partition, not
-- temporary, not in a system schema or pgcdc) the event triggers emit a transactional logical
-- message with the prefix `pgcdc.ddl`, so it sits in the WAL in order with the rows:
--   {"kind": "CREATE" | "ALTER" | "DROP", "command_tag", "object_identity", "ddl", "relid",
--    "schema", "table", "after": <description> | null, "before": <description> | null}
-- `before` comes from pgcdc.ddl_tables, which keeps every followed table's last description
-- (seeded here with the existing tables). Every function runs with search_path = pg_catalog,
-- so format_type and pg_get_expr qualify every type and object outside pg_catalog.

CREATE TABLE IF NOT EXISTS pgcdc.ddl_tables (relid oid PRIMARY KEY, description jsonb NOT NULL);
REVOKE ALL ON pgcdc.ddl_tables FROM PUBLIC;
COMMENT ON TABLE pgcdc.ddl_tables IS 'created by pgcdc';

CREATE OR REPLACE FUNCTION pgcdc.ddl_column(rel oid, num int2) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $fn$
DECLARE
  a pg_attribute;
  t pg_type;
  bt pg_type;
  base oid;
  typmod int;
  expr text;
  arr boolean := false;
  def text;
  labels jsonb;
BEGIN
  SELECT * INTO a FROM pg_attribute WHERE attrelid = rel AND attnum = num;
  SELECT * INTO t FROM pg_type WHERE oid = a.atttypid;
  base := a.atttypid;
  typmod := a.atttypmod;
  LOOP
    SELECT * INTO bt FROM pg_type WHERE oid = base;
    EXIT WHEN bt.typtype <> 'd';
    base := bt.typbasetype;
    IF typmod < 0 THEN typmod := bt.typtypmod; END IF;
  END LOOP;
  expr := format_type(base, typmod);
  IF bt.typcategory = 'A' AND bt.typelem <> 0 AND bt.typlen = -1 THEN
    arr := true;
    base := bt.typelem;
    LOOP
      SELECT * INTO bt FROM pg_type WHERE oid = base;
      EXIT WHEN bt.typtype <> 'd';
      base := bt.typbasetype;
      IF typmod < 0 THEN typmod := bt.typtypmod; END IF;
    END LOOP;
    expr := CASE WHEN bt.typarray <> 0 THEN format_type(bt.typarray, typmod)
                 ELSE format_type(base, typmod) || '[]' END;
  END IF;
  IF bt.typtype = 'e' THEN
    SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) INTO labels
    FROM pg_enum e WHERE e.enumtypid = bt.oid;
  END IF;
  SELECT pg_get_expr(d.adbin, d.adrelid) INTO def
  FROM pg_attrdef d WHERE d.adrelid = rel AND d.adnum = num;
  RETURN jsonb_build_object(
    'attnum', a.attnum,
    'name', a.attname,
    'type_name', CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN t.typname::text
                      ELSE format('%I.%I', t.typnamespace::regnamespace, t.typname) END,
    'type_expression', expr,
    'type_oid', a.atttypid::bigint,
    'base_type', bt.typname,
    'base_catalog', bt.typnamespace = 'pg_catalog'::regnamespace,
    'base_kind', bt.typtype::text,
    'base_array', arr,
    'base_typmod', typmod,
    'not_null', a.attnotnull,
    'default', def,
    'identity', nullif(a.attidentity::text, ''),
    'generated', a.attgenerated <> '',
    'auto_incremented', a.attidentity <> '' OR coalesce(def LIKE 'nextval(%', false),
    'enum_values', labels);
END
$fn$;

CREATE OR REPLACE FUNCTION pgcdc.ddl_describe(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
SELECT jsonb_build_object(
  'schema', n.nspname,
  'table', c.relname,
  'columns', coalesce((SELECT jsonb_agg(pgcdc.ddl_column(c.oid, a.attnum) ORDER BY a.attnum)
                       FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb),
  'primary_key', coalesce((SELECT jsonb_agg(a.attname ORDER BY k.ord)
                           FROM pg_index i
                           CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                           WHERE i.indrelid = c.oid AND i.indisprimary), '[]'::jsonb),
  'replica_identity', c.relreplident::text)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = rel
$fn$;

-- Whether a relation is a table DDL capture follows: ordinary or partitioned, not a partition,
-- not temporary, not a system or pgcdc table.
CREATE OR REPLACE FUNCTION pgcdc.ddl_followed(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
SELECT EXISTS (
  SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = rel AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    AND c.relpersistence <> 't'
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgcdc')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%')
$fn$;

CREATE OR REPLACE FUNCTION pgcdc.ddl_emit(rel oid, kind text, tag text, identity text,
                                          schema_name text, table_name text, after jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  before jsonb;
BEGIN
  SELECT description INTO before FROM pgcdc.ddl_tables WHERE relid = rel;
  IF after IS NULL THEN
    DELETE FROM pgcdc.ddl_tables WHERE relid = rel;
  ELSE
    INSERT INTO pgcdc.ddl_tables (relid, description) VALUES (rel, after)
    ON CONFLICT (relid) DO UPDATE SET description = EXCLUDED.description;
  END IF;
  PERFORM pg_logical_emit_message(true, 'pgcdc.ddl', jsonb_build_object(
    'kind', kind, 'command_tag', tag, 'object_identity', identity, 'ddl', current_query(),
    'relid', rel::bigint, 'schema', schema_name, 'table', table_name,
    'after', after, 'before', before)::text);
END
$fn$;

CREATE OR REPLACE FUNCTION pgcdc.ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  r record;
  after jsonb;
BEGIN
  FOR r IN
    WITH RECURSIVE commands AS (
      SELECT c.objid, c.command_tag, c.object_identity, row_number() OVER () AS ord
      FROM pg_event_trigger_ddl_commands() c
      WHERE c.classid = 'pg_class'::regclass
        AND c.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
    ), direct AS (
      SELECT objid,
             (array_agg(command_tag ORDER BY command_tag = 'ALTER TABLE', ord))[1] AS tag,
             (array_agg(object_identity ORDER BY ord))[1] AS identity,
             min(ord) AS ord
      FROM commands GROUP BY objid
    ), children(objid, tag, identity, ord) AS (
      SELECT i.inhrelid, 'ALTER TABLE'::text, NULL::text, d.ord
      FROM direct d JOIN pg_inherits i ON i.inhparent = d.objid WHERE d.tag = 'ALTER TABLE'
      UNION
      SELECT i.inhrelid, 'ALTER TABLE'::text, NULL::text, ch.ord
      FROM children ch JOIN pg_inherits i ON i.inhparent = ch.objid
    )
    SELECT objid, tag, identity, false AS inherited, ord FROM direct
    UNION ALL
    SELECT objid, tag, identity, true, ord FROM children
    WHERE objid NOT IN (SELECT objid FROM direct)
    ORDER BY ord, inherited, objid
  LOOP
    CONTINUE WHEN NOT pgcdc.ddl_followed(r.objid);
    after := pgcdc.ddl_describe(r.objid);
    -- An ALTER that left the description as it was (OWNER, storage options, …) is no change.
    CONTINUE WHEN r.tag = 'ALTER TABLE' AND after IS NOT DISTINCT FROM
      (SELECT description FROM pgcdc.ddl_tables WHERE relid = r.objid);
    PERFORM pgcdc.ddl_emit(r.objid,
      CASE WHEN r.tag = 'ALTER TABLE' THEN 'ALTER' ELSE 'CREATE' END,
      r.tag, coalesce(r.identity, format('%I.%I', after->>'schema', after->>'table')),
      after->>'schema', after->>'table', after);
  END LOOP;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'pgcdc: DDL capture failed, this change is not published: % (%)', SQLERRM, SQLSTATE;
END
$fn$;

CREATE OR REPLACE FUNCTION pgcdc.ddl_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  r record;
  altered oid[] := '{}';
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
    CONTINUE WHEN r.classid <> 'pg_class'::regclass;
    IF r.objsubid = 0 AND r.object_type IN ('table') THEN
      CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pgcdc.ddl_tables WHERE relid = r.objid);
      PERFORM pgcdc.ddl_emit(r.objid, 'DROP', tg_tag, r.object_identity,
                             r.schema_name, r.object_name, NULL);
    ELSIF r.objsubid <> 0 AND tg_tag <> 'ALTER TABLE' AND NOT r.objid = ANY (altered)
          AND pgcdc.ddl_followed(r.objid) THEN
      -- A column dropped with something else (DROP TYPE … CASCADE): the table was altered.
      altered := altered || r.objid;
      PERFORM pgcdc.ddl_emit(r.objid, 'ALTER', tg_tag, r.object_identity,
                             r.schema_name, (SELECT relname FROM pg_class WHERE oid = r.objid),
                             pgcdc.ddl_describe(r.objid));
    END IF;
  END LOOP;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'pgcdc: DDL capture failed, this change is not published: % (%)', SQLERRM, SQLSTATE;
END
$fn$;

REVOKE ALL ON FUNCTION pgcdc.ddl_column(oid, int2), pgcdc.ddl_describe(oid), pgcdc.ddl_followed(oid),
  pgcdc.ddl_emit(oid, text, text, text, text, text, jsonb) FROM PUBLIC;

-- The refresh reads the catalog as committed when it starts, and a DDL transaction still open
-- has already written its table's new description here: overwriting that after it commits would
-- put back the description from before it, and the next change would carry a wrong `before`
-- (a renamed column replayed as a new one). This lock waits for such transactions to end (they
-- hold ROW EXCLUSIVE from the trigger's write), and DDL after it waits for this transaction.
LOCK TABLE pgcdc.ddl_tables IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO pgcdc.ddl_tables (relid, description)
SELECT c.oid, pgcdc.ddl_describe(c.oid) FROM pg_class c WHERE pgcdc.ddl_followed(c.oid)
ON CONFLICT (relid) DO UPDATE SET description = EXCLUDED.description;
DELETE FROM pgcdc.ddl_tables t WHERE NOT pgcdc.ddl_followed(t.relid);

DO $do$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgcdc_ddl_command_end') THEN
    CREATE EVENT TRIGGER pgcdc_ddl_command_end ON ddl_command_end EXECUTE FUNCTION pgcdc.ddl_command_end();
    COMMENT ON EVENT TRIGGER pgcdc_ddl_command_end IS 'created by pgcdc';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgcdc_sql_drop') THEN
    CREATE EVENT TRIGGER pgcdc_sql_drop ON sql_drop EXECUTE FUNCTION pgcdc.ddl_sql_drop();
    COMMENT ON EVENT TRIGGER pgcdc_sql_drop IS 'created by pgcdc';
  END IF;
END $do$;
