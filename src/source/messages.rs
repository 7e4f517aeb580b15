//! pgcdc's own logical decoding messages (`pg_logical_emit_message(true, …)`): a source writes
//! them into the WAL to put something at an exact place among the changes, and reads them back
//! from its slot in that place. Their prefix is `<kind>:<slot>`, so a source acts only on its
//! own; every slot of the database decodes them, and one of another slot is left alone, never
//! published.

/// An incremental snapshot's window opens or closes (content: `open:<id>` / `close:<id>`).
pub const WATERMARK: &str = "pgcdc-watermark";
/// A request for incremental snapshots (content: an `execute-snapshot` signal's data).
pub const SNAPSHOT_REQUEST: &str = "pgcdc-snapshot";
/// A captured table is gone (content: the table, see `discovery::DroppedTable`).
pub const TABLE_DROPPED: &str = "pgcdc-dropped";
/// The tables captured from here on (content: the list, see `discovery`).
pub const CAPTURED_TABLES: &str = "pgcdc-tables";

const KINDS: [&str; 4] = [WATERMARK, SNAPSHOT_REQUEST, TABLE_DROPPED, CAPTURED_TABLES];

/// The prefix of `slot`'s messages of `kind`.
pub fn prefix(kind: &str, slot: &str) -> String {
    format!("{kind}:{slot}")
}

/// What a message prefix is to the source of `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// Its own message of this kind.
    Own(&'a str),
    /// A message of another pgcdc slot.
    Other,
    /// Not a pgcdc message.
    User,
}

/// Tells a prefix of `slot`'s own messages from those of other slots and users'.
pub fn sender<'a>(prefix: &str, slot: &str) -> Sender<'a> {
    let Some((kind, of)) = prefix.split_once(':') else {
        return Sender::User;
    };
    match KINDS.iter().find(|known| **known == kind) {
        Some(known) if of == slot => Sender::Own(known),
        Some(_) => Sender::Other,
        None => Sender::User,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_reads_only_its_own_messages() {
        assert_eq!(
            sender(&prefix(WATERMARK, "s1"), "s1"),
            Sender::Own(WATERMARK)
        );
        assert_eq!(sender(&prefix(TABLE_DROPPED, "s2"), "s1"), Sender::Other);
        assert_eq!(sender("pgcdc-heartbeat", "s1"), Sender::User);
        assert_eq!(sender("app:s1", "s1"), Sender::User);
        assert_eq!(sender("app", "s1"), Sender::User);
    }
}
