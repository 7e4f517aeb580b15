//! Acknowledged-LSN tracking: which WAL position the slot may confirm, given which records the
//! broker has acknowledged so far. Pure: no I/O, no clocks, no locks.
//!
//! ```text
//!  stream:   BEGIN r r COMMIT@A   keepalive@B   BEGIN r COMMIT@C ...
//!  queue:    [ txn A: 2 unacked ] [ B merged into A ] [ txn C: 1 unacked ]
//!  acks (any order, any partition) decrement their transaction's count; the front of the queue
//!  is popped while it is complete, and its LSN becomes confirmable.
//! ```
//!
//! The stream is a sequence of checkpoints: a committed transaction is one at its commit's
//! `end_lsn`, carrying the records produced for it; an idle position (a keepalive's `wal_end`
//! taken while no transaction is open) is one with no records. A checkpoint is confirmable once
//! it and every earlier one are fully acknowledged.
//!
//! Memory stays bounded by folding checkpoints that need nothing of their own into the one
//! before them: an idle position, or a transaction whose records were all acknowledged by its
//! commit (or that had none), only waits for what precedes it. Every entry left in the queue is
//! the open transaction or one that still had records in flight when it closed, so the queue is
//! bounded by the records the producer accepted, which librdkafka's queue limit caps.

use std::collections::VecDeque;

use crate::lsn::Lsn;

// A ticket travels as librdkafka's pointer-sized delivery opaque; on 64-bit targets (the only
// ones pgcdc builds for) that conversion is lossless.
const _: () = assert!(usize::BITS == u64::BITS, "tickets travel as a usize opaque");

/// Identifies the checkpoint a record belongs to; travels with the record as its delivery opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

impl Ticket {
    /// The value handed to librdkafka as the record's delivery opaque.
    pub fn into_raw(self) -> usize {
        self.0 as usize
    }

