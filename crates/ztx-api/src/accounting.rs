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

tokio::task_local! {
    static CALLER: Caller;
}

#[derive(Debug)]
struct Collected {
    accessor: Accessor,
    accesses: Vec<DataAccess>,
    dropped: u64,
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
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` as this caller's: the pool's calls in it are collected here.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CALLER.scope(self.clone(), work).await
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
        collected.accessor.entries(accesses, dropped, now_ms)
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

/// Adds a pool call's accesses to the task's caller; `false` when the task has none.
pub(crate) fn collect(accesses: Vec<DataAccess>, dropped: u64) -> bool {
    CALLER
        .try_with(|caller| {
            let mut collected = caller.lock();
            collected.accesses.extend(accesses);
            collected.dropped = collected.dropped.saturating_add(dropped);
        })
        .is_ok()
}

/// The current task's caller is the operator `name` (nothing when it has no caller).
pub(crate) fn as_operator(name: &str) {
    let _ = CALLER.try_with(|caller| caller.operator(name));
}

/// Whether the current task runs as some caller's.
pub(crate) fn in_scope() -> bool {
    CALLER.try_with(|_| ()).is_ok()
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
