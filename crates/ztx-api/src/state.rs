//! What every handler shares: the engine handle, a bounded pool of store connections for
//! history reads, the cache of API keys (secrets opened from the vault only in memory),
//! the rate limiter and the clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ztx_core::CustomerId;
use ztx_engine::{Clock, EngineHandle};
use ztx_store::{ApiKeyCredential, ApiKeyId, ApiKeyRecord, Store, StoreError, StoreFactory};
use ztx_vault::contact::ContactKeys;
use ztx_vault::{Aad, MasterKey};

use crate::auth::{ClientKey, Ed25519Key, HmacSecret};
use crate::error::ApiError;
use crate::ratelimit::{RateLimiter, RateLimits};

/// How long a key stays cached; a permission or allow-list change takes effect within it.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// The most keys cached; past it the cache is emptied and refilled on demand.
const KEY_CACHE_MAX: usize = 100_000;
/// The most idle store connections kept for reads.
const POOL_MAX_IDLE: usize = 16;

/// What an API key may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub read: bool,
    pub trade: bool,
    pub withdraw: bool,
}

impl Permissions {
    /// Parses `read,trade,withdraw` (any subset, any order).
    pub fn parse(text: &str) -> Option<Permissions> {
        let mut p = Permissions::default();
        for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part {
                "read" => p.read = true,
                "trade" => p.trade = true,
                "withdraw" => p.withdraw = true,
                _ => return None,
            }
        }
        Some(p)
    }
}

/// A key ready to check requests with.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub id: ApiKeyId,
    pub customer: CustomerId,
    pub key: ClientKey,
    pub permissions: Permissions,
    /// Empty means any address.
    pub allowed_ips: Vec<IpAddr>,
    pub enabled: bool,
    pub created_ms: u64,
    /// Set while detection has the key frozen: refused until its customer re-enables it.
    pub frozen_ms: Option<u64>,
}

/// The associated data that binds an HMAC secret an older release sealed under the master
/// key to its key row (new secrets are sealed under a data key of their own; see
/// `ztx_vault::contact::ContactKeys::seal_secret`).
pub fn secret_aad(api_key: &str) -> Aad<'_> {
    Aad {
        table: "api_keys",
        column: "secret_sealed",
        row_key: api_key.as_bytes(),
        key_version: 1,
    }
}

impl KeyEntry {
    fn from_record(
        record: &ApiKeyRecord,
        master: &MasterKey,
        keys: &ContactKeys,
    ) -> Result<KeyEntry, ApiError> {
        // Names the key by its number: its string is a credential half.
        let internal =
            |what: &str| ApiError::unknown().with_detail(format!("key #{}: {what}", record.id.0));
        let key = match &record.credential {
            ApiKeyCredential::Hmac {
                secret_sealed,
                data_key,
            } => {
                let secret = match data_key {
                    Some(key) => keys.open_secret(
                        &record.api_key,
                        &crate::contacts::secret_sealing(secret_sealed, key),
                    ),
                    // An older release's, until `ztx serve` re-seals it at start.
                    None => master.open(secret_sealed, &secret_aad(&record.api_key)),
                }
                .map_err(|e| internal(&format!("cannot open secret: {e}")))?;
                ClientKey::Hmac(HmacSecret::new(secret.to_vec()))
            }
            ApiKeyCredential::Ed25519 { public_key } => ClientKey::Ed25519(
                Ed25519Key::from_bytes(public_key).map_err(|e| internal(&e.to_string()))?,
            ),
        };
        let permissions =
            Permissions::parse(&record.permissions).ok_or_else(|| internal("bad permissions"))?;
        let allowed_ips = record
            .ip_allowlist
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<IpAddr>().map_err(|_| internal("bad allow-list")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeyEntry {
            id: record.id,
            customer: record.customer,
            key,
            permissions,
            allowed_ips,
            enabled: record.enabled,
            created_ms: record.created_ms,
            frozen_ms: record.frozen_ms,
        })
    }
}

/// A bounded pool of store connections for reads that go to the database. When
/// accounting (an audited server's), every call's data accesses go to the task's
/// [`crate::accounting::Caller`], and a call outside any is refused.
#[derive(Clone)]
pub struct StorePool {
    factory: StoreFactory,
    idle: Arc<Mutex<Vec<Box<dyn Store>>>>,
    account: bool,
}

impl std::fmt::Debug for StorePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorePool")
    }
}

impl StorePool {
    pub fn new(factory: StoreFactory) -> Self {
        Self {
            factory,
            idle: Arc::new(Mutex::new(Vec::new())),
            account: false,
        }
    }

    /// Accounts for every call (see [`crate::accounting`]).
    #[must_use]
    pub fn accounting(mut self, on: bool) -> Self {
        self.account = on;
        self
    }

    /// Runs `f` with a connection on a blocking thread.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let caller = crate::accounting::current();
        if self.account && caller.is_none() {
            // Fails closed: nothing reads data that the log will not account for.
            return Err(ApiError::unknown()
                .with_detail("a store call outside any accounted caller was refused"));
        }
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let taken = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut store = match taken {
                Some(store) => store,
                None => (pool.factory)().map_err(|e| store_error(&e))?,
            };
            store.account(pool.account);
            let result = f(store.as_mut()).map_err(|e| store_error(&e));
            let (accesses, dropped) = store.take_accesses();
            if let Some(caller) = &caller {
                caller.collect(accesses, dropped);
            }
            if let Ok(mut idle) = pool.idle.lock()
                && idle.len() < POOL_MAX_IDLE
            {
                idle.push(store);
            }
            result
        })
        .await
        .map_err(|e| ApiError::unknown().with_detail(format!("read task failed: {e}")))?
    }
}

