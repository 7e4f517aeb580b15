//! DDL capture (`capture.ddl`): event triggers in the source database that put a transactional
//! logical message (prefix [`MESSAGE_PREFIX`]) into the WAL for every DDL command on a table,
//! with the table's description before and after the change; the session turns those of the
//! captured tables into schema change events (see [`message`]).
//!
//! The objects live in the schema `pgcdc` and are shared by every source of the database:
//! event triggers [`COMMAND_END_TRIGGER`] and [`SQL_DROP_TRIGGER`], their functions, and the
//! state table `pgcdc.ddl_tables` (the last description of every table, so that a change knows
//! what the table was before). Event triggers need a superuser (or, on RDS / Aurora, a member
//! of `rds_superuser`). Without DDL capture, the sink only follows new columns (from new value
//! schemas); dropped and renamed columns, type changes and new, renamed or dropped tables are
//! not replayed.

pub mod message;

use tokio_postgres::Client;

use super::check::CREATED_BY;
use super::setup::SetupError;

/// The prefix of the DDL messages: not a slot's own, every source of the database reads them.
pub const MESSAGE_PREFIX: &str = "pgcdc.ddl";
/// The event trigger on `ddl_command_end`.
pub const COMMAND_END_TRIGGER: &str = "pgcdc_ddl_command_end";
/// The event trigger on `sql_drop`.
pub const SQL_DROP_TRIGGER: &str = "pgcdc_sql_drop";
/// The schema the functions and the state table live in.
pub const SCHEMA: &str = "pgcdc";

/// The functions, state table, seed and triggers (the schema must exist).
const CAPTURE_SQL: &str = include_str!("capture.sql");

/// The functions `capture.sql` creates, as `DROP FUNCTION` names them.
const FUNCTIONS: &str = "pgcdc.ddl_command_end(), pgcdc.ddl_sql_drop(), \
     pgcdc.ddl_emit(oid, text, text, text, text, text, jsonb), pgcdc.ddl_describe(oid), \
     pgcdc.ddl_column(oid, int2), pgcdc.ddl_followed(oid)";

/// What the sink cannot replay without DDL capture.
pub const LOST_WITHOUT: &str = "the sink then only adds new columns (from new value schemas); \
     dropped and renamed columns, type changes, NOT NULL and default changes, and created, \
     renamed and dropped tables are not replayed";

/// What the role and the database allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlFacts {
    /// The connected role.
    pub user: String,
    /// Whether it may create event triggers (superuser, or member of `rds_superuser`).
    pub may_install: bool,
    /// Whether `rds_superuser` exists (RDS / Aurora): the fix names it.
    pub rds: bool,
    /// Whether both event triggers exist and are enabled.
    pub installed: bool,
}

/// What the source does about DDL capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdlDecision {
    /// Installs (or refreshes) the objects and publishes schema changes.
    Install,
    /// The objects exist (installed by another role) but this role may not refresh them:
    /// publishes the schema changes they emit.
    UseInstalled,
    /// Off: `capture.ddl = false`.
    Disabled,
    /// Off: `capture.ddl` is unset and this role may not create event triggers.
    NotPossible,
    /// `capture.ddl = true` but this role may not create event triggers (a prerequisite).
    Refused,
}

impl DdlDecision {
    /// The decision for the `capture.ddl` setting and what the role may do.
    pub fn new(setting: Option<bool>, facts: &DdlFacts) -> DdlDecision {
        match (setting, facts.may_install, facts.installed) {
            (Some(false), _, _) => DdlDecision::Disabled,
            (_, true, _) => DdlDecision::Install,
            (_, false, true) => DdlDecision::UseInstalled,
            (None, false, false) => DdlDecision::NotPossible,
            (Some(true), false, false) => DdlDecision::Refused,
        }
    }

    /// Whether schema changes are published.
    pub fn captures(&self) -> bool {
        matches!(self, DdlDecision::Install | DdlDecision::UseInstalled)
    }

