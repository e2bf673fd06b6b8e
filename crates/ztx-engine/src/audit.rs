//! The writer's side of the audit log: the tree's right edge in memory, the entries of
//! each commit turned into rows, and a signed checkpoint at least every
//! [`AuditConfig::checkpoint_every`] while entries arrive — committed in the same
//! transaction as the entries it covers, so it never names an entry that is not durable.

use std::time::Duration;

use ztx_audit::{Checkpoint, Completed, Entry, Frontier, Hash, LogKey};
use ztx_core::ExchangeError;
use ztx_store::{AuditAppend, AuditRow, Store, StoredCheckpoint};

use crate::StartError;

/// Where the writer hands each commit's audit rows, right after the commit: the
/// security monitor's queue. A full queue drops them — the follower then reads what it
/// missed from the store — so a slow follower never holds up a commit.
pub type Feed = tokio::sync::mpsc::Sender<Vec<Committed>>;

/// A committed row with the entry it encodes as the writer had it: what decoding the
/// row gives, handed over so that the follower need not decode it (nor the writer
/// spend its time freeing the entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub row: AuditRow,
    pub entry: Entry,
}

/// An entry as it will be logged, with its canonical bytes but for `prev`, which the
/// writer writes in as it chains it ([`Entry::logged`], then
/// [`Entry::set_encoded_prev`]). The engine thread encodes its batches' entries; the
/// writer, which every commit waits for, only chains and hashes them.
pub(crate) type Encoded = (Entry, Vec<u8>);

/// How the engine keeps the audit log.
#[derive(Debug)]
pub struct AuditConfig {
    /// Signs the checkpoints; its name is the log's origin.
    pub key: LogKey,
    pub checkpoint_every: Duration,
    /// Committed rows go here too (none: followers read the store).
    pub feed: Option<Feed>,
}

/// A request's audit entry. A command's outcome is filled in once it has run: success,
/// or failure with the code `code_of` gives the exchange's refusal.
#[derive(Debug, Clone)]
pub struct Audit {
    pub entry: Entry,
    pub code_of: fn(&ExchangeError) -> i32,
    /// The entries of the store calls the request made before the command, committed
    /// right after its entry (so that a command never needs a second write to the log
    /// after its effect is durable).
    pub accessed: Vec<Entry>,
}

impl Audit {
    /// The request's entry with its outcome, then those of its store calls.
    pub(crate) fn finish_all<T>(mut self, result: &Result<T, ExchangeError>) -> Vec<Entry> {
        let accessed = std::mem::take(&mut self.accessed);
        let mut entries = Vec::with_capacity(1 + accessed.len());
        entries.push(self.finish(result));
        entries.extend(accessed);
        entries
    }

    pub(crate) fn finish<T>(mut self, result: &Result<T, ExchangeError>) -> Entry {
        match result {
            Ok(_) => {
                self.entry.outcome = ztx_audit::Outcome::Success;
                self.entry.code = None;
            }
            Err(e) => {
                self.entry.outcome = ztx_audit::Outcome::Failure;
                self.entry.code = Some((self.code_of)(e));
            }
        }
        self.entry.denial = None;
        self.entry
    }
}

/// The log as it will be once a commit's rows are durable, and the entries they encode.
#[derive(Debug)]
pub(crate) struct Prepared {
    frontier: Frontier,
    last_leaf: Hash,
    logged: Vec<Entry>,
    /// The tree's nodes the entries complete at the levels the store keeps.
    nodes: Vec<Completed>,
}

/// The stored-level nodes a commit of the entries `start..end` completed.
#[derive(Debug)]
pub(crate) struct CommittedNodes {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) nodes: Vec<Completed>,
}

#[derive(Debug)]
pub(crate) struct AuditLog {
    key: LogKey,
    every_ms: u64,
    frontier: Frontier,
    /// The leaf hash of the newest entry, which the next one names as its `prev`.
    last_leaf: Hash,
    checkpointed_size: u64,
    checkpointed_ms: u64,
    feed: Option<Feed>,
}

