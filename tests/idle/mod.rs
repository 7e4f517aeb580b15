//! An idle capture must not hold WAL (SPEC §6): when only tables outside the publication
//! change, keepalives and heartbeats still move the slot's confirmed LSN.

use std::time::Duration;

use crate::support::capture::{eventually, Capture};

#[tokio::test]
async fn slot_advances_while_only_unpublished_tables_change() {
    let mut capture = Capture::on_shared_testbed(
        "CREATE SCHEMA l1; CREATE TABLE l1.captured (id int PRIMARY KEY);
         CREATE TABLE public.busy (id serial PRIMARY KEY, payload text);",
    )
    .await;
    let config = capture.config(&["l1.captured"], "", "");
    capture.start(&config).await;

    for round in 0..3 {
        capture
            .client
            .batch_execute("INSERT INTO public.busy (payload) SELECT repeat('x', 200) FROM generate_series(1, 500)")
            .await
            .unwrap();
        let written = capture.current_wal_lsn().await;
        let advanced = eventually(Duration::from_secs(30), || async {
            capture.confirmed_flush().await >= written
        })
        .await;
        assert!(
            advanced,
            "round {round}: confirmed_flush_lsn stayed at {:#x} below {written:#x}",
            capture.confirmed_flush().await
        );
    }
    assert_eq!(capture.stop(), 0);
}