    /// The `check` line: whether it is an ok, a warning or a failure, and what it says.
    pub fn line(&self, facts: &DdlFacts) -> (super::check::Verdict, String) {
        use super::check::Verdict;
        let grant = if facts.rds {
            format!("GRANT rds_superuser TO {};", facts.user)
        } else {
            format!("ALTER ROLE {} SUPERUSER;", facts.user)
        };
        match self {
            DdlDecision::Install if facts.installed => (
                Verdict::Ok,
                format!("on: event triggers {COMMAND_END_TRIGGER} and {SQL_DROP_TRIGGER} are installed (`init` and `run` refresh them)"),
            ),
            DdlDecision::Install => (
                Verdict::Ok,
                format!("on: `init` or `run` installs event triggers {COMMAND_END_TRIGGER} and {SQL_DROP_TRIGGER} (schema {SCHEMA})"),
            ),
            DdlDecision::UseInstalled => (
                Verdict::Ok,
                format!("on: event triggers {COMMAND_END_TRIGGER} and {SQL_DROP_TRIGGER} are installed (role {} may not refresh them; a superuser's `cdc-source init` does)", facts.user),
            ),
            DdlDecision::Disabled => (
                Verdict::Ok,
                format!("off (capture.ddl = false): {LOST_WITHOUT}"),
            ),
            DdlDecision::NotPossible => (
                Verdict::Warn,
                format!("off: role {} may not create event triggers (superuser, or rds_superuser on RDS / Aurora), so schema changes are not captured and {LOST_WITHOUT}; to capture them run `cdc-source init` once as a superuser, or {grant} (set capture.ddl = false to silence this)", facts.user),
            ),
            DdlDecision::Refused => (
                Verdict::Fail,
                format!("capture.ddl = true, but role {} may not create event triggers (superuser, or rds_superuser on RDS / Aurora): {grant} or run `cdc-source init` once as a superuser, or set capture.ddl = false ({LOST_WITHOUT})", facts.user),
            ),
        }
    }
}

fn sql_error(what: &str) -> impl FnOnce(tokio_postgres::Error) -> SetupError + '_ {
    move |source| SetupError::Sql {
        what: what.to_owned(),
        source: source.into(),
    }
}

/// Reads what the role may do and whether the triggers exist.
pub async fn facts(client: &Client) -> Result<DdlFacts, SetupError> {
    let row = client
        .query_one(
            "SELECT current_user::text, r.rolsuper \
                    OR EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_superuser' \
                               AND pg_has_role(r.oid, g.oid, 'MEMBER')), \
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_superuser'), \
                    (SELECT count(*) = 2 FROM pg_event_trigger \
                     WHERE evtname IN ($1, $2) AND evtenabled <> 'D') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[&COMMAND_END_TRIGGER, &SQL_DROP_TRIGGER],
        )
        .await
        .map_err(sql_error("read whether the role may create event triggers"))?;
    Ok(DdlFacts {
        user: row.get(0),
        may_install: row.get(1),
        rds: row.get(2),
        installed: row.get(3),
    })
}

/// Decides about DDL capture for `setting` (`capture.ddl`), installing or refreshing the
/// objects when this role may; returns whether schema changes are captured.
pub async fn prepare(client: &mut Client, setting: Option<bool>) -> Result<bool, SetupError> {
    let facts = facts(client).await?;
    let decision = DdlDecision::new(setting, &facts);
    match &decision {
        DdlDecision::Install => {
            install(client).await?;
            tracing::info!(
                "DDL capture is on: event triggers {COMMAND_END_TRIGGER} and {SQL_DROP_TRIGGER} are installed"
            );
        }
        DdlDecision::UseInstalled => {
            tracing::info!("DDL capture is on, through the event triggers another role installed")
        }
        DdlDecision::Disabled => tracing::info!("DDL capture is off (capture.ddl = false)"),
        DdlDecision::NotPossible => {
            tracing::info!("DDL capture is off: this role may not create event triggers")
        }
        DdlDecision::Refused => {
            return Err(SetupError::Prerequisite(format!(
                "DDL capture: {}",
                decision.line(&facts).1
            )))
        }
    }
    Ok(decision.captures())
}

/// Creates or refreshes the schema, functions, state table and event triggers, in one
/// transaction that concurrent installs wait for.
pub async fn install(client: &mut Client) -> Result<(), SetupError> {
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("begin installing DDL capture"))?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('pgcdc.ddl'))", &[])
        .await
        .map_err(sql_error("lock the DDL capture installation"))?;
    let schema_exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&SCHEMA])
        .await
        .map_err(sql_error("look up schema pgcdc"))?
        .is_some();
    if !schema_exists {
        tx.batch_execute(&format!(
            "CREATE SCHEMA {SCHEMA}; COMMENT ON SCHEMA {SCHEMA} IS '{CREATED_BY}'"
        ))
        .await
        .map_err(sql_error("create schema pgcdc for DDL capture"))?;
    }
    tx.batch_execute(CAPTURE_SQL).await.map_err(sql_error(
        "install DDL capture (event triggers and their functions)",
    ))?;
    tx.commit()
        .await
        .map_err(sql_error("commit the DDL capture installation"))
}

