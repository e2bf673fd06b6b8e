//! Envelope encryption: a data key per customer seals that customer's columns; the data
//! key is stored only wrapped (sealed) by a versioned key-encryption key (KEK) kept
//! outside the database. Rotating the KEK re-wraps the data keys — 32 bytes each, online,
//! without touching the data they seal — and data keys wrapped by an older version still
//! unwrap while that version is kept. Equality look-ups on encrypted columns (an e-mail
//! address) go through a blind index: a keyed HMAC of the value, per column.
//!
//! [`KeyEncryption`] is the seam for a KMS: [`LocalKeks`] holds the versions itself (a key
//! file or an environment variable); a KMS implementation would send the wrap and unwrap
//! calls away and never hold the KEK.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Aad, KEY_LEN, MasterKey, VaultError};

/// The table and column the wrapped data keys live in (bound into the wrapping's
/// associated data, with the owner and the KEK version).
const WRAP_TABLE: &str = "customer_keys";
const WRAP_COLUMN: &str = "data_key";

/// One customer's data key. Zeroed on drop; `Debug` redacts.
#[derive(Clone)]
pub struct DataKey(MasterKey);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(**redacted**)")
    }
}

impl DataKey {
    pub fn generate() -> DataKey {
        DataKey(MasterKey::generate())
    }

    /// Seals one column value of the key's owner, bound to where it is stored.
    pub fn seal(&self, plaintext: &[u8], aad: &Aad<'_>) -> Vec<u8> {
        self.0.seal(plaintext, aad)
    }

    pub fn open(&self, sealed: &[u8], aad: &Aad<'_>) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.0.open(sealed, aad)
    }
}

/// A data key as stored: sealed by KEK version `kek_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: u32,
    pub sealed: Vec<u8>,
}

/// What wraps data keys: local key versions today, a KMS later.
pub trait KeyEncryption: Send + Sync {
    /// The version new wrappings use.
    fn current_version(&self) -> u32;
    /// Wraps `key` for `owner` (e.g. the customer number's bytes) under the current
    /// version.
    fn wrap(&self, key: &DataKey, owner: &[u8]) -> Result<WrappedKey, VaultError>;
    /// Unwraps a key wrapped for `owner`; fails for another owner, a tampered or moved
    /// value, or a version no longer held.
    fn unwrap(&self, wrapped: &WrappedKey, owner: &[u8]) -> Result<DataKey, VaultError>;
}

/// Wraps again under the current version, unless it already is. Returns `None` then.
pub fn rewrap(
    keks: &dyn KeyEncryption,
    wrapped: &WrappedKey,
    owner: &[u8],
) -> Result<Option<WrappedKey>, VaultError> {
    if wrapped.kek_version == keks.current_version() {
        return Ok(None);
    }
    let key = keks.unwrap(wrapped, owner)?;
    keks.wrap(&key, owner).map(Some)
}

fn wrap_aad(owner: &[u8], version: u32) -> Aad<'_> {
    Aad {
        table: WRAP_TABLE,
        column: WRAP_COLUMN,
        row_key: owner,
        key_version: version,
    }
}

/// KEK versions held locally. Text form, one version a line: `<version> <64 hex digits>`;
/// the highest version is current.
#[derive(Clone)]
pub struct LocalKeks {
    keys: BTreeMap<u32, MasterKey>,
}

