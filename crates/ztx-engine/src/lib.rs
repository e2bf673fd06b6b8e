//! The exchange service: one thread owns the [`Exchange`] (one writer for every market),
//! takes requests from a bounded queue in batches, and persists each batch's changes in one
//! store transaction (group commit) before it answers any request of that batch. Nothing
//! is acknowledged — and no read shows an effect — before it is durable.
//!
//! A writer thread commits batch N while the engine executes batch N+1; the answers of a
//! batch travel with it and are sent only after its commit. A failed commit refuses that
//! batch and every batch behind it (`Unavailable`); the engine waits for the pipeline to
//! drain and reloads the exchange from the store, which is exactly the state that was
//! last acknowledged. A command that breaks an invariant is handled the same way.
#![forbid(unsafe_code)]

mod access;
mod audit;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::oneshot;
use ztx_audit::{Entry, ToCompactString};
use ztx_core::{
    Amount, AssetCode, Balances, Changes, Command, CustomerId, Deposit, Exchange, ExchangeError,
    MarketSpec, Order, Price, Reply,
};
use ztx_store::{InboxCommand, SecurityEffect, Store, StoreFactory};

pub use access::{Accessor, Principal, SERVICE_ENGINE};
pub use audit::{Audit, AuditConfig, Committed, Feed};
use audit::{AuditLog, Encoded};
use writer::Writer;

/// The most requests waiting for the engine; past it callers are told it is busy.
pub const QUEUE_CAPACITY: usize = 65_536;
/// The most requests executed in one batch (one store transaction).
pub const MAX_BATCH: usize = 4_096;
/// How often the engine looks at the admin inbox when idle.
const INBOX_POLL: Duration = Duration::from_millis(50);
/// The most inbox items taken per look.
const INBOX_BATCH: u32 = 100;

/// The wall clock in milliseconds since the Unix epoch, passed in so that tests can fix it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Why a request got no answer from the exchange itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    /// The exchange refused the command; nothing changed.
    #[error(transparent)]
    Refused(#[from] ExchangeError),
    /// The queue is full: try again later.
    #[error("the exchange is busy")]
    Busy,
    /// The store failed or the engine stopped; the request was not applied.
    #[error("the exchange is unavailable")]
    Unavailable,
}

/// A read of the exchange's current (durable) state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Balances(CustomerId),
    OpenOrders {
        customer: CustomerId,
        symbol: Option<String>,
    },
    Depth {
        symbol: String,
        limit: usize,
    },
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryReply {
    Balances(Vec<(AssetCode, Balances)>),
    OpenOrders(Vec<Order>),
    Depth(Option<Depth>),
}

/// A market's aggregated book, best first, with a number that grows with every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depth {
    pub update_id: u64,
    pub bids: Vec<(Price, Amount)>,
    pub asks: Vec<(Price, Amount)>,
}

enum Request {
    Command(
        Command,
        Option<Audit>,
        oneshot::Sender<Result<Reply, EngineError>>,
    ),
    Query(
        Query,
        Option<Entry>,
        oneshot::Sender<Result<QueryReply, EngineError>>,
    ),
    /// Audit entries alone (a refused request, a read the engine does not serve, the
    /// store calls a request made), consecutive in the log.
    Record(Vec<Entry>, oneshot::Sender<Result<(), EngineError>>),
    /// Security responses with the entries that record them, committed together.
    Respond(
        Vec<Entry>,
        Vec<SecurityEffect>,
        oneshot::Sender<Result<(), EngineError>>,
    ),
}

/// A handle to the running engine; cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: SyncSender<Request>,
    markets: Arc<Vec<MarketSpec>>,
}

