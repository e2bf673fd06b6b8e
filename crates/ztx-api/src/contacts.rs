//! Sealed columns between the vault and the store: sealing a new customer's address and
//! a new API key's secret, and rotating the key-encryption key over every stored data
//! key (customers', API keys' and webhooks').

use ztx_store::{
    ApiKeyId, KeyRewrap, SealedEmailRow, SecretReseal, Store, StoreError, StoredSecret,
    WebhookRewrap, WrappedDataKey,
};
use ztx_vault::contact::{ContactKeys, SealedEmail, SealedSecret};
use ztx_vault::envelope::WrappedKey;
use ztx_vault::{MasterKey, VaultError};

/// Data keys read, re-wrapped and written per transaction.
pub const ROTATION_BATCH: u32 = 1_000;

/// What a rotation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// The version every data key is wrapped under now.
    pub current_version: u32,
    pub rewrapped: u64,
    /// Addresses an older release stored in the clear, sealed on the way.
    pub sealed_addresses: u64,
    /// API keys' data keys re-wrapped.
    pub rewrapped_secret_keys: u64,
    /// HMAC secrets an older release sealed under the master key, sealed anew under a
    /// data key of their own.
    pub resealed_secrets: u64,
    /// Webhooks' data keys re-wrapped.
    pub rewrapped_webhook_keys: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("customer {customer}'s data key: {source}")]
    Key {
        customer: u64,
        #[source]
        source: VaultError,
    },
    #[error("API key {id}'s secret: {source}")]
    Secret {
        id: u64,
        #[source]
        source: VaultError,
    },
    #[error("customer {customer}'s webhook key: {source}")]
    Webhook {
        customer: u64,
        #[source]
        source: VaultError,
    },
}

/// The stored form of a sealed secret's data key.
pub fn stored_key(key: WrappedKey) -> WrappedDataKey {
    WrappedDataKey {
        kek_version: key.kek_version,
        wrapped: key.sealed,
    }
}

/// The sealing a stored secret holds, when it is under a data key.
pub fn secret_sealing(secret_sealed: &[u8], key: &WrappedDataKey) -> SealedSecret {
    SealedSecret {
        sealed: secret_sealed.to_vec(),
        key: WrappedKey {
            kek_version: key.kek_version,
            sealed: key.wrapped.clone(),
        },
    }
}

/// The row a sealing is stored as.
pub fn stored(sealed: SealedEmail) -> SealedEmailRow {
    SealedEmailRow {
        sealed: sealed.sealed,
        kek_version: sealed.key.kek_version,
        data_key: sealed.key.sealed,
    }
}

/// The sealing a stored row holds.
pub fn sealing(row: &SealedEmailRow) -> SealedEmail {
    SealedEmail {
        sealed: row.sealed.clone(),
        key: WrappedKey {
            kek_version: row.kek_version,
            sealed: row.data_key.clone(),
        },
    }
}

/// Re-wraps every data key not under the keys' current version, a batch per
/// transaction (each key only if nobody moved it meanwhile), then seals addresses
/// stored in the clear. Online: the data the keys seal is not read or rewritten.
pub fn rotate(
    store: &mut dyn Store,
    keys: &ContactKeys,
    master: &MasterKey,
) -> Result<Rotation, RotationError> {
    let current_version = keys.keks().versions().last().copied().unwrap_or(0);
    let mut rotation = Rotation {
        current_version,
        ..Rotation::default()
    };
    let mut after = ztx_core::CustomerId(0);
    loop {
        let batch = store.customer_keys(after, current_version, ROTATION_BATCH)?;
        let Some(last) = batch.last() else { break };
        after = last.customer;
        let mut rewraps = Vec::with_capacity(batch.len());
        for row in &batch {
            let wrapped = WrappedKey {
                kek_version: row.kek_version,
                sealed: row.data_key.clone(),
            };
            let key = |source| RotationError::Key {
                customer: row.customer.0,
                source,
            };
            if let Some(new) = keys.rewrap(row.customer.0, &wrapped).map_err(key)? {
                rewraps.push(KeyRewrap {
                    customer: row.customer,
                    from_version: row.kek_version,
                    to_version: new.kek_version,
                    data_key: new.sealed,
                });
            }
        }
        rotation.rewrapped = rotation
            .rewrapped
            .saturating_add(store.rewrap_customer_keys(&rewraps)?);
    }
    rotation.sealed_addresses = seal_plain(store, keys)?;
    let (rewrapped, resealed) = rotate_secrets(store, keys, master)?;
    rotation.rewrapped_secret_keys = rewrapped;
    rotation.resealed_secrets = resealed;
    rotation.rewrapped_webhook_keys = rotate_webhooks(store, keys, current_version)?;
    Ok(rotation)
}

