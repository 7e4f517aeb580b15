//! Topics that do not exist yet when the sink starts (README: picked up within 10 seconds),
//! named exactly or matched by a pattern.

use std::time::{Duration, Instant};

use super::target::Target;
use crate::support::capture::{eventually, Capture, WAIT};
use crate::support::kafka::topic_exists;
use crate::support::process::CdcProcess;

/// The README's promise.
const PICKUP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_started_before_its_topics_picks_them_up_within_ten_seconds() {
    let mut capture = Capture::on_shared_sink_testbed(
        "CREATE SCHEMA l1;
         CREATE TABLE l1.named (id int PRIMARY KEY); INSERT INTO l1.named VALUES (1);
         CREATE TABLE l1.matched (id int PRIMARY KEY); INSERT INTO l1.matched VALUES (1);",
    )
    .await;
    let prefix = capture.names.topic_prefix.clone();
    let mut target = Target::new(&capture, "").await;
    target.config = target.config.replace(
        &format!("topics = [\"{prefix}.l1.*\"]"),
        &format!("topics = [\"{prefix}.l1.named\", \"{prefix}.l1.match*\"]"),
    );
    target.start();
    // The sink is in its group with nothing to read before any topic exists.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let config = capture.config(&["l1.*"], "", "[kafka.topic]\npartitions = 1");
    capture.source = Some(CdcProcess::run(&config));
    let topics = [capture.topic("l1.named"), capture.topic("l1.matched")];
    let bootstrap = capture.bootstrap.clone();
    let created = eventually(WAIT, || {
        let (bootstrap, topics) = (bootstrap.clone(), topics.clone());
        async move {
            tokio::task::spawn_blocking(move || topics.iter().all(|t| topic_exists(&bootstrap, t)))
                .await
                .expect("metadata thread")
        }
    })
    .await;
    assert!(
        created,
        "the source never created its topics:\n{}",
        capture.source_log()
    );
    let since = Instant::now();
    let sink = target.sink.as_ref().expect("sink running");
    let assigned = eventually(WAIT, || async {
        sink.stderr_text()
            .contains("partitions assigned partitions=2")
    })
    .await;
    let elapsed = since.elapsed();
    eprintln!("partitions assigned {elapsed:?} after the topics were created");
    assert!(assigned, "never assigned:\n{}", sink.stderr_text());
    assert!(
        elapsed <= PICKUP,
        "the sink got its partitions {elapsed:?} after the topics were created:\n{}",
        sink.stderr_text()
    );
    target.settle(&[
        "l1.matched -> l1.matched: ok (1 row)",
        "l1.named -> l1.named: ok (1 row)",
    ]);
    assert_eq!(capture.stop(), 0);
}