impl EngineHandle {
    /// Executes a command; answers after its effects are durable.
    pub async fn execute(&self, command: Command) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Command(command, None, tx))?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Executes a command and logs it with its outcome, in the same commit as its
    /// effects; answers after both are durable.
    pub async fn execute_audited(
        &self,
        command: Command,
        audit: Audit,
    ) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Command(command, Some(audit), tx))?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Reads state; answers once everything the read may see is durable.
    pub async fn query(&self, query: Query) -> Result<QueryReply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Query(query, None, tx))?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Reads state and logs the read; answers once the entry is durable.
    pub async fn query_audited(
        &self,
        query: Query,
        entry: Entry,
    ) -> Result<QueryReply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Query(query, Some(entry), tx))?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Logs an entry; answers once it is durable (before the caller shows its effect).
    pub async fn record(&self, entry: Entry) -> Result<(), EngineError> {
        self.record_all(vec![entry]).await
    }

    /// Logs entries, consecutive and in one commit; answers once they are durable.
    pub async fn record_all(&self, entries: Vec<Entry>) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Record(entries, tx))?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Carries out security responses (a frozen key, a notification) in the same commit
    /// as the entries that record them, consecutive in the log; answers once durable.
    pub async fn respond(
        &self,
        entries: Vec<Entry>,
        effects: Vec<SecurityEffect>,
    ) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Respond(entries, effects, tx))?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    fn send(&self, request: Request) -> Result<(), EngineError> {
        self.tx.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => EngineError::Busy,
            TrySendError::Disconnected(_) => EngineError::Unavailable,
        })
    }

    /// The markets, as configured at start.
    pub fn markets(&self) -> &[MarketSpec] {
        &self.markets
    }
}

/// The engine thread; dropping every handle stops it.
#[derive(Debug)]
pub struct Engine {
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Loads the exchange from the store and starts the engine and its writer. `open`
    /// gives each its own connection.
    pub fn start(
        open: StoreFactory,
        markets: Vec<MarketSpec>,
        clock: Clock,
    ) -> Result<(Engine, EngineHandle), StartError> {
        Engine::start_with(open, markets, clock, None)
    }

