//! Customers' contact data at rest: each customer's e-mail address sealed by their own
//! data key ([`crate::envelope`]), which is stored wrapped by the current
//! key-encryption key; and the address's blind index, the one way to find a customer
//! by address (and to refuse a second customer with it).
//!
//! Key files, in the data directory beside the master key, each readable by the
//! server's user alone: `kek` (key-encryption-key versions, `<version> <hex>` a line;
//! see [`LocalKeks`]) and `email-index.key` (the blind index's key, 64 hex digits; it is
//! never rotated, since every stored index would have to be recomputed from addresses
//! nobody can read without the data keys).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::envelope::{DataKey, IndexKey, KeyEncryption, LocalKeks, WrappedKey};
use crate::{Aad, MasterKey, VaultError};

/// The key files' names in the data directory.
pub const KEK_FILE: &str = "kek";
pub const EMAIL_INDEX_FILE: &str = "email-index.key";

/// Where the address is stored, bound into its sealing with the customer's number.
const TABLE: &str = "customers";
const COLUMN: &str = "email_sealed";
/// Data keys are never replaced (only re-wrapped), so what they seal has one version.
const DATA_KEY_VERSION: u32 = 1;
/// Where an API key's HMAC secret is stored. Version 1 of that column was sealed under
/// the master key (an older release); version 2 is sealed under the key's data key.
const SECRET_TABLE: &str = "api_keys";
const SECRET_COLUMN: &str = "secret_sealed";
const SECRET_VERSION: u32 = 2;
/// Where a customer's webhook is stored (one a customer, keyed by the customer).
const WEBHOOK_TABLE: &str = "webhooks";
const WEBHOOK_URL_COLUMN: &str = "url_sealed";
const WEBHOOK_SECRET_COLUMN: &str = "secret_sealed";

/// An API key's HMAC secret as stored: sealed by a data key of that key's own (the
/// exchange opens secrets on every key-cache miss, and may not read `customer_keys`),
/// and that data key wrapped by a KEK version.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub sealed: Vec<u8>,
    pub key: WrappedKey,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .field("kek_version", &self.key.kek_version)
            .finish()
    }
}

/// A customer's webhook as stored: the address notifications are posted to and the
/// secret their signatures are made with, both sealed by a data key of the webhook's own
/// (the sender opens them and may not read `customer_keys`), that key wrapped by a KEK
/// version.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedWebhook {
    pub url_sealed: Vec<u8>,
    pub secret_sealed: Vec<u8>,
    pub key: WrappedKey,
}

impl std::fmt::Debug for SealedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedWebhook")
            .field(
                "url_sealed",
                &format_args!("<{} bytes>", self.url_sealed.len()),
            )
            .field("kek_version", &self.key.kek_version)
            .finish_non_exhaustive()
    }
}

/// A webhook opened for delivery.
pub struct OpenedWebhook {
    pub url: Zeroizing<String>,
    pub secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address may carry a token of its own (many receivers put one in the path).
        f.write_str("OpenedWebhook { .. }")
    }
}

/// An e-mail address as stored: sealed by the customer's data key, and that key
/// wrapped by a KEK version.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEmail {
    pub sealed: Vec<u8>,
    pub key: WrappedKey,
}

impl std::fmt::Debug for SealedEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedEmail")
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .field("kek_version", &self.key.kek_version)
            .finish()
    }
}

/// The keys that seal and find contact data. With a key file, new versions another
/// process (`ztx vault rotate`) added are picked up: before each sealing, and when
/// opening meets a version not held.
#[derive(Debug)]
pub struct ContactKeys {
    keks: std::sync::RwLock<LocalKeks>,
    index: IndexKey,
    kek_path: Option<PathBuf>,
}

impl ContactKeys {
    pub fn new(keks: LocalKeks, index: IndexKey) -> Self {
        Self {
            keks: std::sync::RwLock::new(keks),
            index,
            kek_path: None,
        }
    }

