//! Delivering the notification outbox: one [`Sender`] per channel, each with the
//! [`Courier`] that carries its messages (e-mail over SMTP, webhooks over HTTPS).
//!
//! A sender looks at the outbox every second as its own service (`email`, `webhooks`):
//! its read of the sealed destinations is in the audit log before anything leaves (a
//! look that starts nothing is not logged, or it would add an entry a second for as long
//! as the server runs). Each message then goes on a task of its own — at most
//! [`Courier::MAX_IN_FLIGHT`] at once and [`MAX_IN_FLIGHT_PER_CUSTOMER`] per customer
//! (the store returns no more of one customer's a look), so a destination that never
//! answers holds up only its own customer's — and its outcome is recorded: delivered,
//! or failed and tried again later (given up after the last try). A delivery task that
//! panics counts as a failure; a message whose outcome cannot be recorded is held back
//! a minute rather than sent again at the next look; a stopping server waits for the
//! deliveries under way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ztx_core::CustomerId;
use ztx_engine::{Accessor, Principal};
use ztx_store::{Channel, OutboxMessage};

use crate::accounting::Caller;
use crate::state::AppState;

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_secs(1);
/// The most deliveries under way at once for one customer (the store returns no more
/// of one customer's a look).
pub const MAX_IN_FLIGHT_PER_CUSTOMER: u32 = ztx_store::OUTBOX_PER_CUSTOMER;
/// How long a message whose outcome could not be recorded is held back: without the
/// record it is still due in the store, and would go out again at the next look.
const HOLD_UNRECORDED: Duration = Duration::from_secs(60);
/// How long a stopping sender waits for deliveries under way, so that their outcomes
/// are recorded (what is not would go out again after a restart).
const DRAIN: Duration = Duration::from_secs(30);

/// Carries one channel's messages.
pub trait Courier: Send + Sync + 'static {
    /// The channel it carries.
    const CHANNEL: Channel;
    /// The service its store calls are logged as.
    const SERVICE: &'static str;
    /// The most deliveries under way at once, over all customers.
    const MAX_IN_FLIGHT: usize;
    /// Delivers one message; `Err` says why it did not arrive.
    fn deliver(
        &self,
        state: &AppState,
        message: &OutboxMessage,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Messages being delivered, by outbox id, with their customers.
type InFlight = Arc<Mutex<HashMap<u64, CustomerId>>>;

/// Delivers one channel's outbox messages.
pub struct Sender<C> {
    state: AppState,
    courier: Arc<C>,
    in_flight: InFlight,
}

impl<C> Clone for Sender<C> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            courier: self.courier.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

impl<C: Courier> std::fmt::Debug for Sender<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &C::CHANNEL)
            .finish_non_exhaustive()
    }
}

impl<C: Courier> Sender<C> {
    pub fn with_courier(state: AppState, courier: C) -> Self {
        Self {
            state,
            courier: Arc::new(courier),
            in_flight: Arc::default(),
        }
    }

    /// Delivers until `stop` resolves, then waits (up to [`DRAIN`]) for the deliveries
    /// under way, so that their outcomes are recorded.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut failing = false;
        let mut under_way: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        loop {
            match self.start().await {
                Ok(started) => {
                    failing = false;
                    under_way.retain(|task| !task.is_finished());
                    under_way.extend(started);
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(channel = C::CHANNEL.as_str(), error = %e, "cannot deliver from the outbox");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(POLL) => {}
            }
        }
        let drained = tokio::time::timeout(DRAIN, async {
            for task in under_way {
                let _ = task.await;
            }
        });
        if drained.await.is_err() {
            tracing::warn!(
                channel = C::CHANNEL.as_str(),
                "stopped with deliveries still under way; they go out again after a restart"
            );
        }
    }

    /// Delivers the messages due now (those not under way already, within the bounds
    /// on deliveries at once), and waits for them; how many it tried.
    pub async fn step(&self) -> Result<usize, String> {
        let started = self.start().await?;
        let tried = started.len();
        for task in started {
            let _ = task.await;
        }
        Ok(tried)
    }

