//! The records the store keeps besides the core's: customers, API keys, the admin inbox,
//! candles, and the query selectors the REST API passes in.

use std::fmt;

use ztx_core::{Amount, AssetCode, CustomerId, OrderId, Price, TransferId};

/// Whether a database belongs to a development or a production deployment; written once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Development,
    Production,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Development => "development",
            Mode::Production => "production",
        }
    }
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "development" => Some(Mode::Development),
            "production" => Some(Mode::Production),
            _ => None,
        }
    }
}

/// A stored customer, as the exchange may read it: whether their address is sealed,
/// not the address (which only a holder of the data keys reads, see
/// [`crate::Store::sealed_email`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRecord {
    pub id: CustomerId,
    /// False for a row an older release wrote, until it is sealed.
    pub email_sealed: bool,
    pub created_ms: u64,
}

/// An e-mail address sealed by the customer's data key, and that key as stored:
/// wrapped by key-encryption-key version `kek_version` (see `ztx_vault::contact`).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEmailRow {
    pub sealed: Vec<u8>,
    pub kek_version: u32,
    pub data_key: Vec<u8>,
}

impl fmt::Debug for SealedEmailRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedEmailRow")
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// A customer's address as the store holds it.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredEmail {
    Sealed(SealedEmailRow),
    /// Written by a release before contact data was encrypted (schema version 5 or
    /// older), until `ztx vault rotate` seals it.
    Plain(String),
}

impl fmt::Debug for StoredEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredEmail::Sealed(row) => row.fmt(f),
            StoredEmail::Plain(_) => f.write_str("Plain(<redacted>)"),
        }
    }
}

/// A customer's wrapped data key, for re-wrapping under a new key-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKeyRow {
    pub customer: CustomerId,
    pub kek_version: u32,
    pub data_key: Vec<u8>,
}

impl fmt::Debug for CustomerKeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerKeyRow")
            .field("customer", &self.customer)
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// A data key as stored: wrapped by KEK version `kek_version`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for WrappedDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedDataKey")
            .field("kek_version", &self.kek_version)
            .field("wrapped", &format_args!("<{} bytes>", self.wrapped.len()))
            .finish()
    }
}

/// An HMAC key's stored secret, for re-wrapping or re-sealing.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub id: ApiKeyId,
    pub api_key: String,
    pub secret_sealed: Vec<u8>,
    /// `None`: sealed under the master key by an older release.
    pub data_key: Option<WrappedDataKey>,
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("id", &self.id)
            .field("data_key", &self.data_key)
            .finish_non_exhaustive()
    }
}

/// A secret sealed anew (or its data key wrapped anew): replaces the row's if it is still
/// under `from_version` (`None`: the master key's).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretReseal {
    pub id: ApiKeyId,
    pub from_version: Option<u32>,
    pub secret_sealed: Vec<u8>,
    pub data_key: WrappedDataKey,
}

impl fmt::Debug for SecretReseal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretReseal")
            .field("id", &self.id)
            .field("from_version", &self.from_version)
            .field("data_key", &self.data_key)
            .finish_non_exhaustive()
    }
}

/// A data key wrapped anew: replaces the one under `from_version`, if still there.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRewrap {
    pub customer: CustomerId,
    pub from_version: u32,
    pub to_version: u32,
    pub data_key: Vec<u8>,
}

impl fmt::Debug for KeyRewrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRewrap")
            .field("customer", &self.customer)
            .field("from_version", &self.from_version)
            .field("to_version", &self.to_version)
            .finish_non_exhaustive()
    }
}

/// What contact data is under which key-encryption-key version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyStatus {
    /// Data keys per KEK version, ascending.
    pub data_keys: Vec<(u32, u64)>,
    /// Addresses still in the clear (see [`StoredEmail::Plain`]).
    pub plain_emails: u64,
    /// API keys' data keys per KEK version, ascending.
    pub secret_keys: Vec<(u32, u64)>,
    /// HMAC secrets still sealed under the master key by an older release.
    pub master_sealed_secrets: u64,
    /// Webhooks' data keys per KEK version, ascending.
    pub webhook_keys: Vec<(u32, u64)>,
}

/// A webhook's data key re-wrapped: replaced only if the stored one is still
/// `from_key` (a customer may register a new webhook, with a key of its own, meanwhile).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRewrap {
    pub customer: CustomerId,
    pub from_key: WrappedDataKey,
    pub to_key: WrappedDataKey,
}

