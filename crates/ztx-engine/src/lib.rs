//! The exchange service: one thread owns the [`Exchange`] (one writer for every market),
//! takes requests from a bounded queue in batches, and persists each batch's changes in one
//! store transaction (group commit) before it answers any request of that batch. Nothing
//! is acknowledged — and no read shows an effect — before it is durable.
//!
//! A store failure or a broken invariant discards the whole batch: every request in it is
//! answered `Unavailable`, and the exchange is reloaded from the store, which is exactly
//! the state that was last acknowledged.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::oneshot;
use ztx_core::{
    Amount, AssetCode, Balances, Changes, Command, CustomerId, Deposit, Exchange, ExchangeError,
    MarketSpec, Order, Price, Reply,
};
use ztx_store::{InboxCommand, Store};

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
    Command(Command, oneshot::Sender<Result<Reply, EngineError>>),
    Query(Query, oneshot::Sender<Result<QueryReply, EngineError>>),
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
        self.send(Request::Command(command, tx))?;
        rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Reads state; answers once everything the read may see is durable.
    pub async fn query(&self, query: Query) -> Result<QueryReply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Query(query, tx))?;
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
    /// Loads the exchange from `store` and starts the engine thread.
    pub fn start(
        mut store: Box<dyn Store>,
        markets: Vec<MarketSpec>,
        clock: Clock,
    ) -> Result<(Engine, EngineHandle), StartError> {
        let state = store
            .load_state()
            .map_err(|e| StartError::Store(e.to_string()))?;
        let exchange = Exchange::restore(markets.clone(), state)
            .map_err(|e| StartError::Restore(e.to_string()))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let mut worker = Worker {
            store,
            exchange,
            markets: markets.clone(),
            clock,
            last_ms: 0,
            stopped: false,
        };
        let thread = std::thread::Builder::new()
            .name("ztx-engine".into())
            .spawn(move || worker.run(&rx))
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

    /// Waits for the engine thread to finish (after every handle is dropped).
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
}

struct Worker {
    store: Box<dyn Store>,
    exchange: Exchange,
    markets: Vec<MarketSpec>,
    clock: Clock,
    last_ms: u64,
    /// Set when the exchange could not be reloaded after a failure: every request is then
    /// answered `Unavailable` rather than served from a state that may not be durable.
    stopped: bool,
}

/// An answer held back until the batch is durable.
enum Pending {
    Command(
        oneshot::Sender<Result<Reply, EngineError>>,
        Result<Reply, EngineError>,
    ),
    Query(oneshot::Sender<Result<QueryReply, EngineError>>, QueryReply),
    Inbox(ztx_store::InboxId, String),
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
            self.run_batch(&mut batch, take_inbox);
        }
    }

    /// A non-decreasing clock, so that stored times never run backwards.
    fn now(&mut self) -> u64 {
        self.last_ms = self.last_ms.max((self.clock)());
        self.last_ms
    }

    fn run_batch(&mut self, batch: &mut Vec<Request>, take_inbox: bool) {
        if self.stopped {
            for request in batch.drain(..) {
                match request {
                    Request::Command(_, reply) => drop(reply.send(Err(EngineError::Unavailable))),
                    Request::Query(_, reply) => drop(reply.send(Err(EngineError::Unavailable))),
                }
            }
            return;
        }
        let now = self.now();
        let mut changes = Changes::default();
        let mut answers = Vec::with_capacity(batch.len());
        let mut broken = false;
        for request in batch.drain(..) {
            match request {
                Request::Command(command, reply) => {
                    let result = self.exchange.execute(command, now, &mut changes);
                    broken |= matches!(result, Err(ExchangeError::Internal(_)));
                    answers.push(Pending::Command(reply, result.map_err(EngineError::from)));
                }
                Request::Query(query, reply) => {
                    answers.push(Pending::Query(reply, self.answer(query)));
                }
            }
        }
        if take_inbox && !broken {
            broken |= self.take_inbox(now, &mut changes, &mut answers);
        }
        let durable = !broken && (changes.is_empty() || self.persist(&changes));
        if !durable {
            tracing::error!("batch discarded; reloading the exchange from the store");
            self.reload();
        }
        for answer in answers {
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
                Pending::Inbox(id, outcome) if durable => {
                    if let Err(e) = self.store.complete_inbox(id, &outcome, now) {
                        // The deposit itself is durable and idempotent: the item is
                        // simply taken again next time and reports AlreadyApplied.
                        tracing::warn!(error = %e, "cannot mark inbox item done");
                    }
                }
                Pending::Inbox(..) => {}
            }
        }
    }

    fn persist(&mut self, changes: &Changes) -> bool {
        match self.store.apply(changes) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "store write failed");
                false
            }
        }
    }

    fn reload(&mut self) {
        let restored = self
            .store
            .load_state()
            .map_err(|e| e.to_string())
            .and_then(|s| Exchange::restore(self.markets.clone(), s).map_err(|e| e.to_string()));
        match restored {
            Ok(exchange) => self.exchange = exchange,
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the exchange; refusing all requests");
                self.stopped = true;
            }
        }
    }

    /// Executes the admin inbox's deposits in this batch. Returns whether an invariant broke.
    fn take_inbox(&mut self, now: u64, changes: &mut Changes, answers: &mut Vec<Pending>) -> bool {
        let items = match self.store.pending_inbox(INBOX_BATCH) {
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
            let outcome = match self
                .exchange
                .execute(Command::Deposit(deposit), now, changes)
            {
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
