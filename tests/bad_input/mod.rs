//! Bad input gets one clear error and the exit code SPEC §1 gives: 2 for configuration, 3 for
//! a missing prerequisite.

use std::time::Duration;

use crate::support::capture::Capture;
use crate::support::free_port;
use crate::support::process::CdcProcess;

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the source to completion and checks its exit code and its single error (the last
/// thing it prints, possibly several lines).
fn assert_fails(config: &str, code: i32, fragments: &[&str]) {
    let (exit, stderr) = CdcProcess::complete("run", config, EXIT_TIMEOUT);
    assert_eq!(exit, code, "stderr:\n{stderr}");
    let starts: Vec<usize> = stderr
        .match_indices("error: ")
        .map(|(at, _)| at)
        .filter(|&at| at == 0 || stderr[..at].ends_with('\n'))
        .collect();
    assert_eq!(starts.len(), 1, "expected one error:\n{stderr}");
    let error = &stderr[starts[0]..];
    for fragment in fragments {
        assert!(
            error.contains(fragment),
            "{fragment:?} missing from {error:?}"
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
    assert_fails(&config, 3, &["l1.missing", "capture.tables"]);
}

#[tokio::test]
async fn unreachable_broker_is_named() {
    let capture = capture().await;
    let nowhere = format!("127.0.0.1:{}", free_port());
    let config = capture
        .config(&["l1.t"], "", "")
        .replace(&capture.bootstrap, &nowhere);
    assert_fails(&config, 3, &["broker", &nowhere]);
}