impl AuditLog {
    /// Resumes the log where the store ends, after checking that what is stored still
    /// has the root the last checkpoint signed: a server does not append to a log that
    /// was rewritten behind its back.
    pub(crate) fn open(
        store: &mut dyn Store,
        config: AuditConfig,
        now_ms: u64,
    ) -> Result<AuditLog, StartError> {
        let fail = |e: ztx_store::StoreError| StartError::Store(e.to_string());
        let size = store.audit_size().map_err(fail)?;
        let frontier = store.audit_frontier(size).map_err(fail)?;
        let last_leaf = match size.checked_sub(1) {
            None => Hash::ZERO,
            Some(last) => store
                .audit_entries(last, 1)
                .map_err(fail)?
                .first()
                .map(|row| row.leaf)
                .ok_or_else(|| StartError::Audit(format!("entry {last} is missing")))?,
        };
        let last = store.latest_checkpoint().map_err(fail)?;
        let (checkpointed_size, checkpointed_ms) = match &last {
            // The period runs from the start.
            None => (0, now_ms),
            Some(c) => {
                let signed = Checkpoint::open(&c.note, &config.key.verifier())
                    .map_err(|e| StartError::Audit(format!("checkpoint {}: {e}", c.size)))?;
                let stored = store.audit_root(c.size).map_err(fail)?;
                if signed.size != c.size || signed.root != stored {
                    return Err(StartError::Audit(format!(
                        "the stored log does not have the root its checkpoint at size {} signed",
                        c.size
                    )));
                }
                (c.size, c.created_ms)
            }
        };
        Ok(AuditLog {
            every_ms: u64::try_from(config.checkpoint_every.as_millis()).unwrap_or(u64::MAX),
            key: config.key,
            feed: config.feed,
            frontier,
            last_leaf,
            checkpointed_size,
            checkpointed_ms,
        })
    }

    /// What a commit of `entries` at `now_ms` appends, and the tree after it. `last`:
    /// sign a checkpoint of every entry now, due or not (the engine is stopping).
    pub(crate) fn prepare(
        &self,
        entries: Vec<Encoded>,
        now_ms: u64,
        last: bool,
    ) -> (AuditAppend, Prepared) {
        let mut frontier = self.frontier.clone();
        let mut last_leaf = self.last_leaf;
        let mut nodes = Vec::new();
        let (rows, logged) =
            AuditRow::chain_encoded(entries, &mut frontier, &mut last_leaf, &mut nodes);
        let due = frontier.size() > self.checkpointed_size
            && (last || now_ms.saturating_sub(self.checkpointed_ms) >= self.every_ms);
        let checkpoint = due.then(|| self.sign(&frontier, now_ms));
        (
            AuditAppend {
                rows,
                checkpoint: checkpoint.flatten(),
                effects: Vec::new(),
            },
            Prepared {
                frontier,
                last_leaf,
                logged,
                nodes,
            },
        )
    }

    fn sign(&self, frontier: &Frontier, now_ms: u64) -> Option<StoredCheckpoint> {
        let root = frontier.root();
        let checkpoint = Checkpoint::new(self.key.name(), frontier.size(), root);
        match checkpoint.sign(&self.key) {
            Ok(note) => Some(StoredCheckpoint {
                size: frontier.size(),
                root,
                note,
                created_ms: now_ms,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an audit checkpoint");
                None
            }
        }
    }

    /// After the commit of `append`: the tree and its newest leaf are as `prepared` says;
    /// the rows go on to the feed with their entries. Returns the tree's nodes the
    /// commit completed, for the indexer.
    pub(crate) fn committed(&mut self, prepared: Prepared, append: AuditAppend) -> CommittedNodes {
        let Prepared {
            frontier,
            last_leaf,
            logged,
            nodes,
        } = prepared;
        let completed = CommittedNodes {
            start: self.frontier.size(),
            end: frontier.size(),
            nodes,
        };
        self.frontier = frontier;
        self.last_leaf = last_leaf;
        if let Some(c) = &append.checkpoint {
            self.checkpointed_size = c.size;
            self.checkpointed_ms = c.created_ms;
        }
        if let Some(feed) = &self.feed
            && !append.rows.is_empty()
        {
            let committed = append
                .rows
                .into_iter()
                .zip(logged)
                .map(|(row, entry)| Committed { row, entry })
                .collect();
            // Full or gone: the follower reads the store instead.
            let _ = feed.try_send(committed);
        }
        completed
    }

    /// How long the writer may wait for work before a checkpoint is due; `None` when
    /// every entry is signed.
    pub(crate) fn until_due(&self, now_ms: u64) -> Option<Duration> {
        (self.frontier.size() > self.checkpointed_size).then(|| {
            let since = now_ms.saturating_sub(self.checkpointed_ms);
            Duration::from_millis(self.every_ms.saturating_sub(since))
        })
    }
}