    /// Starts delivering what is due and not under way already (within the bounds on
    /// deliveries at once); the tasks it started, each done once its outcome is
    /// recorded.
    pub async fn start(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
        let state = &self.state;
        let caller = self.caller();
        let now = state.now_ms();
        // What is under way before the read: a delivery that ends during it is still
        // listed as due by the read, and must not go out again.
        let before: std::collections::HashSet<u64> = self.in_flight().keys().copied().collect();
        let room = C::MAX_IN_FLIGHT.saturating_sub(before.len());
        if room == 0 {
            return Ok(Vec::new());
        }
        // Room past the ones under way, which the store still lists as due.
        let limit =
            u32::try_from(C::MAX_IN_FLIGHT.saturating_add(before.len())).unwrap_or(u32::MAX);
        let due = caller
            .scope(
                state
                    .reads
                    .with(move |s| s.pending_outbox(C::CHANNEL, now, limit)),
            )
            .await
            .map_err(|e| e.detail().unwrap_or(e.msg()).to_owned())?;
        let due = due
            .into_iter()
            .filter(|m| !before.contains(&m.id))
            .collect();
        let chosen = self.choose(due, room);
        if chosen.is_empty() {
            drop(caller.take_entries(0));
            return Ok(Vec::new());
        }
        // The read of the sealed destinations is in the log before anything leaves.
        if let Err(e) = flush(state, &caller).await {
            let mut in_flight = self.in_flight();
            for message in &chosen {
                in_flight.remove(&message.id);
            }
            return Err(e);
        }
        let mut started = Vec::with_capacity(chosen.len());
        for message in chosen {
            let sender = self.clone();
            started.push(tokio::spawn(async move { sender.attempt(message).await }));
        }
        Ok(started)
    }

    fn caller(&self) -> Caller {
        Caller::new(Accessor {
            service: C::SERVICE,
            principal: Principal::Platform,
            request_id: 0,
            api_key: None,
            client_ip: None,
        })
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<u64, CustomerId>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Of `due`, oldest first, those not under way, at most `room`, and at most
    /// [`MAX_IN_FLIGHT_PER_CUSTOMER`] under way per customer; marked as under way.
    fn choose(&self, due: Vec<OutboxMessage>, room: usize) -> Vec<OutboxMessage> {
        let mut in_flight = self.in_flight();
        let mut per_customer: HashMap<CustomerId, usize> = HashMap::new();
        for customer in in_flight.values() {
            *per_customer.entry(*customer).or_default() += 1;
        }
        let mut chosen = Vec::new();
        for message in due {
            if chosen.len() >= room {
                break;
            }
            let customer = message.notification.customer;
            let busy = per_customer.entry(customer).or_default();
            if in_flight.contains_key(&message.id)
                || u32::try_from(*busy).unwrap_or(u32::MAX) >= MAX_IN_FLIGHT_PER_CUSTOMER
            {
                continue;
            }
            *busy += 1;
            in_flight.insert(message.id, customer);
            chosen.push(message);
        }
        chosen
    }

    /// Delivers one message and records how it went.
    async fn attempt(self, message: OutboxMessage) {
        let id = message.id;
        // Lets the message go when this ends, however it ends (a panic included); held
        // back a while when its outcome could not be recorded.
        let mut release = Release {
            in_flight: self.in_flight.clone(),
            id,
            hold: Some(HOLD_UNRECORDED),
        };
        let (courier, state) = (self.courier.clone(), self.state.clone());
        let delivery = tokio::spawn(async move { courier.deliver(&state, &message).await });
        let outcome = match delivery.await {
            Ok(outcome) => outcome,
            Err(e) => Err(format!("the delivery failed: {e}")),
        };
        let channel = C::CHANNEL.as_str();
        if let Err(e) = &outcome {
            tracing::info!(channel, outbox = id, error = %e, "delivery failed");
        }
        let state = &self.state;
        let caller = self.caller();
        let done = state.now_ms();
        let recorded = caller
            .scope(state.reads.with(move |s| {
                let outcome = outcome.as_ref().map(|_| ()).map_err(String::as_str);
                match s.outbox_attempt(id, outcome, done) {
                    // Given up meanwhile (a webhook replaced or removed).
                    Ok(()) | Err(ztx_store::StoreError::UnknownOutboxMessage(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }))
            .await;
        match recorded {
            Ok(()) => release.hold = None,
            Err(e) => {
                tracing::error!(channel, outbox = id, error = %e.detail().unwrap_or(e.msg()), "cannot record a delivery; holding the message back");
            }
        }
        if let Err(e) = flush(state, &caller).await {
            tracing::error!(channel, outbox = id, error = %e, "cannot log a delivery's record");
        }
    }
}

/// Takes a message off the ones under way when dropped, at once or after `hold`.
struct Release {
    in_flight: InFlight,
    id: u64,
    hold: Option<Duration>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let (in_flight, id) = (self.in_flight.clone(), self.id);
        let release = move || {
            in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        };
        match (self.hold, tokio::runtime::Handle::try_current()) {
            (Some(hold), Ok(runtime)) => {
                runtime.spawn(async move {
                    tokio::time::sleep(hold).await;
                    release();
                });
            }
            _ => release(),
        }
    }
}

async fn flush(state: &AppState, caller: &Caller) -> Result<(), String> {
    if !state.is_audited() {
        drop(caller.take_entries(0));
        return Ok(());
    }
    caller
        .flush(&state.engine, state.now_ms())
        .await
        .map_err(|e| format!("cannot log the sender's store calls: {e}"))
}
