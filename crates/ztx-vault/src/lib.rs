//! Sealing secrets at rest: XChaCha20-Poly1305 under a master key, bound to where the
//! ciphertext is stored (table, column, row, key version) so that a sealed value copied
//! to another row or column does not open.
//!
//! Sealed format: `version (1 byte) ‖ nonce (24 bytes) ‖ ciphertext+tag`.
//! The associated data is not stored; the caller supplies it again when opening.
#![forbid(unsafe_code)]

pub mod contact;
pub mod envelope;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The format version written as the first byte of every sealed value.
pub const SEALED_VERSION: u8 = 1;
/// Length of the XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of a master key in bytes.
pub const KEY_LEN: usize = 32;

/// Why a key could not be loaded or a sealed value could not be opened.
#[derive(Debug, Error)]
pub enum VaultError {
    /// The key file or variable is not 64 hex digits. The operator's fault; the content
    /// is never echoed because it may be (part of) a key.
    #[error("master key is not {} hex digits", KEY_LEN * 2)]
    BadKeyFormat,
    /// Reading or creating the key file failed. The environment's fault.
    #[error("master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by group or others. The operator's fault.
    #[error(
        "master key file {path} has mode {mode:o}; it must not be accessible to group or others"
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    /// The sealed value is shorter than a header and a tag: truncated or not ours.
    #[error("sealed value too short ({len} bytes)")]
    Truncated { len: usize },
    /// The first byte is not a version we know.
    #[error("unknown sealed-value version {0}")]
    UnknownVersion(u8),
    /// A line of a key-encryption-key file is not `<version> <64 hex digits>` with a
    /// positive version seen once. The content is never echoed.
    #[error(
        "key-encryption-key line {line} is not `<version> <64 hex digits>` (versions positive and unique)"
    )]
    BadKekLine { line: usize },
    /// A key-encryption-key file or variable holds no version.
    #[error("no key-encryption key is given")]
    NoKek,
    /// What is wrong with a key file's content, naming the file. The operator's fault.
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<VaultError>,
    },
    /// A data key is wrapped by a KEK version that is no longer held.
    #[error("key-encryption key version {0} is not held (retired, or never known)")]
    UnknownKekVersion(u32),
    /// Authentication failed: wrong key, wrong location (associated data) or tampering.
    /// Deliberately says nothing about which.
    #[error("sealed value does not open")]
    Unauthentic,
}

/// Where a sealed value lives. Encoded into the AEAD's associated data so that a
/// ciphertext moved to another table, column, row or key version fails to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aad<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row_key: &'a [u8],
    pub key_version: u32,
}

impl Aad<'_> {
    /// Unambiguous encoding: a domain tag, then each field length-prefixed (u64 BE), then
    /// the key version. `("ab","c")` and `("a","bc")` therefore differ.
    pub fn encode(&self) -> Vec<u8> {
        const DOMAIN: &[u8] = b"ztx-vault/aad/v1";
        let mut out = Vec::with_capacity(
            DOMAIN.len() + 3 * 8 + self.table.len() + self.column.len() + self.row_key.len() + 4,
        );
        for field in [
            DOMAIN,
            self.table.as_bytes(),
            self.column.as_bytes(),
            self.row_key,
        ] {
            // usize → u64 never truncates on supported (≤ 64-bit) targets.
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out
    }
}

/// The 32-byte key that seals everything at rest. Zeroed on drop; `Debug` redacts.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(**redacted**)")
    }
}