    /// Fresh keys, held in memory only (tests, benchmarks).
    pub fn generate() -> Self {
        Self::new(LocalKeks::generate(), IndexKey::generate())
    }

    /// Loads `kek` and `email-index.key` from `dir`, creating each (private, exclusively)
    /// on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, VaultError> {
        let kek_path = dir.join(KEK_FILE);
        let keks = match LocalKeks::load(&kek_path) {
            Err(VaultError::KeyFile { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let keks = LocalKeks::generate();
                write_new(&kek_path, &keks.to_text())?;
                keks
            }
            other => other?,
        };
        // The index key has the master key's format and creation rules.
        let index_key = MasterKey::load_or_create(&dir.join(EMAIL_INDEX_FILE))?;
        Ok(Self {
            keks: std::sync::RwLock::new(keks),
            index: IndexKey::from_hex(&index_key.to_hex())?,
            kek_path: Some(kek_path),
        })
    }

    /// A copy of the versions held now.
    pub fn keks(&self) -> LocalKeks {
        self.read().clone()
    }

    /// Whether the versions come from a key file (which a rotation may add to).
    pub fn has_key_file(&self) -> bool {
        self.kek_path.is_some()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LocalKeks> {
        // A panic while holding the lock cannot leave the versions half-replaced
        // (replacement is one assignment), so a poisoned lock is still sound to read.
        self.keks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a KEK version, which becomes current, and saves the key file (replaced
    /// atomically: written beside it, synced, renamed).
    ///
    /// With a key file, under an exclusive lock on `kek.lock` and from the file as it is
    /// then (not as this process loaded it): two rotations at once each add a version
    /// of their own, and neither replaces the other's.
    pub fn add_kek_version(&self) -> Result<u32, VaultError> {
        let _lock = match &self.kek_path {
            Some(path) => {
                let lock_path = path.with_extension("lock");
                let io_err = |source| VaultError::KeyFile {
                    path: lock_path.clone(),
                    source,
                };
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(io_err)?;
                file.lock().map_err(io_err)?;
                self.reload()?;
                Some(file)
            }
            None => None,
        };
        let mut keks = self.keks();
        let version = keks.add_version()?;
        if let Some(path) = &self.kek_path {
            let staged = path.with_extension("new");
            // A stale staging file from a crash is ours to replace.
            let _ = std::fs::remove_file(&staged);
            write_new(&staged, &keks.to_text())?;
            std::fs::rename(&staged, path).map_err(|source| VaultError::KeyFile {
                path: path.clone(),
                source,
            })?;
        }
        *self
            .keks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keks;
        Ok(version)
    }

    /// Reads the key file again (another process may have added a version).
    pub fn reload(&self) -> Result<(), VaultError> {
        if let Some(path) = &self.kek_path {
            let keks = LocalKeks::load(path)?;
            *self
                .keks
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = keks;
        }
        Ok(())
    }

    /// The data key `wrapped` for `owner`, reading the key file again when it names a
    /// version not held (another process may have added it).
    fn unwrap_for(&self, wrapped: &WrappedKey, owner: &[u8]) -> Result<DataKey, VaultError> {
        // The read lock is let go before a reload takes the write lock.
        let unwrapped = self.read().unwrap(wrapped, owner);
        match unwrapped {
            Err(VaultError::UnknownKekVersion(_)) if self.kek_path.is_some() => {
                self.reload()?;
                self.read().unwrap(wrapped, owner)
            }
            other => other,
        }
    }

    /// The address's blind index, as stored (hex). Addresses are compared as given:
    /// callers normalise them first.
    pub fn email_index(&self, email: &str) -> String {
        hex::encode(self.index.blind_index("customers.email", email.as_bytes()))
    }

    /// Seals customer `customer`'s address under a fresh data key of theirs.
    pub fn seal_email(&self, customer: u64, email: &str) -> Result<SealedEmail, VaultError> {
        // Under the newest version there is, even if another process added it.
        self.reload()?;
        let key = DataKey::generate();
        let row = customer.to_be_bytes();
        Ok(SealedEmail {
            sealed: key.seal(email.as_bytes(), &aad(&row)),
            key: self.read().wrap(&key, &row)?,
        })
    }

    /// Opens what [`ContactKeys::seal_email`] sealed for the same customer.
    pub fn open_email(&self, customer: u64, sealed: &SealedEmail) -> Result<String, VaultError> {
        let row = customer.to_be_bytes();
        let key = self.unwrap_for(&sealed.key, &row)?;
        let bytes = key.open(&sealed.sealed, &aad(&row))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| VaultError::Unauthentic)
    }

    /// Seals API key `api_key`'s HMAC secret under a fresh data key of the key's own.
    pub fn seal_secret(&self, api_key: &str, secret: &[u8]) -> Result<SealedSecret, VaultError> {
        self.reload()?;
        let key = DataKey::generate();
        Ok(SealedSecret {
            sealed: key.seal(secret, &secret_aad(api_key)),
            key: self.read().wrap(&key, &secret_owner(api_key))?,
        })
    }

    /// Opens what [`ContactKeys::seal_secret`] sealed for the same key.
    pub fn open_secret(
        &self,
        api_key: &str,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let owner = secret_owner(api_key);
        let key = self.unwrap_for(&sealed.key, &owner)?;
        key.open(&sealed.sealed, &secret_aad(api_key))
    }

    /// Seals customer `customer`'s webhook (its address and signing secret) under a
    /// fresh data key of the webhook's own.
    pub fn seal_webhook(
        &self,
        customer: u64,
        url: &str,
        secret: &[u8],
    ) -> Result<SealedWebhook, VaultError> {
        self.reload()?;
        let key = DataKey::generate();
        let row = customer.to_be_bytes();
        Ok(SealedWebhook {
            url_sealed: key.seal(url.as_bytes(), &webhook_aad(WEBHOOK_URL_COLUMN, &row)),
            secret_sealed: key.seal(secret, &webhook_aad(WEBHOOK_SECRET_COLUMN, &row)),
            key: self.read().wrap(&key, &webhook_owner(customer))?,
        })
    }

    /// Opens what [`ContactKeys::seal_webhook`] sealed for the same customer.
    pub fn open_webhook(
        &self,
        customer: u64,
        sealed: &SealedWebhook,
    ) -> Result<OpenedWebhook, VaultError> {
        let owner = webhook_owner(customer);
        let key = self.unwrap_for(&sealed.key, &owner)?;
        let row = customer.to_be_bytes();
        let url = key.open(&sealed.url_sealed, &webhook_aad(WEBHOOK_URL_COLUMN, &row))?;
        let secret = key.open(
            &sealed.secret_sealed,
            &webhook_aad(WEBHOOK_SECRET_COLUMN, &row),
        )?;
        Ok(OpenedWebhook {
            url: Zeroizing::new(
                String::from_utf8(url.to_vec()).map_err(|_| VaultError::Unauthentic)?,
            ),
            secret,
        })
    }

    /// Customer `customer`'s webhook data key wrapped again under the current version;
    /// `None` when it already is.
    pub fn rewrap_webhook_key(
        &self,
        customer: u64,
        key: &WrappedKey,
    ) -> Result<Option<WrappedKey>, VaultError> {
        crate::envelope::rewrap(&*self.read(), key, &webhook_owner(customer))
    }

    /// API key `api_key`'s data key wrapped again under the current version; `None` when
    /// it already is.
    pub fn rewrap_secret_key(
        &self,
        api_key: &str,
        key: &WrappedKey,
    ) -> Result<Option<WrappedKey>, VaultError> {
        crate::envelope::rewrap(&*self.read(), key, &secret_owner(api_key))
    }

    /// The customer's data key wrapped again under the current version; `None` when it
    /// already is.
    pub fn rewrap(
        &self,
        customer: u64,
        key: &WrappedKey,
    ) -> Result<Option<WrappedKey>, VaultError> {
        crate::envelope::rewrap(&*self.read(), key, &customer.to_be_bytes())
    }
}

fn aad(row: &[u8]) -> Aad<'_> {
    Aad {
        table: TABLE,
        column: COLUMN,
        row_key: row,
        key_version: DATA_KEY_VERSION,
    }
}

/// Whom an API key's data key is wrapped for: the key's public string, in a namespace of
/// its own (a customer's is its number's eight bytes).
fn secret_owner(api_key: &str) -> Vec<u8> {
    [b"api_keys/".as_slice(), api_key.as_bytes()].concat()
}

fn secret_aad(api_key: &str) -> Aad<'_> {
    Aad {
        table: SECRET_TABLE,
        column: SECRET_COLUMN,
        row_key: api_key.as_bytes(),
        key_version: SECRET_VERSION,
    }
}

