//! Bad input gets one clear error line and the exit code SPEC §1 gives: 2 for configuration,
//! 1 for a runtime failure at start-up.

use std::time::Duration;

use crate::support::capture::Capture;
use crate::support::free_port;
use crate::support::process::CdcProcess;

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

/// Runs the source to completion and checks its exit code and its single error line.
fn assert_fails(config: &str, code: i32, fragments: &[&str]) {
    let (exit, stderr) = CdcProcess::complete("run", config, EXIT_TIMEOUT);
    assert_eq!(exit, code, "stderr:\n{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    for fragment in fragments {
        assert!(
            errors[0].contains(fragment),
            "{fragment:?} missing from {:?}",
            errors[0]
        );
    }
}

async fn capture() -> Capture<'static> {
    Capture::on_shared_testbed("CREATE SCHEMA l1; CREATE TABLE l1.t (id int PRIMARY KEY);").await
}

#[tokio::test]
async fn unknown_config_key_names_the_key() {
    let capture = capture().await;
    let config = capture.config(&["l1.t"], "sloot = \"typo\"", "");
    assert_fails(&config, 2, &["capture.sloot"]);
}

#[tokio::test]
async fn bad_url_names_the_key() {
    let capture = capture().await;
    let good = capture
        .pg
        .url(&capture.names.db, crate::support::postgres::REPLICATOR);
    let config = capture
        .config(&["l1.t"], "", "")
        .replace(&good, "mysql://nobody@127.0.0.1/x");
    assert_fails(&config, 2, &["postgres.url"]);
}

#[tokio::test]
async fn missing_table_is_named() {
    let capture = capture().await;
    let config = capture.config(&["l1.t", "l1.missing"], "", "");
    assert_fails(&config, 1, &["l1.missing", "capture.tables"]);
}

#[tokio::test]
async fn unreachable_broker_is_named() {
    let capture = capture().await;
    let nowhere = format!("127.0.0.1:{}", free_port());
    let config = capture
        .config(&["l1.t"], "", "")
        .replace(&capture.bootstrap, &nowhere);
    assert_fails(&config, 1, &["broker", &nowhere]);
}
