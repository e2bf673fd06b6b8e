//! Customers' contact data between the vault and the store: sealing a new customer's
//! address, and rotating the key-encryption key over every stored data key.

use ztx_store::{KeyRewrap, SealedEmailRow, Store, StoreError};
use ztx_vault::VaultError;
use ztx_vault::contact::{ContactKeys, SealedEmail};
use ztx_vault::envelope::WrappedKey;

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
pub fn rotate(store: &mut dyn Store, keys: &ContactKeys) -> Result<Rotation, RotationError> {
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
    Ok(rotation)
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