impl MasterKey {
    /// A fresh random key from the operating system.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Self { bytes }
    }

    /// Parses 64 hex digits (surrounding whitespace allowed), e.g. an environment
    /// variable's value.
    pub fn from_hex(text: &str) -> Result<Self, VaultError> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| VaultError::BadKeyFormat)?;
        Ok(Self { bytes })
    }

    /// Loads the key from `path`, or creates the file with a fresh key (mode 0600, created
    /// exclusively so that a concurrent creator cannot be overwritten) if it is missing.
    /// On Unix, refuses an existing file readable by group or others.
    pub fn load_or_create(path: &Path) -> Result<Self, VaultError> {
        let io_err = |source| VaultError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                check_permissions(path)?;
                Self::from_hex(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let hex_text = Zeroizing::new(hex::encode(key.bytes));
                let mut file = create_private(path).map_err(io_err)?;
                file.write_all(hex_text.as_bytes()).map_err(io_err)?;
                file.write_all(b"\n").map_err(io_err)?;
                file.sync_all().map_err(io_err)?;
                Ok(key)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// The key as 64 lowercase hex digits, e.g. to back it up. Zeroed when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.bytes))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }

    /// Encrypts `plaintext` bound to `aad` with a random nonce.
    pub fn seal(&self, plaintext: &[u8], aad: &Aad<'_>) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        self.seal_with_nonce(plaintext, aad, &nonce)
    }

    fn seal_with_nonce(&self, plaintext: &[u8], aad: &Aad<'_>, nonce: &XNonce) -> Vec<u8> {
        let aad_bytes = aad.encode();
        // Encryption with a valid key and nonce fails only if the plaintext exceeds the
        // cipher's limit (~256 GiB); an empty ciphertext then makes `open` fail loudly.
        let ciphertext = self
            .cipher()
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad_bytes,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a value made by [`MasterKey::seal`] with the same key and `aad`.
    pub fn open(&self, sealed: &[u8], aad: &Aad<'_>) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(VaultError::Truncated { len: 0 });
        };
        if version != SEALED_VERSION {
            return Err(VaultError::UnknownVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Truncated { len: sealed.len() });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad_bytes = aad.encode();
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad_bytes,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Unauthentic)
    }
}

#[cfg(unix)]
/// Creates `path` new, readable and writable by this user alone.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
/// Creates `path` new, readable and writable by this user alone.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
pub(crate) fn check_permissions(path: &Path) -> Result<(), VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| VaultError::KeyFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_permissions(_path: &Path) -> Result<(), VaultError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> MasterKey {
        MasterKey::from_hex(KEY_HEX).unwrap()
    }

    fn aad(row: &[u8]) -> Aad<'_> {
        Aad {
            table: "api_keys",
            column: "secret",
            row_key: row,
            key_version: 1,
        }
    }

    #[test]
    fn round_trip() {
        let k = key();
        let sealed = k.seal(b"hunter2", &aad(b"42"));
        assert_eq!(sealed.first(), Some(&SEALED_VERSION));
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 7 + TAG_LEN);
        assert_eq!(k.open(&sealed, &aad(b"42")).unwrap().as_slice(), b"hunter2");
        // Empty plaintext works too.
        let sealed = k.seal(b"", &aad(b"42"));
        assert!(k.open(&sealed, &aad(b"42")).unwrap().is_empty());
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = key();
        assert_ne!(k.seal(b"x", &aad(b"1")), k.seal(b"x", &aad(b"1")));
    }

    #[test]
    fn ciphertext_moved_to_another_row_does_not_open() {
        let k = key();
        let sealed = k.seal(b"secret", &aad(b"42"));
        assert!(matches!(
            k.open(&sealed, &aad(b"43")),
            Err(VaultError::Unauthentic)
        ));
    }

    #[test]
    fn ciphertext_moved_to_another_column_or_table_or_version_does_not_open() {
        let k = key();
        let sealed = k.seal(b"secret", &aad(b"42"));
        let others = [
            Aad {
                column: "other",
                ..aad(b"42")
            },
            Aad {
                table: "other",
                ..aad(b"42")
            },
            Aad {
                key_version: 2,
                ..aad(b"42")
            },
        ];
        for other in others {
            assert!(k.open(&sealed, &other).is_err(), "{other:?}");
        }
    }

    #[test]
    fn aad_encoding_is_unambiguous() {
        let a = Aad {
            table: "ab",
            column: "c",
            row_key: b"",
            key_version: 1,
        };
        let b = Aad {
            table: "a",
            column: "bc",
            row_key: b"",
            key_version: 1,
        };
        assert_ne!(a.encode(), b.encode());
        let k = key();
        assert!(k.open(&k.seal(b"s", &a), &b).is_err());
    }

    #[test]
    fn wrong_key_does_not_open() {
        let sealed = key().seal(b"secret", &aad(b"1"));
        let other = MasterKey::generate();
        assert!(matches!(
            other.open(&sealed, &aad(b"1")),
            Err(VaultError::Unauthentic)
        ));
    }

    #[test]
    fn flipped_bit_does_not_open() {
        let k = key();
        let sealed = k.seal(b"secret", &aad(b"1"));
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(k.open(&bad, &aad(b"1")).is_err(), "byte {i}");
        }
    }

    #[test]
    fn truncated_and_unknown_version_are_errors() {
        let k = key();
        let sealed = k.seal(b"secret", &aad(b"1"));
        for len in 0..sealed.len() {
            assert!(k.open(&sealed[..len], &aad(b"1")).is_err(), "len {len}");
        }
        let mut bad = sealed.clone();
        bad[0] = 2;
        assert!(matches!(
            k.open(&bad, &aad(b"1")),
            Err(VaultError::UnknownVersion(2))
        ));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = key();
        let shown = format!("{k:?} {k:#?}");
        assert_eq!(format!("{k:?}"), "MasterKey(**redacted**)");
        assert!(!shown.contains("0001020304"));
        assert!(!shown.contains("[0, 1, 2"));
        let err = MasterKey::from_hex("zz").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("zz"));
    }

    #[test]
    fn from_hex_accepts_only_64_hex_digits() {
        assert!(MasterKey::from_hex(&format!(" {KEY_HEX}\n")).is_ok());
        assert!(MasterKey::from_hex(&KEY_HEX[..62]).is_err());
        assert!(MasterKey::from_hex(&format!("{KEY_HEX}00")).is_err());
        assert!(MasterKey::from_hex(&KEY_HEX.replace('0', "g")).is_err());
        assert_eq!(key().to_hex().as_str(), KEY_HEX);
    }

    #[test]
    fn load_or_create_creates_private_file_then_loads_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let created = MasterKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = MasterKey::load_or_create(&path).unwrap();
        let sealed = created.seal(b"v", &aad(b"1"));
        assert_eq!(loaded.open(&sealed, &aad(b"1")).unwrap().as_slice(), b"v");
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, KEY_HEX).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(VaultError::KeyFilePermissions { .. })
        ));
    }

    #[test]
    fn garbage_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(VaultError::BadKeyFormat)
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = key();
            prop_assert!(k.open(&bytes, &aad(b"1")).is_err());
        }

        #[test]
        fn arbitrary_plaintext_round_trips(
            plain in proptest::collection::vec(any::<u8>(), 0..300),
            row in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let k = key();
            let a = aad(&row);
            let sealed = k.seal(&plain, &a);
            let opened = k.open(&sealed, &a).unwrap();
            prop_assert_eq!(opened.as_slice(), plain.as_slice());
        }

        #[test]
        fn truncations_of_real_ciphertexts_are_errors(cut in 0usize..60) {
            let k = key();
            let sealed = k.seal(b"some secret value", &aad(b"1"));
            let cut = cut.min(sealed.len().saturating_sub(1));
            prop_assert!(k.open(&sealed[..cut], &aad(b"1")).is_err());
        }
    }
}