/// Re-wraps every webhook's data key not under `current_version`, a batch per
/// transaction, each only if the customer did not register another meanwhile; how many.
pub fn rotate_webhooks(
    store: &mut dyn Store,
    keys: &ContactKeys,
    current_version: u32,
) -> Result<u64, RotationError> {
    let mut rewrapped = 0u64;
    let mut after = ztx_core::CustomerId(0);
    loop {
        let batch = store.webhook_keys(after, current_version, ROTATION_BATCH)?;
        let Some(last) = batch.last() else { break };
        after = last.customer;
        let mut rewraps = Vec::with_capacity(batch.len());
        for row in &batch {
            let from = WrappedKey {
                kek_version: row.kek_version,
                sealed: row.data_key.clone(),
            };
            let new = keys
                .rewrap_webhook_key(row.customer.0, &from)
                .map_err(|source| RotationError::Webhook {
                    customer: row.customer.0,
                    source,
                })?;
            if let Some(new) = new {
                rewraps.push(WebhookRewrap {
                    customer: row.customer,
                    from_key: stored_key(from),
                    to_key: stored_key(new),
                });
            }
        }
        rewrapped = rewrapped.saturating_add(store.rewrap_webhook_keys(&rewraps)?);
    }
    Ok(rewrapped)
}

/// Re-wraps every API key's data key not under the current version, and seals anew
/// under a data key of its own every secret an older release sealed under the master
/// key; a batch per transaction, each row only if nobody changed it meanwhile. How many
/// of each. `ztx serve` runs it at start, so that secrets leave the master key.
pub fn rotate_secrets(
    store: &mut dyn Store,
    keys: &ContactKeys,
    master: &MasterKey,
) -> Result<(u64, u64), RotationError> {
    let current = keys.keks().versions().last().copied().unwrap_or(0);
    let (mut rewrapped, mut resealed) = (0u64, 0u64);
    let mut after = ApiKeyId(0);
    loop {
        let batch = store.api_key_secrets(after, current, ROTATION_BATCH)?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        let mut reseals = Vec::with_capacity(batch.len());
        for row in &batch {
            let failed = |source| RotationError::Secret {
                id: row.id.0,
                source,
            };
            if let Some(reseal) = reseal(keys, master, row).map_err(failed)? {
                reseals.push(reseal);
            }
        }
        let legacy = reseals.iter().filter(|r| r.from_version.is_none()).count();
        let changed = store.reseal_api_key_secrets(&reseals)?;
        // Counted as asked: a row another rotation moved meanwhile is neither.
        let legacy = u64::try_from(legacy).unwrap_or(u64::MAX).min(changed);
        resealed = resealed.saturating_add(legacy);
        rewrapped = rewrapped.saturating_add(changed - legacy);
    }
    Ok((rewrapped, resealed))
}

/// What a stored secret becomes: its data key re-wrapped, or (under the master key) the
/// secret sealed anew; `None` when it already is as it should be.
fn reseal(
    keys: &ContactKeys,
    master: &MasterKey,
    row: &StoredSecret,
) -> Result<Option<SecretReseal>, VaultError> {
    match &row.data_key {
        Some(key) => {
            let wrapped = WrappedKey {
                kek_version: key.kek_version,
                sealed: key.wrapped.clone(),
            };
            Ok(keys
                .rewrap_secret_key(&row.api_key, &wrapped)?
                .map(|new| SecretReseal {
                    id: row.id,
                    from_version: Some(key.kek_version),
                    secret_sealed: row.secret_sealed.clone(),
                    data_key: stored_key(new),
                }))
        }
        None => {
            let secret =
                master.open(&row.secret_sealed, &crate::state::secret_aad(&row.api_key))?;
            let sealed = keys.seal_secret(&row.api_key, &secret)?;
            Ok(Some(SecretReseal {
                id: row.id,
                from_version: None,
                secret_sealed: sealed.sealed,
                data_key: stored_key(sealed.key),
            }))
        }
    }
}

/// Seals every address an older release stored in the clear; how many. `ztx serve`
/// runs it at start, so that the duplicate check (by blind index) sees every address
/// before the first customer is created.
pub fn seal_plain(store: &mut dyn Store, keys: &ContactKeys) -> Result<u64, RotationError> {
    let mut sealed_addresses = 0u64;
    loop {
        let plain = store.plain_emails(ROTATION_BATCH)?;
        if plain.is_empty() {
            return Ok(sealed_addresses);
        }
        for (customer, email) in plain {
            let sealed =
                keys.seal_email(customer.0, &email)
                    .map_err(|source| RotationError::Key {
                        customer: customer.0,
                        source,
                    })?;
            if store.seal_plain_email(customer, &keys.email_index(&email), &stored(sealed))? {
                sealed_addresses = sealed_addresses.saturating_add(1);
            }
        }
    }
}
