//! What every subcommand appends: entries shaped like a signed order's, and the writer's
//! side of the log as `ztx-engine`'s `audit.rs` does it (chain `prev`, encode, leaf hash,
//! push the frontier, sign a checkpoint), producing the `AuditAppend` a commit takes.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Result;
use ztx_audit::{
    Checkpoint, Entry, Frontier, Hash, Kind, LogKey, Outcome, Text, ToCompactString, format_compact,
};
use ztx_store::{AuditAppend, AuditRow, StoredCheckpoint};

use crate::rng::SplitMix64;

/// The log's name in every benchmark (a checkpoint's origin line).
pub const ORIGIN: &str = "bench.ztx.example/audit";

/// A fixed seed: the benchmark's log key is no secret, and fixed keys make runs
/// comparable byte for byte.
pub fn log_key() -> Result<LogKey> {
    Ok(LogKey::from_seed(ORIGIN, &[0x42; 32])?)
}

/// About 2026-11-23 in milliseconds since the epoch; entries' clocks start here.
const START_MS: u64 = 1_795_392_000_000;

/// Audit entries of signed LIMIT GTC orders as `ztx-load` sends them and the API logs
/// them: `POST /api/v3/order`, the customer and key numbers, an IPv4 address, the eight
/// parameters without the signature, outcome success.
#[derive(Debug)]
pub struct Orders {
    rng: SplitMix64,
    request_id: u64,
    time_ms: u64,
}

impl Orders {
    pub fn new(seed: u64) -> Orders {
        Orders {
            rng: SplitMix64::new(seed),
            request_id: 0,
            time_ms: START_MS,
        }
    }

    pub fn next_entry(&mut self) -> Entry {
        self.request_id += 1;
        // About 7,000 requests a second, as the end-to-end benchmark serves.
        self.time_ms += u64::from(self.rng.below(7) == 0);
        let customer = 1 + self.rng.below(16);
        let side = if self.rng.below(2) == 0 {
            "BUY"
        } else {
            "SELL"
        };
        let price = 49_950 + self.rng.below(101);
        let last_octet = u8::try_from(customer).unwrap_or(u8::MAX);
        // Built as the API builds a request's entry (see `ztx_api::audit::loggable`).
        let params = [
            ("symbol", "BTCUSDT".into()),
            ("side", side.into()),
            ("type", "LIMIT".into()),
            ("timeInForce", "GTC".into()),
            ("quantity", "0.00100".into()),
            ("price", format_compact!("{price}.00")),
            ("recvWindow", "5000".into()),
            (
                "timestamp",
                (self.time_ms - self.rng.below(40)).to_compact_string(),
            ),
        ];
        Entry {
            prev: Hash::ZERO,
            time_ms: self.time_ms,
            kind: Kind::Request,
            request_id: self.request_id,
            customer: Some(customer),
            api_key: Some(customer + 100),
            operator: None,
            client_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 20, 0, last_octet))),
            action: format_compact!("{} {}", "POST", "/api/v3/order"),
            params: params
                .into_iter()
                .map(|(name, value): (&str, Text)| (name.into(), value))
                .collect(),
            outcome: Outcome::Success,
            denial: None,
            code: None,
        }
    }

    /// The clock of the newest entry, which a checkpoint made now carries.
    pub fn now_ms(&self) -> u64 {
        self.time_ms
    }
}

/// The writer's side of the log: the tree's right edge and the newest leaf, kept in
/// memory; each commit's entries chained, encoded and hashed into rows.
#[derive(Debug)]
pub struct Writer {
    key: LogKey,
    frontier: Frontier,
    last_leaf: Hash,
}

/// One commit's rows and the log after it, applied with [`Writer::committed`] once the
/// store has them.
#[derive(Debug)]
pub struct Prepared {
    pub append: AuditAppend,
    frontier: Frontier,
    last_leaf: Hash,
}

impl Writer {
    pub fn new(key: LogKey) -> Writer {
        Writer {
            key,
            frontier: Frontier::new(),
            last_leaf: Hash::ZERO,
        }
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// What a commit of `entries` appends, with a checkpoint of the log after them
    /// signed when `sign`.
    pub fn prepare(&self, entries: Vec<Entry>, now_ms: u64, sign: bool) -> Result<Prepared> {
        let encoded = entries.into_iter().map(Entry::logged).collect();
        self.prepare_encoded(encoded, now_ms, sign)
    }

    /// [`Writer::prepare`] of entries encoded already (by `Entry::logged`, as the
    /// engine's thread encodes them): the steps of `AuditLog::prepare` in `ztx-engine`.
    pub fn prepare_encoded(
        &self,
        encoded: Vec<(Entry, Vec<u8>)>,
        now_ms: u64,
        sign: bool,
    ) -> Result<Prepared> {
        let mut frontier = self.frontier.clone();
        let mut last_leaf = self.last_leaf;
        // Collected as the engine's writer collects them (for its upkeep to store).
        let mut nodes = Vec::new();
        let (rows, _) = AuditRow::chain_encoded(encoded, &mut frontier, &mut last_leaf, &mut nodes);
        let checkpoint = if sign {
            Some(self.sign(&frontier, now_ms)?)
        } else {
            None
        };
        Ok(Prepared {
            append: AuditAppend {
                rows,
                checkpoint,
                ..AuditAppend::default()
            },
            frontier,
            last_leaf,
        })
    }

    fn sign(&self, frontier: &Frontier, now_ms: u64) -> Result<StoredCheckpoint> {
        let root = frontier.root();
        let note = Checkpoint::new(self.key.name(), frontier.size(), root).sign(&self.key)?;
        Ok(StoredCheckpoint {
            size: frontier.size(),
            root,
            note,
            created_ms: now_ms,
        })
    }

    /// A signed checkpoint of the log as it is.
    pub fn checkpoint(&self, now_ms: u64) -> Result<StoredCheckpoint> {
        self.sign(&self.frontier, now_ms)
    }

    /// After the store committed `prepared`.
    pub fn committed(&mut self, prepared: Prepared) {
        self.frontier = prepared.frontier;
        self.last_leaf = prepared.last_leaf;
    }
}
