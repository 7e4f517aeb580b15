//! A Schema Registry behind HTTP basic auth, as managed registries run it: cdc-source logs in
//! with `username` and `password_file`, cdc-sink with the URL's user info; a wrong password
//! is refused in the registry's own words and no password is ever printed.

use std::time::Duration;

use super::target::Target;
use crate::support::broker::shared_record_broker;
use crate::support::capture::Capture;
use crate::support::process::CdcProcess;
use crate::support::{shared_pg, unique_dir, SchemaRegistry};

const USER: &str = "pgcdc";
const PASSWORD: &str = "s3cr3t p@ss";

const SCHEMA: &str = "
    CREATE SCHEMA l1;
    CREATE TABLE l1.items (id int PRIMARY KEY, name text);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_behind_basic_auth_is_used_with_the_configured_credentials() {
    let registry = SchemaRegistry::start_with_basic_auth(USER, PASSWORD);
    let plain_url = registry.url();
    // The sink and the test's own reader take the credentials from the URL's user info.
    let url_with_user = plain_url.replacen("http://", "http://pgcdc:s3cr3t%20p%40ss@", 1);
    let mut capture = Capture::new(
        shared_pg().await,
        shared_record_broker().await,
        &url_with_user,
        SCHEMA,
    )
    .await;
    let dir = unique_dir("registry-auth");
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    let source_registry = |password_file: &std::path::Path| {
        format!(
            "url = \"{plain_url}\"\nusername = \"{USER}\"\npassword_file = \"{}\"",
            password_file.display()
        )
    };
    let config = capture
        .config(&["l1.*"], "snapshot = \"never\"", "")
        .replace(
            &format!("url = \"{url_with_user}\""),
            &source_registry(&password_file),
        );
    capture.start(&config).await;
    let mut target = Target::new(&capture, "").await;
    target.start();
    capture
        .client
        .batch_execute("INSERT INTO l1.items VALUES (1, 'one'), (2, 'two')")
        .await
        .expect("rows");
    let records = capture.read("l1.items", 2).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].value["after"]["name"], "two");
    target.settle(&["l1.items -> l1.items: ok (2 rows)"]);

    // A wrong password: `check` fails with the registry's answer, naming what to check.
    let wrong_file = dir.join("wrong");
    std::fs::write(&wrong_file, "not it").expect("wrong password file");
    let wrong = config.replace(
        &source_registry(&password_file),
        &source_registry(&wrong_file),
    );
    let mut check = CdcProcess::spawn("check", &wrong, &[], &[]);
    // Exit 3: a failed prerequisite.
    assert_eq!(check.wait_exit(Duration::from_secs(60)), 3);
    let output = format!("{}{}", check.stdout_text(), check.stderr_text());
    assert!(
        output.contains("FAIL  schema registry")
            && output.contains("HTTP 401 (error_code 401): Unauthorized")
            && output.contains("username, password"),
        "{output}"
    );
    for printed in [
        output,
        capture.source_log(),
        target
            .sink
            .as_ref()
            .map(CdcProcess::stderr_text)
            .unwrap_or_default(),
    ] {
        assert!(
            !printed.contains("s3cr3t") && !printed.contains("not it"),
            "a password was printed:\n{printed}"
        );
    }
    assert_eq!(capture.stop(), 0);
}
