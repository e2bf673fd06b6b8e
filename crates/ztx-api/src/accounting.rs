//! Every store call the API makes is accounted for in the audit log (see
//! `ztx_engine::Accessor` for the entry): a request, an admin command or the security
//! monitor runs inside a [`Caller`], which collects what its calls through the
//! [`crate::StorePool`] touched; the gate logs them with the request's own entry, before
//! the answer leaves. An accounting pool refuses a call made outside any caller, so a
//! new code path cannot read data unaccounted for.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use ztx_audit::Entry;
use ztx_core::CustomerId;
use ztx_engine::{Accessor, EngineError, EngineHandle, Principal};
use ztx_store::DataAccess;

/// The HTTP API's read pool, serving requests.
pub const SERVICE_API: &str = "api";
/// The admin API (and `ztx admin` on a data directory).
pub const SERVICE_ADMIN: &str = "admin";
/// The security monitor, following the log.
pub const SERVICE_MONITOR: &str = "monitor";
/// The webhook sender, delivering from the outbox.
pub const SERVICE_WEBHOOKS: &str = "webhooks";
/// The e-mail sender, delivering from the outbox.
pub const SERVICE_EMAIL: &str = "email";

tokio::task_local! {
    static CALLER: Caller;
}

#[derive(Debug)]
struct Collected {
    accessor: Accessor,
    accesses: Vec<DataAccess>,
    dropped: u64,
    /// Entries already made that a command could not commit (see [`put_back`]).
    taken_back: Vec<Entry>,
}

/// Whom the store calls of a task serve, and what they touched so far.
#[derive(Clone, Debug)]
pub struct Caller(Arc<Mutex<Collected>>);

impl Caller {
    pub fn new(accessor: Accessor) -> Caller {
        Caller(Arc::new(Mutex::new(Collected {
            accessor,
            accesses: Vec::new(),
            dropped: 0,
            taken_back: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` as this caller's: the pool's calls in it are collected here.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CALLER.scope(self.clone(), work).await
    }

    /// Adds a store call's accounts. The pool calls it from the thread that made the
    /// call, so they are kept even when the task waiting for it is gone.
    pub(crate) fn collect(&self, accesses: Vec<DataAccess>, dropped: u64) {
        let mut collected = self.lock();
        collected.accesses.extend(accesses);
        collected.dropped = collected.dropped.saturating_add(dropped);
    }

    /// Logs what is still collected when `guard` is dropped before the caller was
    /// flushed: the task was cancelled (a client went away mid-request), but the reads
    /// it made happened.
    pub fn flush_on_drop(
        &self,
        engine: EngineHandle,
        now_ms: impl Fn() -> u64 + Send + 'static,
    ) -> FlushOnDrop {
        FlushOnDrop {
            caller: self.clone(),
            engine,
            now_ms: Box::new(now_ms),
        }
    }

    /// The caller proved to be `customer`, signing with key `api_key`.
    pub fn authenticated(&self, customer: CustomerId, api_key: u64) {
        let mut collected = self.lock();
        collected.accessor.principal = Principal::Customer(customer);
        collected.accessor.api_key = Some(api_key);
    }

    /// The caller is the operator `name`.
    pub fn operator(&self, name: &str) {
        self.lock().accessor.principal = Principal::Operator(name.to_owned());
    }

    /// The entries of everything collected since the last take, at `now_ms`.
    pub fn take_entries(&self, now_ms: u64) -> Vec<Entry> {
        let mut collected = self.lock();
        let accesses = std::mem::take(&mut collected.accesses);
        let dropped = std::mem::take(&mut collected.dropped);
        let mut entries = std::mem::take(&mut collected.taken_back);
        entries.extend(collected.accessor.entries(accesses, dropped, now_ms));
        entries
    }

    /// Logs what was collected, if anything; returns once durable.
    pub async fn flush(&self, engine: &EngineHandle, now_ms: u64) -> Result<(), EngineError> {
        let entries = self.take_entries(now_ms);
        if entries.is_empty() {
            return Ok(());
        }
        engine.record_all(entries).await
    }
}

/// See [`Caller::flush_on_drop`].
pub struct FlushOnDrop {
    caller: Caller,
    engine: EngineHandle,
    now_ms: Box<dyn Fn() -> u64 + Send>,
}

impl std::fmt::Debug for FlushOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushOnDrop")
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let entries = self.caller.take_entries((self.now_ms)());
        if entries.is_empty() {
            return;
        }
        let engine = self.engine.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = engine.record_all(entries).await {
                    tracing::error!(error = %e, "cannot log a cancelled request's store calls");
                }
            });
        }
    }
}

/// The current task's caller, if it runs as one.
pub(crate) fn current() -> Option<Caller> {
    CALLER.try_with(Caller::clone).ok()
}

/// The current task's caller is the operator `name` (nothing when it has no caller).
pub(crate) fn as_operator(name: &str) {
    let _ = CALLER.try_with(|caller| caller.operator(name));
}

/// The entries of what the current task's caller collected so far, for a command to
/// commit with its own effects; none outside a caller.
pub(crate) fn take_for_commit(now_ms: u64) -> Vec<Entry> {
    CALLER
        .try_with(|caller| caller.take_entries(now_ms))
        .unwrap_or_default()
}

/// Entries a command could not commit go back to its caller, to be logged with the rest.
pub(crate) fn put_back(entries: Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    let _ = CALLER.try_with(|caller| caller.lock().taken_back.extend(entries));
}

/// Runs `work` as `accessor`'s and logs its store calls afterwards, returning its output
/// only once they are durable (an error when the log refused them: the work's reads are
/// then not to be shown).
pub async fn accounted<F: Future>(
    engine: &EngineHandle,
    accessor: Accessor,
    now_ms: impl Fn() -> u64,
    work: F,
) -> Result<F::Output, EngineError> {
    let caller = Caller::new(accessor);
    let output = caller.scope(work).await;
    caller.flush(engine, now_ms()).await?;
    Ok(output)
}
