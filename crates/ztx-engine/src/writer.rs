//! The writer thread: commits the engine's batches in order, each group of them in one
//! store transaction with their audit entries, then answers their requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use ztx_audit::Entry;
use ztx_core::Changes;
use ztx_store::{AuditAppend, Store};

use crate::audit::AuditLog;
use crate::{Accessor, Clock, EngineError, Pending, Pipeline, Sealed, WRITER_DEPTH};

/// How long an idle writer waits before it looks for the platform's own accesses to log.
const IDLE_WAKE: std::time::Duration = std::time::Duration::from_millis(500);

/// Commits batches in order, then answers them.
pub(crate) struct Writer {
    pub(crate) store: Box<dyn Store>,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) audit: Option<AuditLog>,
    pub(crate) clock: Clock,
}

impl Writer {
    pub(crate) fn run(&mut self, rx: &Receiver<Sealed>) {
        let mut group = Vec::with_capacity(WRITER_DEPTH);
        loop {
            // With audit entries not yet signed, wait no longer than until their
            // checkpoint is due, and sign it then even if nothing else comes.
            let due = self
                .audit
                .as_ref()
                .and_then(|a| a.until_due((self.clock)()));
            // Idle, it still looks now and then for the entries of the platform's own
            // data accesses (the upkeep's), which wait for a commit.
            let wait = due.unwrap_or(IDLE_WAKE);
            match rx.recv_timeout(wait) {
                Ok(first) => group.push(first),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The engine stopped: sign what is unsigned, then finish.
                    self.commit_group(&mut group, true);
                    return;
                }
            }
            // Every batch already waiting is committed with this one, in one transaction:
            // the busier the exchange, the larger (and cheaper per order) the commit.
            while let Ok(next) = rx.try_recv() {
                group.push(next);
            }
            self.commit_group(&mut group, false);
            self.follow_checkpoint();
        }
    }

    /// Commits the batches of `group` (possibly none, for a checkpoint alone) in one
    /// transaction and answers them. `last`: sign a checkpoint of every entry now.
    fn commit_group(&mut self, group: &mut Vec<Sealed>, last: bool) {
        let mut changes = Changes::default();
        let mut entries = Vec::new();
        let mut effects = Vec::new();
        let mut now_ms = (self.clock)();
        for sealed in group.iter_mut() {
            changes.extend(std::mem::take(&mut sealed.changes));
            entries.append(&mut sealed.audit);
            effects.append(&mut sealed.effects);
            now_ms = now_ms.max(sealed.now_ms);
        }
        changes.compact();
        let mut platform = Vec::new();
        let (mut append, after) = match &self.audit {
            Some(log) => {
                // The account of this commit's own store write, durable with it, and
                // those of the platform's other accesses since the last commit.
                if let Some(access) = ztx_store::commit_access(&changes) {
                    let own = Accessor::platform().entries(vec![access], 0, now_ms);
                    entries.extend(own.into_iter().map(Entry::logged));
                }
                platform = self.pipeline.take_accessed();
                entries.extend(platform.iter().cloned().map(Entry::logged));
                let (append, prepared) = log.prepare(entries, now_ms, last);
                (append, Some(prepared))
            }
            None => (AuditAppend::default(), None),
        };
        // The engine refuses effects without a log, so these always come with the
        // entries that record them.
        append.effects = effects;
        let durable = !self.pipeline.poisoned.load(Ordering::Acquire)
            && ((changes.is_empty() && append.is_empty()) || self.commit(&changes, &append));
        if !durable {
            self.pipeline.poisoned.store(true, Ordering::Release);
            // Not the requests' entries (their requests are refused), but the platform's
            // own accesses happened: they wait for the next commit that succeeds.
            self.pipeline.put_back_accessed(platform);
        }
        let count = u64::try_from(group.len()).unwrap_or(u64::MAX);
        for sealed in group.drain(..) {
            self.answer(sealed, durable);
        }
        // The requests have their answers; now the log's own follow-up (the tree's new
        // edge, the rows to the monitor, the nodes to the upkeep), before the next commit.
        if durable && let (Some(log), Some(prepared)) = (&mut self.audit, after) {
            let c = log.committed(prepared, append);
            self.pipeline.hand_audit_nodes(c.start, c.end, c.nodes);
        }
        // The inbox items marked done just now.
        if self.audit.is_some() {
            self.pipeline.account(self.store.as_mut(), now_ms);
        }
        self.pipeline.done.fetch_add(count, Ordering::AcqRel);
    }

    /// The upkeep thread's checkpoints copy the WAL into the database file beside the
    /// commits, but never reach a commit made while they run, so on their own the WAL
    /// would never start over. Right after one, a checkpoint on the writing connection,
    /// between two commits, finds only those last commits to copy, and lets the next
    /// commit start the WAL from its beginning. It runs after the answers have gone out.
    fn follow_checkpoint(&mut self) {
        if !self.pipeline.checkpointed.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.store.complete_checkpoint() {
            tracing::warn!(error = %e, "checkpoint after upkeep failed");
        }
    }

    fn commit(&mut self, changes: &Changes, audit: &AuditAppend) -> bool {
        match self.store.commit(changes, audit) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "store write failed; refusing the batch");
                false
            }
        }
    }

    fn answer(&mut self, sealed: Sealed, durable: bool) {
        for answer in sealed.answers {
            match answer {
                Pending::Command(reply, result) => {
                    let _ = reply.send(if durable {
                        result
                    } else {
                        Err(EngineError::Unavailable)
                    });
                }
                Pending::Query(reply, result) => {
                    let _ = reply.send(if durable {
                        Ok(result)
                    } else {
                        Err(EngineError::Unavailable)
                    });
                }
                Pending::Record(reply) => {
                    let _ = reply.send(if durable {
                        Ok(())
                    } else {
                        Err(EngineError::Unavailable)
                    });
                }
                Pending::Inbox(id, outcome) if durable => {
                    if let Err(e) = self.store.complete_inbox(id, &outcome, sealed.now_ms) {
                        // The deposit itself is durable and idempotent: the item is
                        // simply taken again later and reports AlreadyApplied.
                        tracing::warn!(error = %e, "cannot mark inbox item done");
                    }
                }
                Pending::Inbox(..) => {}
            }
        }
    }
}