    /// The ticket back from a delivery opaque made by [`Ticket::into_raw`].
    pub fn from_raw(raw: usize) -> Ticket {
        Ticket(raw as u64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Committed,
    /// Its acknowledgements are ignored: nothing waits for its records.
    Aborted,
}

#[derive(Debug)]
struct Checkpoint {
    /// Records counted by `produced` minus acknowledgements; briefly negative when a delivery
    /// report overtakes the `produced` call for its record.
    unacked: i64,
    /// The position confirmable once this entry and all before it are complete; `Lsn::ZERO`
    /// while there is none (open, or aborted with nothing folded in).
    lsn: Lsn,
    state: State,
}

impl Checkpoint {
    fn is_complete(&self) -> bool {
        match self.state {
            State::Open => false,
            State::Committed => self.unacked == 0,
            State::Aborted => true,
        }
    }
}

/// Tracks produced-but-unacknowledged records per transaction and yields the highest LSN safe to confirm.
#[derive(Debug)]
pub struct Progress {
    confirmed: Lsn,
    checkpoints: VecDeque<Checkpoint>,
    /// The ticket number of `checkpoints[0]`; entries are numbered consecutively from it.
    front_ticket: u64,
    open: usize,
    produced: u64,
    acked: u64,
}

impl Progress {
    /// Starts at the slot's confirmed LSN.
    pub fn new(start: Lsn) -> Self {
        Progress {
            confirmed: start,
            checkpoints: VecDeque::new(),
            front_ticket: 0,
            open: 0,
            produced: 0,
            acked: 0,
        }
    }

    /// Opens a transaction; records produced until `commit` are counted against it.
    pub fn begin(&mut self) -> Ticket {
        let ticket = Ticket(self.front_ticket + self.checkpoints.len() as u64);
        self.checkpoints.push_back(Checkpoint {
            unacked: 0,
            lsn: Lsn::ZERO,
            state: State::Open,
        });
        self.open += 1;
        ticket
    }

    /// One more record produced for the open transaction. May come before or after the
    /// record's acknowledgement, but must come before the transaction's `commit` or `abort`.
    pub fn produced(&mut self, ticket: Ticket) {
        self.produced += 1;
        if let Some(checkpoint) = self.entry_mut(ticket) {
            if checkpoint.state != State::Aborted {
                checkpoint.unacked += 1;
            }
        }
    }

    /// The open transaction committed; its checkpoint LSN is end_lsn.
    pub fn commit(&mut self, ticket: Ticket, end_lsn: Lsn) {
        let Some(index) = self.open_index(ticket) else {
            return;
        };
        self.open -= 1;
        let is_back = index + 1 == self.checkpoints.len();
        let Some(checkpoint) = self.checkpoints.get_mut(index) else {
            return;
        };
        if is_back && index > 0 && checkpoint.unacked == 0 {
            // Nothing of its own is in flight, and no later ticket was handed out, so the entry
            // can go and its position wait on the one before it.
            self.checkpoints.pop_back();
            if let Some(previous) = self.checkpoints.back_mut() {
                previous.lsn = previous.lsn.max(end_lsn);
            }
        } else {
            checkpoint.state = State::Committed;
            checkpoint.lsn = checkpoint.lsn.max(end_lsn);
            self.drain();
        }
    }

    /// Discard an open transaction (stream abort / connection lost before commit): its acks must not move anything.
    pub fn abort(&mut self, ticket: Ticket) {
        let Some(index) = self.open_index(ticket) else {
            return;
        };
        self.open -= 1;
        let is_back = index + 1 == self.checkpoints.len();
        let Some(checkpoint) = self.checkpoints.get_mut(index) else {
            return;
        };
        if is_back && checkpoint.unacked == 0 && checkpoint.lsn == Lsn::ZERO {
            // No acknowledgement can still name this ticket, so it may be handed out again.
            self.checkpoints.pop_back();
        } else {
            checkpoint.state = State::Aborted;
            self.drain();
        }
    }

    /// A zero-record checkpoint at lsn, when no transaction is open (keepalive wal_end, idle).
    /// Ignored while a transaction is open: positions past its commit may belong to
    /// transactions not received yet.
    pub fn idle_position(&mut self, lsn: Lsn) {
        if self.open > 0 {
            return;
        }
        match self.checkpoints.back_mut() {
            Some(last) => last.lsn = last.lsn.max(lsn),
            None => self.confirmed = self.confirmed.max(lsn),
        }
    }

    /// A delivery acknowledgement for one record.
    pub fn acked(&mut self, ticket: Ticket) {
        self.acked += 1;
        let Some(checkpoint) = self.entry_mut(ticket) else {
            return;
        };
        if checkpoint.state == State::Aborted {
            return;
        }
        checkpoint.unacked -= 1;
        if checkpoint.unacked == 0 {
            self.drain();
        }
    }

    /// Highest LSN whose checkpoint and all earlier ones are fully acknowledged (never decreases).
    pub fn confirmable(&self) -> Lsn {
        self.confirmed
    }

    /// Records produced and not yet acknowledged, including those of aborted transactions.
    pub fn inflight_records(&self) -> u64 {
        self.produced.saturating_sub(self.acked)
    }

    /// Whether a transaction was begun and neither committed nor aborted.
    pub fn is_transaction_open(&self) -> bool {
        self.open > 0
    }

    fn index(&self, ticket: Ticket) -> Option<usize> {
        let offset = ticket.0.checked_sub(self.front_ticket)?;
        usize::try_from(offset)
            .ok()
            .filter(|&index| index < self.checkpoints.len())
    }

    fn entry_mut(&mut self, ticket: Ticket) -> Option<&mut Checkpoint> {
        let index = self.index(ticket)?;
        self.checkpoints.get_mut(index)
    }

    fn open_index(&self, ticket: Ticket) -> Option<usize> {
        let index = self.index(ticket)?;
        let checkpoint = self.checkpoints.get(index)?;
        (checkpoint.state == State::Open).then_some(index)
    }

    /// Pops complete entries off the front; only the front can unblock the ones behind it.
    fn drain(&mut self) {
        while let Some(front) = self.checkpoints.front() {
            if !front.is_complete() {
                break;
            }
            self.confirmed = self.confirmed.max(front.lsn);
            self.checkpoints.pop_front();
            self.front_ticket += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const START: Lsn = Lsn(0x100);

    #[test]
    fn starts_at_the_slot_position() {
        let progress = Progress::new(START);
        assert_eq!(progress.confirmable(), START);
        assert_eq!(progress.inflight_records(), 0);
        assert!(!progress.is_transaction_open());
    }

    #[test]
    fn a_transaction_is_confirmable_once_all_its_records_are_acked() {
        let mut progress = Progress::new(START);
        let t = progress.begin();
        assert!(progress.is_transaction_open());
        progress.produced(t);
        progress.produced(t);
        progress.commit(t, Lsn(0x200));
        assert!(!progress.is_transaction_open());
        assert_eq!(progress.inflight_records(), 2);
        progress.acked(t);
        assert_eq!(progress.confirmable(), START);
        progress.acked(t);
        assert_eq!(progress.confirmable(), Lsn(0x200));
        assert_eq!(progress.inflight_records(), 0);
        assert!(progress.checkpoints.is_empty());
    }

    #[test]
    fn acks_before_commit_do_not_confirm_the_open_transaction() {
        let mut progress = Progress::new(START);
        let t = progress.begin();
        progress.produced(t);
        progress.acked(t);
        assert_eq!(progress.confirmable(), START);
        progress.commit(t, Lsn(0x200));
        assert_eq!(progress.confirmable(), Lsn(0x200));
    }

    #[test]
    fn an_ack_may_overtake_its_produced_call() {
        let mut progress = Progress::new(START);
        let t = progress.begin();
        progress.acked(t);
        assert_eq!(progress.inflight_records(), 0);
        progress.produced(t);
        progress.commit(t, Lsn(0x200));
        assert_eq!(progress.confirmable(), Lsn(0x200));
    }

    #[test]
    fn out_of_order_acks_wait_for_the_earliest_transaction() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.commit(a, Lsn(0x200));
        let b = progress.begin();
        progress.produced(b);
        progress.produced(b);
        progress.commit(b, Lsn(0x300));
        let c = progress.begin();
        progress.produced(c);
        progress.commit(c, Lsn(0x400));

        progress.acked(c);
        progress.acked(b);
        assert_eq!(progress.confirmable(), START);
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x200));
        progress.acked(b);
        assert_eq!(progress.confirmable(), Lsn(0x400));
        assert!(progress.checkpoints.is_empty());
    }

    #[test]
    fn an_empty_transaction_confirms_at_once_when_nothing_precedes_it() {
        let mut progress = Progress::new(START);
        let t = progress.begin();
        progress.commit(t, Lsn(0x200));
        assert_eq!(progress.confirmable(), Lsn(0x200));
    }

    #[test]
    fn an_empty_transaction_waits_for_earlier_records() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.commit(a, Lsn(0x200));
        let b = progress.begin();
        progress.commit(b, Lsn(0x300));
        assert_eq!(progress.confirmable(), START);
        assert_eq!(progress.checkpoints.len(), 1);
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x300));
    }

    #[test]
    fn an_idle_position_confirms_at_once_when_nothing_is_in_flight() {
        let mut progress = Progress::new(START);
        progress.idle_position(Lsn(0x500));
        assert_eq!(progress.confirmable(), Lsn(0x500));
        assert!(progress.checkpoints.is_empty());
    }

    #[test]
    fn an_idle_position_waits_for_earlier_records() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.commit(a, Lsn(0x200));
        progress.idle_position(Lsn(0x280));
        progress.idle_position(Lsn(0x2C0));
        assert_eq!(progress.confirmable(), START);
        assert_eq!(progress.checkpoints.len(), 1);
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x2C0));
    }

    #[test]
    fn idle_positions_between_transactions_keep_their_order() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.commit(a, Lsn(0x200));
        progress.idle_position(Lsn(0x280));
        let b = progress.begin();
        progress.produced(b);
        progress.commit(b, Lsn(0x300));
        progress.idle_position(Lsn(0x380));

        progress.acked(b);
        assert_eq!(progress.confirmable(), START);
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x380));
    }

    #[test]
    fn an_idle_position_while_a_transaction_is_open_is_ignored() {
        let mut progress = Progress::new(START);
        let t = progress.begin();
        progress.idle_position(Lsn(0x900));
        progress.produced(t);
        progress.commit(t, Lsn(0x200));
        progress.acked(t);
        assert_eq!(progress.confirmable(), Lsn(0x200));
    }

    #[test]
    fn an_aborted_transaction_confirms_nothing_and_its_acks_are_ignored() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.commit(a, Lsn(0x200));
        let b = progress.begin();
        progress.produced(b);
        progress.produced(b);
        progress.abort(b);
        assert!(!progress.is_transaction_open());
        let c = progress.begin();
        progress.produced(c);
        progress.commit(c, Lsn(0x400));

        progress.acked(c);
        assert_eq!(progress.confirmable(), START);
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x400));
        assert_eq!(progress.inflight_records(), 2);
        progress.acked(b);
        progress.acked(b);
        assert_eq!(progress.confirmable(), Lsn(0x400));
        assert_eq!(progress.inflight_records(), 0);
    }

    #[test]
    fn an_aborted_transaction_blocks_nothing_behind_it() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.abort(a);
        progress.idle_position(Lsn(0x300));
        assert_eq!(progress.confirmable(), Lsn(0x300));
        let b = progress.begin();
        assert_ne!(a, b);
        progress.produced(b);
        progress.commit(b, Lsn(0x400));
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x300));
        progress.acked(b);
        assert_eq!(progress.confirmable(), Lsn(0x400));
    }

    #[test]
    fn an_abort_with_nothing_in_flight_frees_its_ticket() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.abort(a);
        assert!(progress.checkpoints.is_empty());
        assert_eq!(progress.begin(), a);
    }

    #[test]
    fn commit_and_abort_of_a_closed_ticket_change_nothing() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.commit(a, Lsn(0x200));
        progress.commit(a, Lsn(0x900));
        progress.abort(a);
        assert_eq!(progress.confirmable(), START);
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x200));
    }

    #[test]
    fn unknown_tickets_are_ignored() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        progress.produced(a);
        progress.commit(a, Lsn(0x200));
        let stray = Ticket::from_raw(usize::MAX);
        progress.produced(stray);
        progress.acked(stray);
        progress.commit(stray, Lsn(0x900));
        progress.abort(stray);
        assert_eq!(progress.confirmable(), START);
        progress.acked(a);
        assert_eq!(progress.confirmable(), Lsn(0x200));
    }

    #[test]
    fn never_moves_backwards() {
        let mut progress = Progress::new(Lsn(0x500));
        progress.idle_position(Lsn(0x400));
        assert_eq!(progress.confirmable(), Lsn(0x500));
        let t = progress.begin();
        progress.produced(t);
        progress.commit(t, Lsn(0x300));
        progress.acked(t);
        assert_eq!(progress.confirmable(), Lsn(0x500));
    }

    #[test]
    fn tickets_round_trip_through_the_raw_opaque() {
        let mut progress = Progress::new(START);
        let a = progress.begin();
        let b = progress.begin();
        assert_eq!(Ticket::from_raw(a.into_raw()), a);
        assert_eq!(Ticket::from_raw(b.into_raw()), b);
        assert_ne!(a.into_raw(), b.into_raw());
    }

    #[test]
    fn many_tiny_transactions_behind_a_stuck_one_stay_small() {
        let mut progress = Progress::new(START);
        let stuck = progress.begin();
        progress.produced(stuck);
        progress.commit(stuck, Lsn(0x200));
        for i in 0..100_000u64 {
            let t = progress.begin();
            progress.produced(t);
            progress.acked(t);
            progress.commit(t, Lsn(0x1000 + i));
            progress.idle_position(Lsn(0x1000 + i));
        }
        assert_eq!(progress.checkpoints.len(), 1);
        progress.acked(stuck);
        assert_eq!(progress.confirmable(), Lsn(0x1000 + 99_999));
    }

    #[test]
    fn many_acknowledged_transactions_leave_an_empty_queue() {
        let mut progress = Progress::new(START);
        for i in 1..=10_000u64 {
            let t = progress.begin();
            progress.produced(t);
            progress.produced(t);
            progress.commit(t, Lsn(i * 16));
            progress.acked(t);
            progress.acked(t);
        }
        assert!(progress.checkpoints.is_empty());
        assert_eq!(progress.confirmable(), Lsn(10_000 * 16));
    }

    /// One step of the property test, interpreted against the current state (steps that do
    /// not apply, such as a commit with no transaction open, are skipped).
    #[derive(Clone, Debug)]
    enum Step {
        Begin,
        /// Sends a record; a late one is counted with `produced` only at the next `Count`,
        /// commit or abort, so its acknowledgement may overtake the count.
        Send {
            late: bool,
        },
        Count,
        Commit {
            advance: u64,
        },
        Abort,
        Idle {
            advance: u64,
        },
        /// Acknowledges the n-th (modulo) unacknowledged record.
        Ack(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => Just(Step::Begin),
            5 => any::<bool>().prop_map(|late| Step::Send { late }),
            1 => Just(Step::Count),
            2 => (0..64u64).prop_map(|advance| Step::Commit { advance }),
            1 => Just(Step::Abort),
            1 => (0..64u64).prop_map(|advance| Step::Idle { advance }),
            6 => any::<usize>().prop_map(Step::Ack),
        ]
    }

    struct ModelCheckpoint {
        lsn: Option<Lsn>,
        open: bool,
        aborted: bool,
        records: usize,
    }

    struct ModelRecord {
        checkpoint: usize,
        ticket: Ticket,
        counted: bool,
        acked: bool,
    }

    #[derive(Default)]
    struct Model {
        checkpoints: Vec<ModelCheckpoint>,
        records: Vec<ModelRecord>,
        open: Option<(usize, Ticket)>,
        lsn: u64,
    }

    impl Model {
        fn count_late(&mut self, progress: &mut Progress) {
            for record in self.records.iter_mut().filter(|r| !r.counted) {
                progress.produced(record.ticket);
                record.counted = true;
            }
        }

        fn is_complete(&self, index: usize) -> bool {
            let checkpoint = &self.checkpoints[index];
            !checkpoint.open
                && (checkpoint.aborted
                    || self
                        .records
                        .iter()
                        .all(|r| r.checkpoint != index || r.acked))
        }

        /// How many leading checkpoints are complete.
        fn complete_prefix(&self) -> usize {
            (0..self.checkpoints.len())
                .take_while(|&i| self.is_complete(i))
                .count()
        }

        fn expected_confirmable(&self) -> Lsn {
            self.checkpoints[..self.complete_prefix()]
                .iter()
                .filter_map(|c| c.lsn)
                .fold(START, Lsn::max)
        }

        /// Entries the tracker may legitimately hold: the open transaction, and closed ones
        /// past the complete prefix that had records of their own.
        fn entry_bound(&self) -> usize {
            let prefix = self.complete_prefix();
            self.checkpoints[prefix..]
                .iter()
                .filter(|c| c.open || c.records > 0)
                .count()
        }

        fn apply(&mut self, progress: &mut Progress, step: Step) {
            match step {
                Step::Begin if self.open.is_none() => {
                    let ticket = progress.begin();
                    self.checkpoints.push(ModelCheckpoint {
                        lsn: None,
                        open: true,
                        aborted: false,
                        records: 0,
                    });
                    self.open = Some((self.checkpoints.len() - 1, ticket));
                }
                Step::Send { late } => {
                    if let Some((checkpoint, ticket)) = self.open {
                        if !late {
                            progress.produced(ticket);
                        }
                        self.checkpoints[checkpoint].records += 1;
                        self.records.push(ModelRecord {
                            checkpoint,
                            ticket,
                            counted: !late,
                            acked: false,
                        });
                    }
                }
                Step::Count => self.count_late(progress),
                Step::Commit { advance } => {
                    if let Some((checkpoint, ticket)) = self.open.take() {
                        self.count_late(progress);
                        self.lsn += advance;
                        progress.commit(ticket, Lsn(self.lsn));
                        let model = &mut self.checkpoints[checkpoint];
                        model.open = false;
                        model.lsn = Some(Lsn(self.lsn));
                    }
                }
                Step::Abort => {
                    if let Some((checkpoint, ticket)) = self.open.take() {
                        self.count_late(progress);
                        progress.abort(ticket);
                        let model = &mut self.checkpoints[checkpoint];
                        model.open = false;
                        model.aborted = true;
                    }
                }
                Step::Idle { advance } if self.open.is_none() => {
                    self.lsn += advance;
                    progress.idle_position(Lsn(self.lsn));
                    self.checkpoints.push(ModelCheckpoint {
                        lsn: Some(Lsn(self.lsn)),
                        open: false,
                        aborted: false,
                        records: 0,
                    });
                }
                Step::Ack(pick) => {
                    let unacked: Vec<usize> = (0..self.records.len())
                        .filter(|&i| !self.records[i].acked)
                        .collect();
                    if !unacked.is_empty() {
                        let record = &mut self.records[unacked[pick % unacked.len()]];
                        progress.acked(record.ticket);
                        record.acked = true;
                    }
                }
                Step::Begin | Step::Idle { .. } => {}
            }
        }

        fn check(&self, progress: &Progress, previous: Lsn) {
            let confirmable = progress.confirmable();
            assert!(confirmable >= previous, "confirmable moved backwards");
            assert_eq!(confirmable, self.expected_confirmable());
            let counted = self.records.iter().filter(|r| r.counted).count() as u64;
            let acked = self.records.iter().filter(|r| r.acked).count() as u64;
            assert_eq!(progress.inflight_records(), counted.saturating_sub(acked));
            assert_eq!(progress.is_transaction_open(), self.open.is_some());
            assert!(
                progress.checkpoints.len() <= self.entry_bound(),
                "{} entries, at most {} expected",
                progress.checkpoints.len(),
                self.entry_bound()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn confirmable_follows_the_acknowledged_prefix(steps in prop::collection::vec(step(), 0..200)) {
            let mut progress = Progress::new(START);
            let mut model = Model { lsn: START.0, ..Model::default() };
            let mut previous = progress.confirmable();
            for step in steps {
                model.apply(&mut progress, step);
                model.check(&progress, previous);
                previous = progress.confirmable();
            }

            // Close what is open, acknowledge everything left: the last checkpoint is reached.
            model.apply(&mut progress, Step::Commit { advance: 1 });
            model.count_late(&mut progress);
            while model.records.iter().any(|r| !r.acked) {
                model.apply(&mut progress, Step::Ack(0));
                model.check(&progress, previous);
                previous = progress.confirmable();
            }
            let last = model.checkpoints.iter().filter_map(|c| c.lsn).fold(START, Lsn::max);
            prop_assert_eq!(progress.confirmable(), last);
            prop_assert_eq!(progress.inflight_records(), 0);
            prop_assert!(progress.checkpoints.is_empty());
        }
    }
}