    /// Starts the engine with an audit log (`None`: entries sent to it are refused).
    pub fn start_with(
        open: StoreFactory,
        markets: Vec<MarketSpec>,
        clock: Clock,
        audit: Option<AuditConfig>,
    ) -> Result<(Engine, EngineHandle), StartError> {
        let store_error = |e: ztx_store::StoreError| StartError::Store(e.to_string());
        let mut reader = open().map_err(store_error)?;
        let mut writer_store = open().map_err(store_error)?;
        let mut upkeep_store = open().map_err(store_error)?;
        // Attaches the history database now, and on a new store creates it, while
        // nothing else writes: left to the upkeep's first round, the creation waits for
        // the main database's write lock behind a writer that may never pause, and
        // meanwhile nothing lets the WAL start over.
        upkeep_store.history_indexed_to().map_err(store_error)?;
        // Resuming the log reads the tree's stored nodes, which SQLite keeps in the history
        // database: on the upkeep's connection, which has it attached anyway. Never on the
        // writer's: a connection with the history database attached takes its lock too at
        // each `BEGIN IMMEDIATE`, and every commit would then wait (the busy handler's
        // sleeps, up to tens of milliseconds) whenever the upkeep is indexing.
        let audit = audit
            .map(|config| AuditLog::open(upkeep_store.as_mut(), config, clock()))
            .transpose()?;
        let audited = audit.is_some();
        if audited {
            // Every call of the engine's own connections from here on is accounted for
            // in the log; the log's own resumption above is what its checkpoints cover.
            for store in [&mut reader, &mut writer_store, &mut upkeep_store] {
                store.account(true);
            }
        }
        let state = reader.load_state().map_err(store_error)?;
        let exchange = Exchange::restore(markets.clone(), state)
            .map_err(|e| StartError::Restore(e.to_string()))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let (sealed_tx, sealed_rx) = mpsc::sync_channel(WRITER_DEPTH);
        let pipeline = Arc::new(Pipeline::default());
        // The state just loaded, the first of the engine's own accesses.
        pipeline.account(reader.as_mut(), clock());
        let mut writer = Writer {
            store: writer_store,
            pipeline: pipeline.clone(),
            audit,
            clock: clock.clone(),
        };
        let writer_thread = std::thread::Builder::new()
            .name("ztx-writer".into())
            .spawn(move || writer.run(&sealed_rx))
            .map_err(|e| StartError::Thread(e.to_string()))?;
        let upkeep_pipeline = pipeline.clone();
        let upkeep_clock = clock.clone();
        let upkeep_thread = std::thread::Builder::new()
            .name("ztx-upkeep".into())
            .spawn(move || {
                yield_to_requests("upkeep");
                let mut indexing = Repeating::new("cannot index history");
                let mut indexing_audit = Repeating::new("cannot index the audit tree");
                let mut maintaining = Repeating::new("store upkeep failed");
                while !upkeep_pipeline.stopped.load(Ordering::Acquire) {
                    std::thread::sleep(UPKEEP_EVERY);
                    // Reads stay complete without the indexes (they scan the unindexed
                    // tail), so a failure is only reported and tried again next time.
                    indexing.report(upkeep_store.index_history(INDEX_LIMIT).map(|_| ()));
                    // The nodes the writer completed, else (at start, after a
                    // backlog, or without a log) from the entries themselves.
                    let handed = upkeep_pipeline.take_audit_nodes();
                    let from_writer = if handed.start < handed.end {
                        upkeep_store.index_audit_nodes(handed.start, handed.end, &handed.nodes)
                    } else {
                        Ok(0)
                    };
                    indexing_audit.report(
                        from_writer
                            .and_then(|covered| match covered {
                                0 => upkeep_store.index_audit(INDEX_LIMIT),
                                _ => Ok(covered),
                            })
                            .map(|_| ()),
                    );
                    maintaining.report(upkeep_store.maintain());
                    upkeep_pipeline.account(upkeep_store.as_mut(), upkeep_clock());
                    // Even after a failure: the writer's checkpoint alone still lets the
                    // WAL start over.
                    upkeep_pipeline.checkpointed.store(true, Ordering::Release);
                }
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        let mut worker = Worker {
            store: reader,
            exchange,
            markets: markets.clone(),
            clock,
            last_ms: 0,
            stopped: false,
            writer: sealed_tx,
            pipeline: pipeline.clone(),
            sent: 0,
            inbox_taken: ztx_store::InboxId(0),
            audited,
        };
        let thread = std::thread::Builder::new()
            .name("ztx-engine".into())
            .spawn(move || {
                worker.run(&rx);
                // The upkeep stops first, so that the accesses of its last round go into
                // the writer's last commit.
                pipeline.stopped.store(true, Ordering::Release);
                let _ = upkeep_thread.join();
                // Closing the writer's queue lets it finish what is in flight.
                drop(worker);
                let _ = writer_thread.join();
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        let handle = EngineHandle {
            tx,
            markets: Arc::new(markets),
        };
        Ok((
            Engine {
                thread: Some(thread),
            },
            handle,
        ))
    }

    /// Waits until every handle is dropped and everything accepted is written.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StartError {
    #[error("cannot load the exchange state: {0}")]
    Store(String),
    #[error("stored state does not fit the configured markets: {0}")]
    Restore(String),
    #[error("cannot start the engine thread: {0}")]
    Thread(String),
    #[error("the audit log cannot be resumed: {0}")]
    Audit(String),
}

/// The most executed batches waiting for the writer; past it the engine waits, which
/// bounds memory. The writer commits all that wait in one transaction.
const WRITER_DEPTH: usize = 16;

/// What the engine and the writer share: how many batches the writer finished, and
/// whether a commit failed.
#[derive(Debug, Default)]
struct Pipeline {
    done: AtomicU64,
    /// Set by the writer when a commit fails: from then on it refuses every batch until
    /// the engine has reloaded the durable state and clears it.
    poisoned: AtomicBool,
    /// Set when the engine has stopped, for the upkeep thread.
    stopped: AtomicBool,
    /// Set by the upkeep thread after each checkpoint; see [`Writer::follow_checkpoint`].
    checkpointed: AtomicBool,
    /// The entries of the platform's own data accesses, for the writer's next commit.
    accessed: std::sync::Mutex<Vec<Entry>>,
    /// The audit tree's nodes the writer completed in its commits, for the upkeep to
    /// store without reading the entries back.
    audit_nodes: std::sync::Mutex<HandedNodes>,
}

/// Stored-level nodes of the audit tree completed by the entries `start..end`.
#[derive(Debug, Default)]
struct HandedNodes {
    start: u64,
    end: u64,
    nodes: Vec<ztx_audit::Completed>,
}

/// The most nodes kept for an upkeep that does not take them (one for every sixteen
/// entries): past it they are dropped, and the upkeep reads the entries instead.
const MAX_HANDED_NODES: usize = 1 << 16;

impl HandedNodes {
    /// Adds the nodes of the entries `start..end`; a range that does not continue the
    /// one held replaces it.
    fn add(&mut self, start: u64, end: u64, mut nodes: Vec<ztx_audit::Completed>) {
        if self.end != start || self.nodes.len() + nodes.len() > MAX_HANDED_NODES {
            *self = HandedNodes {
                start,
                end: start,
                nodes: Vec::new(),
            };
        }
        self.end = end;
        self.nodes.append(&mut nodes);
    }
}

impl Pipeline {
    /// Queues the entries of the data accesses `store` accounted for since the last
    /// time, those worth logging (see [`access::touched`]), for the next commit.
    fn account(&self, store: &mut dyn Store, now_ms: u64) {
        let (accesses, dropped) = store.take_accesses();
        let touched = access::touched(accesses);
        if touched.is_empty() {
            return;
        }
        let entries = Accessor::platform().entries(touched, dropped, now_ms);
        self.accessed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(entries);
    }

    fn take_accessed(&self) -> Vec<Entry> {
        std::mem::take(
            &mut *self
                .accessed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Hands the upkeep the nodes a durable commit of the entries `start..end` completed.
    fn hand_audit_nodes(&self, start: u64, end: u64, nodes: Vec<ztx_audit::Completed>) {
        if start < end {
            self.audit_nodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .add(start, end, nodes);
        }
    }

    fn take_audit_nodes(&self) -> HandedNodes {
        std::mem::take(
            &mut *self
                .audit_nodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts entries a failed commit did not write back in front of the queue.
    fn put_back_accessed(&self, mut entries: Vec<Entry>) {
        let mut queue = self
            .accessed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.append(&mut queue);
        *queue = entries;
    }
}

/// How often the upkeep thread moves what was committed into the store's per-customer
/// history indexes ([`Store::index_history`]) and runs the store's maintenance (SQLite
/// checkpoints). Seldom enough that one indexing call covers many commits (the same
/// customers' index pages written once, not once per commit) and that the checkpoints'
/// syncs of the database file, each of which holds up the writer's own sync on the same
/// disk, stay few: ten a second measured best in `ztx-load` (in alternating runs, p99
/// 0.2–2.4 ms lower than checkpoints twenty and indexing fifty times a second; longer
/// periods traded p99 for p99.9). Reads scan what is not yet indexed, about this long's
/// worth of orders.
const UPKEEP_EVERY: Duration = Duration::from_millis(100);

/// The nice value of the threads that work beside the request path, not on it: the upkeep
/// thread here and the security monitor. Under full load the HTTP threads, the engine and
/// the writer come first and these take what is left plus a share (nice 10 weighs about a
/// tenth of a thread at nice 0); both catch up from the store when they fall behind. In
/// `ztx-load`, audited, p99 fell from 5–8 ms to 3.3–5.4 ms and the audited/unaudited
/// throughput rose from 84% to 86–88% (BENCHMARKS.md).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`BACKGROUND_NICE`]. On Linux the
/// nice value belongs to the thread; elsewhere it would be the whole process's, so this
/// does nothing there. A failure is only reported: the thread works the same, sooner.
pub fn yield_to_requests(thread: &str) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, BACKGROUND_NICE) {
        tracing::warn!(error = %e, thread, "cannot lower a background thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}

/// A batch the engine executed, with the answers to send once it is durable.
struct Sealed {
    changes: Changes,
    /// The batch's audit entries, in the order its requests arrived, encoded here (see
    /// [`Encoded`]).
    audit: Vec<Encoded>,
    /// The security responses those entries record.
    effects: Vec<SecurityEffect>,
    answers: Vec<Pending>,
    now_ms: u64,
}

/// The most orders (and trades) one indexing call takes: a backlog (an upgraded
/// database's history) is worked off at up to 100,000 a second without keeping the
/// checkpoints waiting.
const INDEX_LIMIT: u32 = 10_000;

/// How often a failure that repeats every upkeep round is logged again.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);

/// Reports the outcome of work retried every upkeep round: the first failure at once,
/// then at most once a minute with how many failed since, and the recovery.
struct Repeating {
    what: &'static str,
    failures: u64,
    logged: Option<Instant>,
}

impl Repeating {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            failures: 0,
            logged: None,
        }
    }

    fn report(&mut self, outcome: Result<(), ztx_store::StoreError>) {
        match outcome {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "{}: recovered", self.what);
                }
                self.failures = 0;
                self.logged = None;
            }
            Err(e) => {
                self.failures += 1;
                if self
                    .logged
                    .is_none_or(|at| at.elapsed() >= REPEAT_LOG_EVERY)
                {
                    tracing::warn!(error = %e, failures = self.failures, "{}", self.what);
                    self.logged = Some(Instant::now());
                }
            }
        }
    }
}

struct Worker {
    /// A connection of the engine's own, for the inbox and for reloading.
    store: Box<dyn Store>,
    exchange: Exchange,
    markets: Vec<MarketSpec>,
    clock: Clock,
    last_ms: u64,
    /// Set when the exchange could not be reloaded after a failure: every request is then
    /// answered `Unavailable` rather than served from a state that may not be durable.
    stopped: bool,
    writer: SyncSender<Sealed>,
    pipeline: Arc<Pipeline>,
    /// Batches handed to the writer.
    sent: u64,
    /// The newest inbox item taken; those up to it are being committed, or were.
    inbox_taken: ztx_store::InboxId,
    /// Whether the writer keeps an audit log.
    audited: bool,
}

/// An answer held back until the batch is durable.
enum Pending {
    Command(
        oneshot::Sender<Result<Reply, EngineError>>,
        Result<Reply, EngineError>,
    ),
    Query(oneshot::Sender<Result<QueryReply, EngineError>>, QueryReply),
    Record(oneshot::Sender<Result<(), EngineError>>),
    Inbox(ztx_store::InboxId, String),
}

impl Pending {
    /// Answers `Unavailable` at once (the batch is not written).
    fn refuse(self) {
        match self {
            Pending::Command(reply, _) => drop(reply.send(Err(EngineError::Unavailable))),
            Pending::Query(reply, _) => drop(reply.send(Err(EngineError::Unavailable))),
            Pending::Record(reply) => drop(reply.send(Err(EngineError::Unavailable))),
            Pending::Inbox(..) => {}
        }
    }
}

impl Request {
    fn is_audited(&self) -> bool {
        match self {
            Request::Command(_, audit, _) => audit.is_some(),
            Request::Query(_, entry, _) => entry.is_some(),
            Request::Record(..) | Request::Respond(..) => true,
        }
    }
}

fn refuse(request: Request) {
    match request {
        Request::Command(_, _, reply) => drop(reply.send(Err(EngineError::Unavailable))),
        Request::Query(_, _, reply) => drop(reply.send(Err(EngineError::Unavailable))),
        Request::Record(_, reply) | Request::Respond(_, _, reply) => {
            drop(reply.send(Err(EngineError::Unavailable)));
        }
    }
}

impl Worker {
    fn run(&mut self, rx: &Receiver<Request>) {
        let mut last_inbox = Instant::now();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            match rx.recv_timeout(INBOX_POLL) {
                Ok(first) => batch.push(first),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let take_inbox = last_inbox.elapsed() >= INBOX_POLL;
            if take_inbox {
                last_inbox = Instant::now();
            }
            if self.pipeline.poisoned.load(Ordering::Acquire) {
                self.recover();
            }
            if self.stopped {
                batch.drain(..).for_each(refuse);
                continue;
            }
            self.run_batch(&mut batch, take_inbox);
        }
    }

    /// A non-decreasing clock, so that stored times never run backwards.
    fn now(&mut self) -> u64 {
        self.last_ms = self.last_ms.max((self.clock)());
        self.last_ms
    }

    fn run_batch(&mut self, batch: &mut Vec<Request>, take_inbox: bool) {
        let now = self.now();
        let mut changes = Changes::default();
        let mut audit = Vec::new();
        let mut effects = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        let mut broken = false;
        for request in batch.drain(..) {
            if !self.audited && request.is_audited() {
                // Entries for a log this engine does not keep are not silently dropped:
                // the request fails, unexecuted.
                tracing::error!("an audited request sent to an engine without an audit log");
                refuse(request);
                continue;
            }
            match request {
                Request::Command(command, entry, reply) => {
                    let result = self.exchange.execute(command, now, &mut changes);
                    broken |= matches!(result, Err(ExchangeError::Internal(_)));
                    audit.extend(
                        entry
                            .into_iter()
                            .flat_map(|e| e.finish_all(&result))
                            .map(Entry::logged),
                    );
                    answers.push(Pending::Command(reply, result.map_err(EngineError::from)));
                }
                Request::Query(query, entry, reply) => {
                    audit.extend(entry.map(Entry::logged));
                    answers.push(Pending::Query(reply, self.answer(query)));
                }
                Request::Record(entries, reply) => {
                    audit.extend(entries.into_iter().map(Entry::logged));
                    answers.push(Pending::Record(reply));
                }
                Request::Respond(entries, effect, reply) => {
                    audit.extend(entries.into_iter().map(Entry::logged));
                    effects.extend(effect);
                    answers.push(Pending::Record(reply));
                }
            }
        }

        if take_inbox && !broken {
            broken |= self.take_inbox(now, &mut changes, &mut audit, &mut answers);
            self.pipeline.account(self.store.as_mut(), now);
        }
        if broken {
            tracing::error!("a command broke an invariant; discarding its batch");
            answers.into_iter().for_each(Pending::refuse);
            self.recover();
            return;
        }
        changes.compact();
        let sealed = Sealed {
            changes,
            audit,
            effects,
            answers,
            now_ms: now,
        };
        if self.writer.send(sealed).is_err() {
            tracing::error!("the writer stopped; refusing all requests");
            self.stopped = true;
            return;
        }
        self.sent += 1;
    }

    /// Waits until the writer has finished every batch sent, then reloads the exchange
    /// from the store: exactly the state that was acknowledged.
    fn recover(&mut self) {
        while self.pipeline.done.load(Ordering::Acquire) < self.sent {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Items of discarded batches were never completed: take them again.
        self.inbox_taken = ztx_store::InboxId(0);
        let restored = self
            .store
            .load_state()
            .map_err(|e| e.to_string())
            .and_then(|s| Exchange::restore(self.markets.clone(), s).map_err(|e| e.to_string()));
        self.pipeline.account(self.store.as_mut(), self.last_ms);
        match restored {
            Ok(exchange) => {
                tracing::warn!("reloaded the exchange from the store");
                self.exchange = exchange;
                self.pipeline.poisoned.store(false, Ordering::Release);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the exchange; refusing all requests");
                self.stopped = true;
            }
        }
    }

    /// Executes the admin inbox's deposits in this batch, each an audit entry in the same
    /// commit when the engine keeps a log. Returns whether an invariant broke.
    fn take_inbox(
        &mut self,
        now: u64,
        changes: &mut Changes,
        audit: &mut Vec<Encoded>,
        answers: &mut Vec<Pending>,
    ) -> bool {
        let items = match self.store.pending_inbox(self.inbox_taken, INBOX_BATCH) {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the admin inbox");
                return false;
            }
        };
        for item in items {
            let InboxCommand::Deposit {
                transfer_id,
                customer,
                asset,
                amount,
            } = item.command;
            let deposit = Deposit {
                transfer_id,
                customer,
                asset,
                amount,
            };
            let result = self
                .exchange
                .execute(Command::Deposit(deposit.clone()), now, changes);
            if self.audited {
                audit.push(inbox_entry(now, item.id, &deposit, &result).logged());
            }
            let outcome = match result {
                Ok(Reply::Deposited { applied, balance }) => {
                    format!("ok: {applied:?}; available {}", balance.available())
                }
                Ok(other) => format!("error: unexpected reply {other:?}"),
                Err(ExchangeError::Internal(e)) => {
                    tracing::error!(error = %e, "deposit broke an invariant");
                    return true;
                }
                Err(e) => format!("error: {e}"),
            };
            // Its completion is written after the commit: until then, not taken again.
            self.inbox_taken = self.inbox_taken.max(item.id);
            answers.push(Pending::Inbox(item.id, outcome));
        }
        false
    }

    fn answer(&self, query: Query) -> QueryReply {
        match query {
            Query::Balances(customer) => QueryReply::Balances(self.exchange.balances(customer)),
            Query::OpenOrders { customer, symbol } => {
                QueryReply::OpenOrders(self.exchange.open_orders(customer, symbol.as_deref()))
            }
            Query::Depth { symbol, limit } => QueryReply::Depth(
                self.exchange
                    .depth(&symbol, limit)
                    .map(|(bids, asks)| Depth {
                        update_id: self.exchange.version(),
                        bids,
                        asks,
                    }),
            ),
        }
    }
}

/// The audit entry of a deposit taken from the admin inbox.
fn inbox_entry(
    now: u64,
    item: ztx_store::InboxId,
    deposit: &Deposit,
    result: &Result<Reply, ExchangeError>,
) -> Entry {
    let (outcome, error) = match result {
        Ok(_) => (ztx_audit::Outcome::Success, None),
        Err(e) => (ztx_audit::Outcome::Failure, Some(e.to_string())),
    };
    let mut params: Vec<(ztx_audit::Text, ztx_audit::Text)> = vec![
        ("item".into(), item.0.to_compact_string()),
        (
            "transfer_id".into(),
            deposit.transfer_id.0.to_compact_string(),
        ),
        ("asset".into(), deposit.asset.as_str().into()),
        (
            "amount_minor".into(),
            deposit.amount.minor().to_compact_string(),
        ),
    ];
    params.extend(error.map(|e| ("error".into(), e.into())));
    Entry {
        prev: ztx_audit::Hash::ZERO,
        time_ms: now,
        kind: ztx_audit::Kind::Admin,
        request_id: 0,
        customer: Some(deposit.customer.0),
        api_key: None,
        operator: None,
        client_ip: None,
        action: "inbox deposit".into(),
        params,
        outcome,
        denial: None,
        code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(index: u64) -> ztx_audit::Completed {
        ztx_audit::Completed {
            level: 4,
            index,
            hash: ztx_audit::Hash::ZERO,
        }
    }

    /// Commits' nodes gather into one range while each continues the last; a range
    /// that does not (a commit the writer could not hand over) replaces what was held,
    /// so the upkeep is never given nodes with a gap between them.
    #[test]
    fn handed_nodes_gather_only_contiguous_ranges() {
        let mut handed = HandedNodes::default();
        handed.add(0, 16, vec![node(0)]);
        handed.add(16, 40, vec![node(1)]);
        assert_eq!((handed.start, handed.end, handed.nodes.len()), (0, 40, 2));
        handed.add(50, 64, vec![node(3)]);
        assert_eq!((handed.start, handed.end), (50, 64));
        assert_eq!(handed.nodes, vec![node(3)]);
        let taken = std::mem::take(&mut handed);
        assert_eq!(taken.end, 64);
        // Taken, the next commit starts a range of its own.
        handed.add(64, 80, vec![node(4)]);
        assert_eq!((handed.start, handed.end), (64, 80));
    }

    /// An upkeep that does not take the nodes holds up no more than a bounded number:
    /// past it they are dropped (it reads the entries instead).
    #[test]
    fn handed_nodes_are_bounded() {
        let mut handed = HandedNodes::default();
        let mut end = 0;
        for _ in 0..MAX_HANDED_NODES + 10 {
            handed.add(end, end + 16, vec![node(end / 16)]);
            end += 16;
        }
        assert!(handed.nodes.len() <= MAX_HANDED_NODES);
        assert_eq!(handed.end, end);
        let count = u64::try_from(handed.nodes.len()).unwrap();
        assert_eq!(handed.end - handed.start, 16 * count);
    }

    fn failure() -> Result<(), ztx_store::StoreError> {
        Err(ztx_store::StoreError::Setting("disk full".into()))
    }

    /// A failure that repeats every round (ten a second) is logged once, not each time,
    /// counted, and forgotten once the work succeeds again.
    #[test]
    fn a_repeating_failure_is_logged_once_then_counted() {
        let mut r = Repeating::new("cannot index history");
        r.report(failure());
        let first = r.logged.expect("the first failure is logged");
        for _ in 0..50 {
            r.report(failure());
        }
        assert_eq!(r.failures, 51);
        assert_eq!(r.logged, Some(first), "not logged again within a minute");
        r.report(Ok(()));
        assert_eq!(r.failures, 0);
        assert_eq!(r.logged, None);
        r.report(failure());
        assert!(
            r.logged.is_some_and(|at| at > first),
            "a new failure is logged again"
        );
    }
}