impl fmt::Debug for WebhookRewrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRewrap")
            .field("customer", &self.customer)
            .field("from_version", &self.from_key.kek_version)
            .field("to_version", &self.to_key.kek_version)
            .finish_non_exhaustive()
    }
}

/// A customer's webhook as stored: its address and signing secret sealed by a data key
/// of its own, that key wrapped by a KEK version (`ztx_vault::contact::SealedWebhook`).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredWebhook {
    pub customer: CustomerId,
    pub url_sealed: Vec<u8>,
    pub secret_sealed: Vec<u8>,
    pub data_key: WrappedDataKey,
    pub created_ms: u64,
}

impl fmt::Debug for StoredWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredWebhook")
            .field("customer", &self.customer)
            .field("kek_version", &self.data_key.kek_version)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// The store's id of an API key row (not the public key string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId(pub u64);

/// How requests made with a key are authenticated. Each kind carries exactly the material
/// it needs, so a key cannot be both or neither.
#[derive(Clone, PartialEq, Eq)]
pub enum ApiKeyCredential {
    /// The HMAC-SHA256 secret, already sealed (encrypted) by the caller: the store never
    /// sees the plaintext. Sealed under the key's own data key, stored wrapped beside it;
    /// `None` for a secret an older release sealed under the master key.
    Hmac {
        secret_sealed: Vec<u8>,
        data_key: Option<WrappedDataKey>,
    },
    /// The raw 32-byte Ed25519 public key.
    Ed25519 { public_key: [u8; 32] },
}

impl ApiKeyCredential {
    /// The stored `kind` column: `hmac` or `ed25519`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiKeyCredential::Hmac { .. } => "hmac",
            ApiKeyCredential::Ed25519 { .. } => "ed25519",
        }
    }
}

impl fmt::Debug for ApiKeyCredential {
    // Even sealed, secret material stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiKeyCredential::Hmac {
                secret_sealed,
                data_key,
            } => f
                .debug_struct("Hmac")
                .field(
                    "secret_sealed",
                    &format_args!("<{} bytes redacted>", secret_sealed.len()),
                )
                .field("data_key", data_key)
                .finish(),
            ApiKeyCredential::Ed25519 { public_key } => f
                .debug_struct("Ed25519")
                .field("public_key", &format_args!("{:02x?}", public_key))
                .finish(),
        }
    }
}

/// An API key to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    /// The public key string bots send in `X-MBX-APIKEY`.
    pub api_key: String,
    pub customer: CustomerId,
    pub credential: ApiKeyCredential,
    /// Comma-separated permissions such as `read,trade`; the API parses them.
    pub permissions: String,
    /// Comma-separated IP addresses; empty means any.
    pub ip_allowlist: String,
    pub enabled: bool,
    pub created_ms: u64,
}

/// A stored API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub api_key: String,
    pub customer: CustomerId,
    pub credential: ApiKeyCredential,
    pub permissions: String,
    pub ip_allowlist: String,
    pub enabled: bool,
    pub created_ms: u64,
    /// Set while the key is frozen (by detection, until its customer re-enables it).
    pub frozen_ms: Option<u64>,
}

/// Which order of a customer in a market to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderQuery {
    ById(OrderId),
    /// The most recent order with this client order id.
    ByClientId(String),
}

/// One 1-minute candle of a market. Prices in the quote's smallest units per whole base
/// unit; volumes in each asset's smallest units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    /// The start of the minute, a multiple of 60 000.
    pub open_ms: u64,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub base_volume: Amount,
    pub quote_volume: Amount,
    pub trade_count: u64,
    pub taker_buy_base_volume: Amount,
    pub taker_buy_quote_volume: Amount,
}

/// The id of an admin inbox item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboxId(pub u64);

/// What an inbox item asks the running server to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxCommand {
    /// Credit `amount` of `asset` to `customer` from the external account, with the
    /// caller-chosen `transfer_id` so that processing the item twice credits once.
    Deposit {
        transfer_id: TransferId,
        customer: CustomerId,
        asset: AssetCode,
        amount: Amount,
    },
}

/// How an inbox item ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxCompletion {
    pub completed_ms: u64,
    pub result: String,
}

/// An admin command queued for the running server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxItem {
    pub id: InboxId,
    pub command: InboxCommand,
    pub created_ms: u64,
    /// `None` while the item waits.
    pub completion: Option<InboxCompletion>,
}