/// Whom a webhook's data key is wrapped for: its customer's number, in a namespace of
/// its own (neither a customer's data key nor an API key's stands in for it).
fn webhook_owner(customer: u64) -> Vec<u8> {
    [b"webhooks/".as_slice(), &customer.to_be_bytes()].concat()
}

fn webhook_aad<'a>(column: &'a str, row: &'a [u8]) -> Aad<'a> {
    Aad {
        table: WEBHOOK_TABLE,
        column,
        row_key: row,
        key_version: DATA_KEY_VERSION,
    }
}

fn write_new(path: &Path, text: &Zeroizing<String>) -> Result<(), VaultError> {
    let io_err = |source| VaultError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = crate::create_private(path).map_err(io_err)?;
    file.write_all(text.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn an_address_opens_for_its_customer_only_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ContactKeys::load_or_create(dir.path()).unwrap();
        let sealed = keys.seal_email(7, "a@example.com").unwrap();
        assert_eq!(keys.open_email(7, &sealed).unwrap(), "a@example.com");
        // Moved to another customer's row, neither the key nor the address opens.
        assert!(keys.open_email(8, &sealed).is_err());
        let other = keys.seal_email(8, "b@example.com").unwrap();
        let swapped = SealedEmail {
            sealed: other.sealed.clone(),
            key: sealed.key.clone(),
        };
        assert!(keys.open_email(7, &swapped).is_err());
        // A new KEK version: the old wrapping still opens; the re-wrapped one too.
        assert_eq!(keys.add_kek_version().unwrap(), 2);
        assert_eq!(keys.open_email(7, &sealed).unwrap(), "a@example.com");
        let key = keys.rewrap(7, &sealed.key).unwrap().unwrap();
        assert_eq!(key.kek_version, 2);
        assert!(keys.rewrap(7, &key).unwrap().is_none());
        let rewrapped = SealedEmail { key, ..sealed };
        // Another process reading the saved file gets both versions.
        let again = ContactKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(again.keks().versions(), vec![1, 2]);
        assert_eq!(again.open_email(7, &rewrapped).unwrap(), "a@example.com");
        assert_eq!(
            again.email_index("a@example.com"),
            keys.email_index("a@example.com")
        );
        assert_ne!(
            keys.email_index("a@example.com"),
            keys.email_index("b@example.com")
        );
    }

    #[test]
    fn an_api_secret_opens_for_its_key_only_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ContactKeys::load_or_create(dir.path()).unwrap();
        let sealed = keys.seal_secret("keyA", b"s3cret").unwrap();
        assert_eq!(
            keys.open_secret("keyA", &sealed).unwrap().as_slice(),
            b"s3cret"
        );
        assert!(!format!("{sealed:?}").contains("s3cret"));
        // Moved to another key's row: neither the wrapped key nor the secret opens.
        assert!(keys.open_secret("keyB", &sealed).is_err());
        let other = keys.seal_secret("keyB", b"other").unwrap();
        let swapped = SealedSecret {
            sealed: other.sealed,
            key: sealed.key.clone(),
        };
        assert!(keys.open_secret("keyA", &swapped).is_err());
        // Nor does a customer's wrapped data key stand in for it, or the other way.
        let email = keys.seal_email(7, "a@example.com").unwrap();
        let borrowed = SealedSecret {
            sealed: sealed.sealed.clone(),
            key: email.key.clone(),
        };
        assert!(keys.open_secret("keyA", &borrowed).is_err());
        // Rotated: the old wrapping opens, the re-wrapped one too.
        assert_eq!(keys.add_kek_version().unwrap(), 2);
        let key = keys
            .rewrap_secret_key("keyA", &sealed.key)
            .unwrap()
            .unwrap();
        assert_eq!(key.kek_version, 2);
        assert!(keys.rewrap_secret_key("keyA", &key).unwrap().is_none());
        assert_eq!(
            keys.open_secret("keyA", &sealed).unwrap().as_slice(),
            b"s3cret"
        );
        let rewrapped = SealedSecret { key, ..sealed };
        assert_eq!(
            keys.open_secret("keyA", &rewrapped).unwrap().as_slice(),
            b"s3cret"
        );
    }

    #[test]
    fn a_webhook_opens_for_its_customer_only_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ContactKeys::load_or_create(dir.path()).unwrap();
        let sealed = keys
            .seal_webhook(7, "https://hooks.example.com/t0ken", b"whsec")
            .unwrap();
        let opened = keys.open_webhook(7, &sealed).unwrap();
        assert_eq!(opened.url.as_str(), "https://hooks.example.com/t0ken");
        assert_eq!(opened.secret.as_slice(), b"whsec");
        assert!(!format!("{sealed:?}{opened:?}").contains("t0ken"));
        // Another customer's row: nothing opens.
        assert!(keys.open_webhook(8, &sealed).is_err());
        // The address and the secret cannot trade places.
        let swapped = SealedWebhook {
            url_sealed: sealed.secret_sealed.clone(),
            secret_sealed: sealed.url_sealed.clone(),
            key: sealed.key.clone(),
        };
        assert!(keys.open_webhook(7, &swapped).is_err());
        // The customer's own data key does not stand in for the webhook's.
        let email = keys.seal_email(7, "a@example.com").unwrap();
        let borrowed = SealedWebhook {
            key: email.key.clone(),
            ..sealed.clone()
        };
        assert!(keys.open_webhook(7, &borrowed).is_err());
        assert_eq!(keys.add_kek_version().unwrap(), 2);
        let key = keys.rewrap_webhook_key(7, &sealed.key).unwrap().unwrap();
        assert_eq!(key.kek_version, 2);
        assert!(keys.rewrap_webhook_key(7, &key).unwrap().is_none());
        let rewrapped = SealedWebhook { key, ..sealed };
        let again = ContactKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(
            again.open_webhook(7, &rewrapped).unwrap().url.as_str(),
            "https://hooks.example.com/t0ken"
        );
    }

    #[test]
    fn two_rotations_at_once_each_add_a_version_and_lose_none() {
        let dir = tempfile::tempdir().unwrap();
        let a = ContactKeys::load_or_create(dir.path()).unwrap();
        // Loaded before either adds: both hold version 1 only.
        let b = ContactKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(a.add_kek_version().unwrap(), 2);
        let sealed_by_a = a.seal_email(1, "a@example.com").unwrap();
        // B adds from the file as it is now, not from what it loaded.
        assert_eq!(b.add_kek_version().unwrap(), 3);
        let again = ContactKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(again.keks().versions(), vec![1, 2, 3]);
        assert_eq!(sealed_by_a.key.kek_version, 2);
        assert_eq!(again.open_email(1, &sealed_by_a).unwrap(), "a@example.com");
    }

    #[test]
    fn debug_shows_no_key_and_no_address() {
        let keys = ContactKeys::generate();
        let sealed = keys.seal_email(1, "secret@example.com").unwrap();
        let text = format!("{keys:?} {sealed:?}");
        assert!(!text.contains("secret@"), "{text}");
        assert!(
            text.contains("redacted") || text.contains("versions"),
            "{text}"
        );
    }
}