/// Drops the event triggers, their functions and the state table (and the schema pgcdc when
/// pgcdc created it and nothing else is left in it). Returns one line per thing done or left.
pub async fn teardown(client: &mut Client) -> Result<Vec<String>, SetupError> {
    let found = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_event_trigger WHERE evtname IN ($1, $2)), \
                    (SELECT string_agg(evtname, ', ') FROM pg_event_trigger \
                     WHERE evtname IN ($1, $2) \
                       AND obj_description(oid, 'pg_event_trigger') IS DISTINCT FROM $3), \
                    to_regclass('pgcdc.ddl_tables') IS NOT NULL \
                    OR to_regprocedure('pgcdc.ddl_command_end()') IS NOT NULL",
            &[&COMMAND_END_TRIGGER, &SQL_DROP_TRIGGER, &CREATED_BY],
        )
        .await
        .map_err(sql_error("look up the DDL capture objects"))?;
    let (triggers, foreign, objects): (i64, Option<String>, bool) =
        (found.get(0), found.get(1), found.get(2));
    if let Some(names) = foreign {
        return Ok(vec![format!(
            "left DDL capture ({names}): pgcdc did not create it"
        )]);
    }
    if triggers == 0 && !objects {
        return Ok(vec!["no DDL capture objects to drop".to_owned()]);
    }
    let drop = format!(
        "DROP EVENT TRIGGER IF EXISTS {COMMAND_END_TRIGGER}; \
         DROP EVENT TRIGGER IF EXISTS {SQL_DROP_TRIGGER}; \
         DROP FUNCTION IF EXISTS {FUNCTIONS}; \
         DROP TABLE IF EXISTS pgcdc.ddl_tables"
    );
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("begin dropping DDL capture"))?;
    if let Err(error) = tx.batch_execute(&drop).await {
        return Ok(vec![format!(
            "left DDL capture (event triggers {COMMAND_END_TRIGGER}, {SQL_DROP_TRIGGER}): {}: run teardown as a superuser",
            crate::pg::PgError::from(error)
        )]);
    }
    tx.commit()
        .await
        .map_err(sql_error("commit dropping DDL capture"))?;
    let mut done = vec![format!(
        "dropped DDL capture (event triggers {COMMAND_END_TRIGGER}, {SQL_DROP_TRIGGER}, their functions and pgcdc.ddl_tables)"
    )];
    let empty_and_ours = client
        .query_opt(
            "SELECT 1 FROM pg_namespace n WHERE n.nspname = $1 \
               AND obj_description(n.oid, 'pg_namespace') = $2 \
               AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid) \
               AND NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = n.oid) \
               AND NOT EXISTS (SELECT 1 FROM pg_type t WHERE t.typnamespace = n.oid)",
            &[&SCHEMA, &CREATED_BY],
        )
        .await
        .map_err(sql_error("look up schema pgcdc"))?
        .is_some();
    if empty_and_ours {
        client
            .batch_execute(&format!("DROP SCHEMA {SCHEMA}"))
            .await
            .map_err(sql_error("drop schema pgcdc"))?;
        done.push(format!("dropped schema {SCHEMA}"));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::check::Verdict;

    fn facts(may_install: bool, installed: bool) -> DdlFacts {
        DdlFacts {
            user: "replicator".into(),
            may_install,
            rds: false,
            installed,
        }
    }

    #[test]
    fn the_setting_and_the_role_decide() {
        use DdlDecision::*;
        let cases = [
            (None, facts(true, false), Install),
            (Some(true), facts(true, true), Install),
            (None, facts(false, true), UseInstalled),
            (Some(true), facts(false, true), UseInstalled),
            (None, facts(false, false), NotPossible),
            (Some(true), facts(false, false), Refused),
            (Some(false), facts(true, true), Disabled),
        ];
        for (setting, facts, expected) in cases {
            assert_eq!(
                DdlDecision::new(setting, &facts),
                expected,
                "{setting:?} {facts:?}"
            );
        }
        assert!(Install.captures() && UseInstalled.captures());
        assert!(!Disabled.captures() && !NotPossible.captures() && !Refused.captures());
    }

    #[test]
    fn the_check_line_says_what_is_lost_and_the_fix() {
        let (verdict, line) = DdlDecision::NotPossible.line(&facts(false, false));
        assert_eq!(verdict, Verdict::Warn);
        assert!(line.contains("ALTER ROLE replicator SUPERUSER;"), "{line}");
        assert!(line.contains("capture.ddl = false"), "{line}");
        assert!(line.contains("renamed columns"), "{line}");
        let rds = DdlFacts {
            rds: true,
            ..facts(false, false)
        };
        let (verdict, line) = DdlDecision::Refused.line(&rds);
        assert_eq!(verdict, Verdict::Fail);
        assert!(line.starts_with("capture.ddl = true"), "{line}");
        assert!(
            line.contains("GRANT rds_superuser TO replicator;"),
            "{line}"
        );
        assert_eq!(
            DdlDecision::Install.line(&facts(true, false)).0,
            Verdict::Ok
        );
    }
}
