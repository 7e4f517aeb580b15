//! What a run does: its parameters (from the environment for a long run) and the order of its
//! faults, drawn from the seed so that a run can be repeated.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    SourceKill9,
    SourceTerm,
    SinkKill9,
    SinkTerm,
    BrokerKill9,
    BrokerRestart,
    SourcePgImmediateRestart,
    TargetPgImmediateRestart,
    SourcePgNetworkCut,
    SinkBrokerNetworkCut,
    SlotInvalidated,
}

impl Fault {
    /// Every kind, in the order the figures list them.
    pub const ALL: [Fault; 11] = [
        Fault::SourceKill9,
        Fault::SourceTerm,
        Fault::SinkKill9,
        Fault::SinkTerm,
        Fault::BrokerKill9,
        Fault::BrokerRestart,
        Fault::SourcePgImmediateRestart,
        Fault::TargetPgImmediateRestart,
        Fault::SourcePgNetworkCut,
        Fault::SinkBrokerNetworkCut,
        Fault::SlotInvalidated,
    ];

    /// Its name in `PGCDC_CHAOS_FAULTS` and in the figures.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SourceKill9 => "source-kill9",
            Fault::SourceTerm => "source-term",
            Fault::SinkKill9 => "sink-kill9",
            Fault::SinkTerm => "sink-term",
            Fault::BrokerKill9 => "broker-kill9",
            Fault::BrokerRestart => "broker-restart",
            Fault::SourcePgImmediateRestart => "source-pg-restart",
            Fault::TargetPgImmediateRestart => "target-pg-restart",
            Fault::SourcePgNetworkCut => "source-pg-cut",
            Fault::SinkBrokerNetworkCut => "sink-broker-cut",
            Fault::SlotInvalidated => "slot-lost",
        }
    }

    /// What it does, for the figures.
    pub fn description(self) -> &'static str {
        match self {
            Fault::SourceKill9 => "`kill -9` of cdc-source",
            Fault::SourceTerm => "SIGTERM of cdc-source",
            Fault::SinkKill9 => "`kill -9` of cdc-sink",
            Fault::SinkTerm => "SIGTERM of cdc-sink",
            Fault::BrokerKill9 => "`kill -9` of the broker",
            Fault::BrokerRestart => "clean restart of the broker",
            Fault::SourcePgImmediateRestart => "source PostgreSQL immediate restart",
            Fault::TargetPgImmediateRestart => "target PostgreSQL immediate restart",
            Fault::SourcePgNetworkCut => "network cut, cdc-source to PostgreSQL",
            Fault::SinkBrokerNetworkCut => "network cut, cdc-sink to the broker",
            Fault::SlotInvalidated => "slot invalidated (`wal_status = lost`)",
        }
    }
}

/// How many of each kind a run injects.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub counts: Vec<(Fault, usize)>,
    /// Rows in `l1.big` before the source first starts: its initial snapshot is still running
    /// when the first faults hit.
    pub prefill_rows: i64,
    /// Rows of the one large transaction, committed while faults go on.
    pub big_transaction_rows: i64,
    /// The pause between one fault's recovery and the next fault, drawn between these.
    pub pause: (Duration, Duration),
    /// No fault is injected after this much time (the run then ends as usual).
    pub time_limit: Option<Duration>,
}

impl Plan {
    /// About a few minutes: one fault of each main kind, in the order the seed gives.
    pub fn short(seed: u64) -> Plan {
        let kinds = [
            Fault::SourceKill9,
            Fault::SinkKill9,
            Fault::BrokerKill9,
            Fault::SourcePgImmediateRestart,
            Fault::SourcePgNetworkCut,
            Fault::SinkBrokerNetworkCut,
            Fault::SlotInvalidated,
        ];
        Plan {
            seed,
            counts: kinds.iter().map(|&f| (f, 1)).collect(),
            prefill_rows: 50_000,
            big_transaction_rows: 50_000,
            pause: (Duration::from_millis(500), Duration::from_millis(1500)),
            time_limit: None,
        }
    }