impl fmt::Debug for LocalKeks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeks")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalKeks {
    /// A first version, freshly generated.
    pub fn generate() -> LocalKeks {
        LocalKeks {
            keys: BTreeMap::from([(1, MasterKey::generate())]),
        }
    }

    /// Parses the text form (a key file's or an environment variable's content).
    pub fn from_text(text: &str) -> Result<LocalKeks, VaultError> {
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || VaultError::BadKekLine {
                line: n.saturating_add(1),
            };
            let (version, key) = line.split_once(' ').ok_or_else(bad)?;
            let version: u32 = version.parse().map_err(|_| bad())?;
            if version == 0
                || keys
                    .insert(version, MasterKey::from_hex(key).map_err(|_| bad())?)
                    .is_some()
            {
                return Err(bad());
            }
        }
        if keys.is_empty() {
            return Err(VaultError::NoKek);
        }
        Ok(LocalKeks { keys })
    }

    /// Reads a key file (refusing one readable by group or others).
    pub fn load(path: &Path) -> Result<LocalKeks, VaultError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            VaultError::KeyFile {
                path: path.to_path_buf(),
                source,
            }
        })?);
        crate::check_permissions(path)?;
        LocalKeks::from_text(&text).map_err(|e| VaultError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The text form, for the key file. Zeroed when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        // Sized up front, so that no reallocation leaves a copy of a key behind.
        let mut text = Zeroizing::new(String::with_capacity(self.keys.len() * (11 + 1 + 64 + 1)));
        for (version, key) in &self.keys {
            text.push_str(&version.to_string());
            text.push(' ');
            text.push_str(key.to_hex().as_str());
            text.push('\n');
        }
        text
    }

    /// Adds a fresh version, which becomes current; the older ones stay for unwrapping.
    pub fn add_version(&mut self) -> Result<u32, VaultError> {
        let next = self
            .current_version()
            .checked_add(1)
            .ok_or(VaultError::UnknownKekVersion(u32::MAX))?;
        self.keys.insert(next, MasterKey::generate());
        Ok(next)
    }

    /// Drops a version (once nothing is wrapped by it any more). The current one stays.
    pub fn retire(&mut self, version: u32) -> bool {
        version != self.current_version() && self.keys.remove(&version).is_some()
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }
}

impl KeyEncryption for LocalKeks {
    fn current_version(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    fn wrap(&self, key: &DataKey, owner: &[u8]) -> Result<WrappedKey, VaultError> {
        let version = self.current_version();
        let kek = self
            .keys
            .get(&version)
            .ok_or(VaultError::UnknownKekVersion(version))?;
        Ok(WrappedKey {
            kek_version: version,
            sealed: kek.seal(&key.0.bytes, &wrap_aad(owner, version)),
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey, owner: &[u8]) -> Result<DataKey, VaultError> {
        let kek = self
            .keys
            .get(&wrapped.kek_version)
            .ok_or(VaultError::UnknownKekVersion(wrapped.kek_version))?;
        let bytes = kek.open(&wrapped.sealed, &wrap_aad(owner, wrapped.kek_version))?;
        let mut key = [0u8; KEY_LEN];
        if bytes.len() != KEY_LEN {
            return Err(VaultError::Unauthentic);
        }
        key.copy_from_slice(&bytes);
        let data_key = DataKey(MasterKey { bytes: key });
        key.zeroize();
        Ok(data_key)
    }
}

/// The key of the blind indexes. Zeroed on drop; `Debug` redacts.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct IndexKey([u8; KEY_LEN]);

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(**redacted**)")
    }
}

impl IndexKey {
    pub fn from_hex(text: &str) -> Result<IndexKey, VaultError> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| VaultError::BadKeyFormat)?;
        Ok(IndexKey(bytes))
    }

    pub fn generate() -> IndexKey {
        use rand::RngCore as _;
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        IndexKey(bytes)
    }

    /// The blind index of `value` in `column`: HMAC-SHA256 over a domain tag, the
    /// column's name (length-prefixed) and the value. Equal values in one column have
    /// equal indexes; nothing else about the value can be learnt without the key.
    pub fn blind_index(&self, column: &str, value: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_hmac());
        mac.update(b"ztx-vault/blind-index/v1");
        mac.update(&(column.len() as u64).to_be_bytes());
        mac.update(column.as_bytes());
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

