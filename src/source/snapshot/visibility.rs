//! Which committed transactions a chunk's query could not see.
//!
//! PostgreSQL writes a transaction's commit record before the transaction becomes visible to
//! new snapshots, so a transaction can commit in the WAL before the low watermark yet be
//! invisible to the chunk's query (a backend between its commit record and leaving the
//! process array; with synchronous replication, until the standby answers). Its changes
//! were streamed before the window opened, so the window does not drop their keys, and the
//! chunk's older rows would be published after them. The session therefore remembers the
//! committed transactions some snapshot may still not see, and a chunk whose query missed one
//! that committed before its low watermark is read again.

use std::collections::HashSet;

use tokio_postgres::Client;

use super::SnapshotError;

/// A snapshot's transaction horizon, from `txid_current_snapshot()` (`xmin:xmax:xip,…`).
///
/// pgoutput sends 32-bit transaction ids; the snapshot's epoch-extended ids are compared on
/// their low 32 bits, modulo 2³², as PostgreSQL compares xids.
#[derive(Debug, Clone, PartialEq)]
pub struct TxSnapshot {
    xmax: u32,
    running: HashSet<u32>,
}

impl TxSnapshot {
    /// Parses the text form of `txid_current_snapshot()`.
    pub fn parse(text: &str) -> Result<TxSnapshot, String> {
        let invalid = || format!("not a transaction snapshot: {text:?}");
        let mut parts = text.trim().splitn(3, ':');
        let (Some(_xmin), Some(xmax), Some(xip)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let low_bits = |id: &str| id.parse::<u64>().map(|id| id as u32);
        let running = xip
            .split(',')
            .filter(|id| !id.is_empty())
            .map(low_bits)
            .collect::<Result<_, _>>()
            .map_err(|_| invalid())?;
        Ok(TxSnapshot {
            xmax: low_bits(xmax).map_err(|_| invalid())?,
            running,
        })
    }

    /// Whether the snapshot cannot see the committed transaction `xid`: it was still running
    /// when the snapshot was taken, or had not started.
    pub fn hides(&self, xid: u32) -> bool {
        self.running.contains(&xid) || xid.wrapping_sub(self.xmax) as i32 >= 0
    }
}

/// The snapshot `client` sees now (its transaction's snapshot inside REPEATABLE READ).
pub async fn current_snapshot(client: &Client) -> Result<TxSnapshot, SnapshotError> {
    let text: String = client
        .query_one("SELECT txid_current_snapshot()::text", &[])
        .await
        .map_err(|source| SnapshotError::Sql {
            what: "read the transaction snapshot".into(),
            source: source.into(),
        })?
        .get(0);
    TxSnapshot::parse(&text).map_err(|message| SnapshotError::Row {
        table: "txid_current_snapshot()".into(),
        message,
    })
}

/// Committed transactions with captured changes that a future snapshot might not see yet.
#[derive(Debug, Default)]
pub struct UnsettledCommits {
    xids: HashSet<u32>,
}

impl UnsettledCommits {
    /// Notes a transaction whose commit the session just streamed.
    pub fn committed(&mut self, xid: u32) {
        self.xids.insert(xid);
    }

    /// Hands over the transactions noted so far (those committed before a low watermark).
    pub fn take(&mut self) -> HashSet<u32> {
        std::mem::take(&mut self.xids)
    }

    /// Takes back transactions handed over by [`take`](Self::take).
    pub fn extend(&mut self, xids: HashSet<u32>) {
        self.xids.extend(xids);
    }

    /// Forgets the transactions `snapshot` sees: every later snapshot sees them too.
    pub fn settle(&mut self, snapshot: &TxSnapshot) {
        self.xids.retain(|&xid| snapshot.hides(xid));
    }

    /// Whether nothing is noted.
    pub fn is_empty(&self) -> bool {
        self.xids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_and_future_transactions_are_hidden() {
        let snapshot = TxSnapshot::parse("100:110:102,105").unwrap();
        assert!(!snapshot.hides(99));
        assert!(!snapshot.hides(101));
        assert!(snapshot.hides(102));
        assert!(!snapshot.hides(104));
        assert!(snapshot.hides(105));
        assert!(snapshot.hides(110));
        assert!(snapshot.hides(111));
    }

    #[test]
    fn an_empty_running_list_and_epoch_extended_ids_parse() {
        let epoch = 3u64 << 32;
        let text = format!("{}:{}:", epoch + 7, epoch + 9);
        let snapshot = TxSnapshot::parse(&text).unwrap();
        assert!(!snapshot.hides(8));
        assert!(snapshot.hides(9));
    }

    #[test]
    fn ids_compare_across_wraparound() {
        let snapshot =
            TxSnapshot::parse(&format!("{}:{}:", u32::MAX - 5, (1u64 << 32) + 3)).unwrap();
        assert!(!snapshot.hides(u32::MAX - 1));
        assert!(!snapshot.hides(2));
        assert!(snapshot.hides(3));
        assert!(snapshot.hides(4));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(TxSnapshot::parse("").is_err());
        assert!(TxSnapshot::parse("1:2").is_err());
        assert!(TxSnapshot::parse("1:x:").is_err());
        assert!(TxSnapshot::parse("1:5:3,y").is_err());
    }

    #[test]
    fn settling_keeps_only_what_the_snapshot_hides() {
        let mut unsettled = UnsettledCommits::default();
        for xid in [100, 102, 107, 112] {
            unsettled.committed(xid);
        }
        unsettled.settle(&TxSnapshot::parse("101:110:102").unwrap());
        let mut left: Vec<u32> = unsettled.take().into_iter().collect();
        left.sort_unstable();
        assert_eq!(left, [102, 112]);
        assert!(unsettled.is_empty());
    }
}
