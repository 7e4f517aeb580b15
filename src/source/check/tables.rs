//! The checks of the captured tables: that they exist, can be read, log usable old images
//! (partitions included), and that the publication covers them as pgcdc publishes them.

use super::{PostgresChecks, Verdict, CREATED_BY};
use crate::source::catalog::PUBLISHED_TABLES_SQL;
use crate::source::{setup, SourceError};

/// What the checks learn about one captured table.
pub(super) struct TableFacts {
    name: String,
    identity: String,
    has_primary_key: bool,
    readable: bool,
    owned: bool,
    /// The schema, quoted, when the role lacks USAGE on it.
    unusable_schema: Option<String>,
    /// Whether it is a partitioned table (published through its root).
    partitioned: bool,
    /// Its leaf partitions that log no usable old row (each partition logs its own).
    unusable_partitions: Vec<String>,
}

impl PostgresChecks<'_> {
    pub(super) async fn tables(&mut self) -> Result<Vec<TableFacts>, SourceError> {
        let names = match setup::existing_captured_tables(self.client, &self.prepared.filter).await
        {
            Ok(names) => names,
            Err(setup::SetupError::Prerequisite(problem)) => {
                self.report.add(Verdict::Fail, "captured tables", problem);
                return Ok(Vec::new());
            }
            Err(error) => return Err(error.into()),
        };
        let (schemas, tables): (Vec<String>, Vec<String>) = names.into_iter().unzip();
        let rows = self
            .client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname), c.relreplident::text, \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                        has_table_privilege(c.oid, 'SELECT'), pg_has_role(c.relowner, 'USAGE'), \
                        CASE WHEN NOT has_schema_privilege(n.oid, 'USAGE') THEN format('%I', n.nspname) END, \
                        c.relkind = 'p', \
                        ARRAY(WITH RECURSIVE tree(oid) AS ( \
                                  SELECT c.oid \
                                UNION ALL \
                                  SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.oid) \
                              SELECT format('%I.%I', pn.nspname, p.relname) \
                              FROM tree JOIN pg_class p ON p.oid = tree.oid \
                              JOIN pg_namespace pn ON pn.oid = p.relnamespace \
                              WHERE c.relkind = 'p' AND p.relkind <> 'p' AND (p.relreplident = 'n' OR \
                                    (p.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index pi \
                                     WHERE pi.indrelid = p.oid AND pi.indisprimary))) \
                              ORDER BY 1) \
                 FROM unnest($1::text[], $2::text[]) AS t(schema_name, table_name) \
                 JOIN pg_namespace n ON n.nspname = t.schema_name \
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name \
                 ORDER BY 1",
                &[&schemas, &tables],
            )
            .await
            .map_err(SourceError::sql("read the captured tables' identity and privileges"))?;
        let facts: Vec<TableFacts> = rows
            .iter()
            .map(|row| TableFacts {
                name: row.get(0),
                identity: row.get(1),
                has_primary_key: row.get(2),
                readable: row.get(3),
                owned: row.get(4),
                unusable_schema: row.get(5),
                partitioned: row.get(6),
                unusable_partitions: row.get(7),
            })
            .collect();
        self.report.add(
            Verdict::Ok,
            "captured tables",
            format!("{} tables", facts.len()),
        );
        Ok(facts)
    }

    pub(super) fn privileges(&mut self, tables: &[TableFacts]) {
        let user = &self.prepared.options.user;
        let mut schemas: Vec<&str> = tables
            .iter()
            .filter_map(|t| t.unusable_schema.as_deref())
            .collect();
        schemas.dedup();
        let grants: Vec<String> = schemas
            .iter()
            .map(|schema| format!("GRANT USAGE ON SCHEMA {schema} TO {user};"))
            .chain(
                tables
                    .iter()
                    .filter(|t| !t.readable)
                    .map(|t| format!("GRANT SELECT ON {} TO {user};", t.name)),
            )
            .collect();
        if grants.is_empty() {
            self.report.add(
                Verdict::Ok,
                "SELECT privilege",
                "every captured table is readable",
            );
        } else {
            self.report.add(
                Verdict::Fail,
                "SELECT privilege",
                format!("role {user} cannot read every captured table (snapshots and schema lookups need it): run {}", grants.join(" ")),
            );
        }
    }

    pub(super) fn replica_identity(&mut self, tables: &[TableFacts]) {
        let unusable: Vec<&str> = tables
            .iter()
            .filter(|t| t.identity == "n" || (t.identity == "d" && !t.has_primary_key))
            .map(|t| t.name.as_str())
            .chain(
                tables
                    .iter()
                    .flat_map(|t| t.unusable_partitions.iter().map(String::as_str)),
            )
            .collect();
        if unusable.is_empty() {
            self.report.add(
                Verdict::Ok,
                "replica identity",
                "every captured table has a primary key or another replica identity",
            );
            return;
        }
        let fixes: Vec<String> = unusable
            .iter()
            .map(|name| format!("ALTER TABLE {name} REPLICA IDENTITY FULL;"))
            .collect();
        let partitions = if tables.iter().any(|t| !t.unusable_partitions.is_empty()) {
            " (each partition logs its own old rows: set it on partitions created later too)"
        } else {
            ""
        };
        self.report.add(
            Verdict::Fail,
            "replica identity",
            format!("{} has no primary key and no usable replica identity, so its updates and deletes cannot be published: run {}{partitions} (or add a primary key, or run `cdc-source init --fix-replica-identity`)", unusable.join(", "), fixes.join(" ")),
        );
    }

    pub(super) async fn publication(&mut self, tables: &[TableFacts]) -> Result<(), SourceError> {
        let name = &self.config.capture.publication;
        let row = self
            .client
            .query_opt(
                "SELECT p.puballtables, pg_has_role(p.pubowner, 'USAGE'), \
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                        has_database_privilege(current_database(), 'CREATE'), \
                        coalesce(p.pubviaroot, false), \
                        coalesce(obj_description(p.oid, 'pg_publication') = $2, false), \
                        current_setting('server_version_num')::int \
                 FROM (SELECT NULL) AS one LEFT JOIN pg_publication p ON p.pubname = $1",
                &[name, &CREATED_BY],
            )
            .await
            .map_err(SourceError::sql("look up the publication"))?
            .expect("one row");
        let all_tables: Option<bool> = row.get(0);
        let owns_publication: Option<bool> = row.get(1);
        let published: Vec<String> = self
            .client
            .query(
                &format!(
                    "SELECT format('%I.%I', p.s, p.t) FROM ({PUBLISHED_TABLES_SQL}) AS p(s, t)"
                ),
                &[name],
            )
            .await
            .map_err(SourceError::sql("read the publication's tables"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let (superuser, may_create): (bool, bool) = (row.get(2), row.get(3));
        let (via_root, created_by_pgcdc, server_version): (bool, bool, i32) =
            (row.get(4), row.get(5), row.get(6));
        self.partitioned_tables(
            tables,
            all_tables.is_some(),
            via_root,
            created_by_pgcdc,
            server_version,
        );
        self.new_tables(all_tables, superuser, server_version)
            .await?;
        let quoted_name = format!("\"{}\"", name.replace('"', "\"\""));
        let wanted: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let owns_all = superuser || tables.iter().all(|t| t.owned);
        let Some(all_tables) = all_tables else {
            if owns_all && (superuser || may_create) {
                self.report.add(
                    Verdict::Ok,
                    "publication",
                    format!("{name} does not exist yet; `cdc-source init` or `run` creates it"),
                );
            } else {
                self.report.add(
                    Verdict::Fail,
                    "publication",
                    format!("{name} does not exist and this role cannot create it (it must own the tables): run as their owner CREATE PUBLICATION {quoted_name} FOR TABLE {};", wanted.join(", ")),
                );
            }
            return Ok(());
        };
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|t| !all_tables && !published.iter().any(|p| p == *t))
            .copied()
            .collect();
        let signal = self
            .prepared
            .signal_table
            .as_ref()
            .map(|(s, t)| format!("{s}.{t}"));
        let extra: Vec<&str> = published
            .iter()
            .map(String::as_str)
            .filter(|p| !wanted.contains(p) && signal.as_deref() != Some(*p))
            .collect();
        if !missing.is_empty() {
            let add = format!(
                "ALTER PUBLICATION {quoted_name} ADD TABLE {};",
                missing.join(", ")
            );
            if owns_all && owns_publication == Some(true) {
                self.report.add(
                    Verdict::Warn,
                    "publication",
                    format!(
                        "{name} lacks {}; `cdc-source init` or `run` adds them ({add})",
                        missing.join(", ")
                    ),
                );
            } else {
                self.report.add(
                    Verdict::Fail,
                    "publication",
                    format!(
                        "{name} lacks {} and this role cannot add them: run as the owner {add}",
                        missing.join(", ")
                    ),
                );
            }
        } else if !extra.is_empty() {
            self.report.add(Verdict::Warn, "publication", format!("{name} also publishes {}, which is not captured: its changes are decoded and dropped (ALTER PUBLICATION {quoted_name} DROP TABLE {};)", extra.join(", "), extra.join(", ")));
        } else {
            self.report.add(
                Verdict::Ok,
                "publication",
                format!("{name} covers the {} captured tables", wanted.len()),
            );
        }
        Ok(())
    }

    /// Partitioned tables are published through their root (one topic per table); a
    /// publication that publishes their partitions one by one would split them.
    fn partitioned_tables(
        &mut self,
        tables: &[TableFacts],
        exists: bool,
        via_root: bool,
        created_by_pgcdc: bool,
        server_version: i32,
    ) {
        let partitioned: Vec<&str> = tables
            .iter()
            .filter(|t| t.partitioned)
            .map(|t| t.name.as_str())
            .collect();
        if partitioned.is_empty() {
            return;
        }
        let name = &self.config.capture.publication;
        let list = partitioned.join(", ");
        let fix = setup::via_root_sql(name);
        let (verdict, message) = if server_version < 130_000 {
            (Verdict::Fail, format!("{list}: PostgreSQL before 13 cannot publish a partitioned table through its root; upgrade to 13 or later"))
        } else if !exists || via_root {
            (Verdict::Ok, format!("{list} published through the root (publish_via_partition_root), one topic each"))
        } else if created_by_pgcdc {
            (Verdict::Warn, format!("publication {name} publishes the partitions of {list} one by one; `cdc-source init` or `run` sets it to publish through the root ({fix};)"))
        } else {
            (Verdict::Fail, format!("publication {name} publishes the partitions of {list} one by one, so each partition would get a topic and target table of its own: run {fix};"))
        };
        self.report.add(verdict, "partitioned tables", message);
    }

    /// How tables created later (`capture.tables` with `*`) join the capture.
    async fn new_tables(
        &mut self,
        all_tables: Option<bool>,
        superuser: bool,
        server_version: i32,
    ) -> Result<(), SourceError> {
        let filter = &self.prepared.filter;
        if !filter.has_wildcards() {
            return Ok(());
        }
        let capture = &self.config.capture;
        let name = &capture.publication;
        let whole = filter.whole_schemas(self.prepared.signal_table.as_ref());
        let covered: Vec<String> = match all_tables {
            Some(true) => whole.clone(),
            Some(false) if server_version >= 150_000 => self
                .client
                .query(
                    "SELECT n.nspname::text FROM pg_publication_namespace pn \
                     JOIN pg_publication p ON p.oid = pn.pnpubid \
                     JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE p.pubname = $1",
                    &[name],
                )
                .await
                .map_err(SourceError::sql("read the publication's schemas"))?
                .iter()
                .map(|row| row.get(0))
                .collect(),
            _ => Vec::new(),
        };
        let (verdict, message) = if capture.discovery_interval.is_none() {
            (Verdict::Warn, "capture.discovery_interval = \"0\": tables created later are captured only after a restart".to_owned())
        } else if !whole.is_empty() && whole.iter().all(|s| covered.contains(s)) {
            (Verdict::Ok, format!("tables created later in {} are published from their first row (one without a primary key or replica identity at once too: PostgreSQL then refuses its updates and deletes until it gets one)", whole.join(", ")))
        } else if superuser {
            (Verdict::Ok, "tables created later are added to the publication and snapshotted within capture.discovery_interval, once they have a primary key or replica identity".to_owned())
        } else {
            let user = &self.prepared.options.user;
            let schemas = if whole.is_empty() {
                "<schema>".to_owned()
            } else {
                whole.join(", ")
            };
            (Verdict::Warn, format!("tables created later are added to the publication only when {user} owns them (for the others the log names the statement to run); to publish every table of a schema from its creation, have a superuser run ALTER PUBLICATION \"{}\" ADD TABLES IN SCHEMA {schemas};", name.replace('"', "\"\"")))
        };
        self.report.add(verdict, "new tables", message);
        Ok(())
    }
}