/// HMAC takes keys of any length, so `new_from_slice` cannot fail; this keeps the
/// signature total without a panic path the lints forbid.
fn unreachable_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn aad(row: &[u8]) -> Aad<'_> {
        Aad {
            table: "customers",
            column: "email",
            row_key: row,
            key_version: 1,
        }
    }

    #[test]
    fn a_wrapped_key_opens_for_its_owner_only() {
        let keks = LocalKeks::generate();
        let key = DataKey::generate();
        let wrapped = keks.wrap(&key, b"customer 7").unwrap();
        let sealed = key.seal(b"alice@example.com", &aad(b"7"));
        let back = keks.unwrap(&wrapped, b"customer 7").unwrap();
        assert_eq!(
            &*back.open(&sealed, &aad(b"7")).unwrap(),
            b"alice@example.com"
        );
        assert!(matches!(
            keks.unwrap(&wrapped, b"customer 8"),
            Err(VaultError::Unauthentic)
        ));
        // A ciphertext copied into another row does not open either.
        assert!(back.open(&sealed, &aad(b"8")).is_err());
    }

    #[test]
    fn rotation_rewraps_keys_and_old_data_stays_readable() {
        let mut keks = LocalKeks::generate();
        let key = DataKey::generate();
        let old = keks.wrap(&key, b"c1").unwrap();
        let sealed = key.seal(b"secret", &aad(b"1"));
        assert_eq!(keks.add_version().unwrap(), 2);
        // Until rewrapped, the old version still unwraps.
        assert_eq!(old.kek_version, 1);
        keks.unwrap(&old, b"c1").unwrap();
        let new = rewrap(&keks, &old, b"c1").unwrap().unwrap();
        assert_eq!(new.kek_version, 2);
        assert_eq!(rewrap(&keks, &new, b"c1").unwrap(), None);
        assert!(keks.retire(1));
        assert!(!keks.retire(2), "the current version cannot be retired");
        assert!(matches!(
            keks.unwrap(&old, b"c1"),
            Err(VaultError::UnknownKekVersion(1))
        ));
        let key = keks.unwrap(&new, b"c1").unwrap();
        assert_eq!(&*key.open(&sealed, &aad(b"1")).unwrap(), b"secret");
    }

    #[test]
    fn a_wrapping_relabelled_to_another_version_does_not_open() {
        let mut keks = LocalKeks::generate();
        keks.add_version().unwrap();
        let wrapped = keks.wrap(&DataKey::generate(), b"c").unwrap();
        let relabelled = WrappedKey {
            kek_version: 1,
            ..wrapped
        };
        assert!(keks.unwrap(&relabelled, b"c").is_err());
    }

    #[test]
    fn the_key_file_text_round_trips_and_bad_lines_are_named() {
        let mut keks = LocalKeks::generate();
        keks.add_version().unwrap();
        let again = LocalKeks::from_text(&keks.to_text()).unwrap();
        assert_eq!(again.versions(), vec![1, 2]);
        let wrapped = keks.wrap(&DataKey::generate(), b"x").unwrap();
        again.unwrap(&wrapped, b"x").unwrap();
        let line = |text: &str| match LocalKeks::from_text(text) {
            Err(VaultError::BadKekLine { line }) => line,
            other => panic!("{other:?}"),
        };
        assert_eq!(line("# keys\n1 zz\n"), 2);
        assert_eq!(line(&format!("0 {}\n", "ab".repeat(32))), 1);
        assert_eq!(line(&format!("1 {k}\n1 {k}\n", k = "ab".repeat(32))), 2);
        assert!(matches!(
            LocalKeks::from_text("\n# none\n"),
            Err(VaultError::NoKek)
        ));
    }

    #[test]
    fn secrets_never_print() {
        let keks = LocalKeks::generate();
        let text = keks.to_text();
        let hex_key = text.split_whitespace().nth(1).unwrap().to_owned();
        for shown in [
            format!("{keks:?}"),
            format!("{:?}", DataKey::generate()),
            format!("{:?}", IndexKey::generate()),
        ] {
            // A 32-byte key in hex alone is 64 characters.
            assert!(!shown.contains(&hex_key) && shown.len() < 40, "{shown}");
        }
    }

    #[test]
    fn blind_indexes_are_per_key_and_per_column() {
        let key = IndexKey::generate();
        let a = key.blind_index("email", b"alice@example.com");
        assert_eq!(a, key.blind_index("email", b"alice@example.com"));
        assert_ne!(a, key.blind_index("phone", b"alice@example.com"));
        assert_ne!(
            a,
            IndexKey::generate().blind_index("email", b"alice@example.com")
        );
        // The column/value boundary is unambiguous.
        assert_ne!(key.blind_index("ab", b"c"), key.blind_index("a", b"bc"));
    }

    proptest! {
        #[test]
        fn any_value_seals_and_opens_through_a_wrapped_key(
            value in proptest::collection::vec(any::<u8>(), 0..300),
            owner in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let keks = LocalKeks::generate();
            let key = DataKey::generate();
            let wrapped = keks.wrap(&key, &owner).unwrap();
            let sealed = key.seal(&value, &aad(&owner));
            let back = keks.unwrap(&wrapped, &owner).unwrap();
            prop_assert_eq!(&*back.open(&sealed, &aad(&owner)).unwrap(), value.as_slice());
        }
    }
}