    /// The long run's parameters: `PGCDC_CHAOS_SEED` (default: from the clock, printed),
    /// `PGCDC_CHAOS_FAULTS` (`kind=count,…`; default 20 kills of each process, 2 lost slots
    /// and 5 of every other kind), `PGCDC_CHAOS_PREFILL` and `PGCDC_CHAOS_BIG_TRANSACTION`
    /// (rows), `PGCDC_CHAOS_DURATION` (e.g. `30m`: no fault after that).
    pub fn from_env() -> Plan {
        let seed = std::env::var("PGCDC_CHAOS_SEED")
            .ok()
            .map(|s| s.parse().expect("PGCDC_CHAOS_SEED is a number"))
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_secs()
            });
        let mut counts: Vec<(Fault, usize)> = Fault::ALL
            .iter()
            .map(|&f| {
                let count = match f {
                    Fault::SourceKill9 | Fault::SinkKill9 => 20,
                    Fault::SlotInvalidated => 2,
                    _ => 5,
                };
                (f, count)
            })
            .collect();
        if let Ok(spec) = std::env::var("PGCDC_CHAOS_FAULTS") {
            counts = parse_counts(&spec).unwrap_or_else(|e| panic!("PGCDC_CHAOS_FAULTS: {e}"));
        }
        let rows = |name: &str, default: i64| {
            std::env::var(name)
                .ok()
                .map(|s| s.parse().unwrap_or_else(|_| panic!("{name} is a number")))
                .unwrap_or(default)
        };
        Plan {
            seed,
            counts,
            prefill_rows: rows("PGCDC_CHAOS_PREFILL", 100_000),
            big_transaction_rows: rows("PGCDC_CHAOS_BIG_TRANSACTION", 1_000_000),
            pause: (Duration::from_secs(1), Duration::from_secs(4)),
            time_limit: std::env::var("PGCDC_CHAOS_DURATION").ok().map(|text| {
                humantime::parse_duration(&text)
                    .unwrap_or_else(|e| panic!("PGCDC_CHAOS_DURATION `{text}`: {e}"))
            }),
        }
    }

    /// The faults in the order the seed gives, each with the pause before it and the outage
    /// it causes (how long a process stays down or a link cut).
    pub fn schedule(&self) -> Vec<(Fault, Duration, Duration)> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut faults: Vec<Fault> = self
            .counts
            .iter()
            .flat_map(|&(fault, count)| std::iter::repeat_n(fault, count))
            .collect();
        faults.shuffle(&mut rng);
        let (low, high) = self.pause;
        faults
            .into_iter()
            .map(|fault| {
                let pause = rng.random_range(low..=high);
                let outage = Duration::from_millis(rng.random_range(0..=8_000));
                (fault, pause, outage)
            })
            .collect()
    }

    /// The workload's random source, derived from the seed.
    pub fn workload_rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ 0x0005_eed0_fa11)
    }
}

/// `kind=count,kind=count`, kinds by [`Fault::name`].
fn parse_counts(spec: &str) -> Result<Vec<(Fault, usize)>, String> {
    spec.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, count) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not kind=count"))?;
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                    format!("unknown fault `{name}`; kinds: {}", names.join(", "))
                })?;
            let count = count
                .trim()
                .parse()
                .map_err(|_| format!("`{count}` is not a count"))?;
            Ok((fault, count))
        })
        .collect()
}

#[test]
fn a_seed_gives_one_schedule_and_every_fault_it_asks_for() {
    let plan = Plan::short(7);
    assert_eq!(plan.schedule(), plan.schedule());
    assert_ne!(plan.schedule(), Plan::short(8).schedule());
    assert_eq!(plan.schedule().len(), plan.counts.len());
    assert_eq!(
        parse_counts("source-kill9=3, slot-lost=1").unwrap(),
        vec![(Fault::SourceKill9, 3), (Fault::SlotInvalidated, 1)]
    );
    assert!(parse_counts("reboot=1")
        .unwrap_err()
        .contains("kinds: source-kill9"));
}