fn store_error(e: &StoreError) -> ApiError {
    ApiError::unknown().with_detail(format!("store: {e}"))
}

/// Keys by their public string, each with the time it was loaded.
#[derive(Default)]
struct KeyCache {
    entries: HashMap<String, (Instant, Option<Arc<KeyEntry>>)>,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub reads: StorePool,
    pub limiter: Arc<RateLimiter>,
    /// Addresses detection banned.
    pub bans: Arc<crate::security::Bans>,
    pub clock: Clock,
    master: Arc<MasterKey>,
    contacts: Arc<ContactKeys>,
    keys: Arc<Mutex<KeyCache>>,
    /// Whether requests are logged in the audit log (the engine must keep one).
    audit: bool,
    request_ids: Arc<AtomicU64>,
    /// The audit log's verifier key, as published.
    log_key: Option<Arc<str>>,
    /// The proof-of-liabilities epochs this server publishes.
    reserves: Option<Arc<crate::reserves::Reserves>>,
    /// Which addresses customers' webhooks may go to.
    webhooks: crate::webhooks::WebhookPolicy,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

impl AppState {
    /// The keys customers' contact data is sealed and found by.
    pub(crate) fn contacts_arc(&self) -> Arc<ContactKeys> {
        self.contacts.clone()
    }

    pub fn new(
        engine: EngineHandle,
        reads: StorePool,
        master: Arc<MasterKey>,
        contacts: Arc<ContactKeys>,
        limits: RateLimits,
        clock: Clock,
    ) -> Self {
        Self {
            contacts,
            engine,
            reads,
            limiter: Arc::new(RateLimiter::new(limits)),
            bans: Arc::default(),
            master,
            keys: Arc::new(Mutex::new(KeyCache::default())),
            audit: false,
            log_key: None,
            reserves: None,
            webhooks: crate::webhooks::WebhookPolicy::default(),
            // Numbers that do not repeat across restarts of a server whose clock runs.
            request_ids: Arc::new(AtomicU64::new((clock)().saturating_mul(1_000))),
            clock,
        }
    }

    /// Logs every request in the audit log, which the engine must keep. A server always
    /// does; only a benchmark's baseline runs without.
    pub fn audited(mut self, on: bool) -> Self {
        self.audit = on;
        self.reads = self.reads.accounting(on);
        self
    }

    /// Publishes the audit log's verifier key (and with it the log's endpoints).
    pub fn with_log_key(mut self, key: &ztx_audit::VerifierKey) -> Self {
        self.log_key = Some(key.to_string().into());
        self
    }

    /// Publishes proofs of liabilities from `reserves`.
    pub fn with_reserves(mut self, reserves: Arc<crate::reserves::Reserves>) -> Self {
        self.reserves = Some(reserves);
        self
    }

    /// Lets webhooks go where `policy` allows.
    pub fn with_webhook_policy(mut self, policy: crate::webhooks::WebhookPolicy) -> Self {
        self.webhooks = policy;
        self
    }

    pub fn webhook_policy(&self) -> crate::webhooks::WebhookPolicy {
        self.webhooks
    }

    pub fn reserves(&self) -> Option<Arc<crate::reserves::Reserves>> {
        self.reserves.clone()
    }

    pub fn log_key(&self) -> Option<&str> {
        self.log_key.as_deref()
    }

    pub fn is_audited(&self) -> bool {
        self.audit
    }

    pub(crate) fn request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// Drops key `id` from the cache, so that a change to it (a freeze) applies to the
    /// very next request rather than within [`KEY_CACHE_TTL`].
    pub fn forget_key(&self, id: ApiKeyId) {
        if let Ok(mut cache) = self.keys.lock() {
            cache
                .entries
                .retain(|_, (_, entry)| entry.as_ref().is_none_or(|e| e.id != id));
        }
    }

    /// The key registered under `api_key`, from the cache or the store. `None` when no such
    /// key exists.
    pub async fn key(&self, api_key: &str) -> Result<Option<Arc<KeyEntry>>, ApiError> {
        if let Ok(cache) = self.keys.lock()
            && let Some((loaded, entry)) = cache.entries.get(api_key)
            && loaded.elapsed() < KEY_CACHE_TTL
        {
            return Ok(entry.clone());
        }
        let wanted = api_key.to_string();
        let record = self.reads.with(move |s| s.api_key_by_key(&wanted)).await?;
        let entry = record
            .as_ref()
            .map(|r| KeyEntry::from_record(r, &self.master, &self.contacts).map(Arc::new))
            .transpose()?;
        if let Ok(mut cache) = self.keys.lock() {
            if cache.entries.len() >= KEY_CACHE_MAX {
                cache.entries.clear();
            }
            cache
                .entries
                .insert(api_key.to_string(), (Instant::now(), entry.clone()));
        }
        Ok(entry)
    }
}
