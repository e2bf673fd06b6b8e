//! Signed notes (c2sp.org/signed-note) and the log checkpoints they carry
//! (c2sp.org/tlog-checkpoint): the form in which the log commits to its root, readable
//! by any tool of the transparency-log ecosystem.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::hash::Hash;

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;
/// Notes larger than this are refused before they are parsed.
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// At most this many signature lines are read (the spec asks for at least 16).
const MAX_SIGNATURES: usize = 64;
const EM_DASH: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("key name {0:?} is empty or has a space or '+'")]
    KeyName(String),
    #[error("malformed key: {0}")]
    Key(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("the note is not signed by {0}")]
    NotSigned(String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(&'static str),
    #[error("the checkpoint is for log {got:?}, not {want:?}")]
    Origin { got: String, want: String },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, big-endian.
fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(key.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    let [a, b, c, d, ..] = digest;
    u32::from_be_bytes([a, b, c, d])
}

/// The log's signing key: an Ed25519 key with the log's name.
pub struct LogKey {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl LogKey {
    /// A key from a 32-byte Ed25519 seed (the caller draws it from the OS's randomness).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<LogKey, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::KeyName(name.to_owned()));
        }
        Ok(LogKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// Reads `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>`, the Go `note` package's form.
    pub fn parse(text: &str) -> Result<LogKey, NoteError> {
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::Key("a private key starts with PRIVATE+KEY+"))?;
        let (name, id, material) = split_key(rest)?;
        let bytes = Zeroizing::new(
            B64.decode(material)
                .map_err(|_| NoteError::Key("key material is not base64"))?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(match bytes.split_first() {
            Some((&ED25519, seed)) => {
                <[u8; 32]>::try_from(seed).map_err(|_| NoteError::Key("seed is not 32 bytes"))?
            }
            _ => return Err(NoteError::Key("not an Ed25519 key")),
        });
        let key = LogKey::from_seed(name, &seed)?;
        if key.verifier().id != id {
            return Err(NoteError::Key("key id does not match the key"));
        }
        Ok(key)
    }

    /// The key in the form [`LogKey::parse`] reads; a secret.
    pub fn to_private_text(&self) -> Zeroizing<String> {
        let mut material = Zeroizing::new(Vec::with_capacity(33));
        material.push(ED25519);
        material.extend_from_slice(self.key.as_bytes());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.verifier().id,
            B64.encode(&*material)
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> VerifierKey {
        let key = self.key.verifying_key();
        VerifierKey {
            id: key_id(&self.name, &key),
            name: self.name.clone(),
            key,
        }
    }

    /// Signs `text` (which must end in a newline) and returns the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.verifier().id.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{EM_DASH}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

fn split_key(text: &str) -> Result<(&str, u32, &str), NoteError> {
    // The name has no '+'; the base64 material may.
    let (name, rest) = text
        .split_once('+')
        .ok_or(NoteError::Key("expected <name>+<id>+<key>"))?;
    let (id, material) = rest
        .split_once('+')
        .ok_or(NoteError::Key("expected <name>+<id>+<key>"))?;
    if !valid_name(name) {
        return Err(NoteError::KeyName(name.to_owned()));
    }
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::Key("key id is not 8 hexadecimal digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::Key("bad key id"))?;
    Ok((name, id, material))
}

/// A public key that checks the log's notes: `<name>+<id>+<base64(0x01 ‖ key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = Vec::with_capacity(33);
        material.push(ED25519);
        material.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(material))
    }
}

impl VerifierKey {
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let (name, id, material) = split_key(text.trim())?;
        let bytes = B64
            .decode(material)
            .map_err(|_| NoteError::Key("key material is not base64"))?;
        let key = match bytes.split_first() {
            Some((&ED25519, key)) => {
                let key = <[u8; 32]>::try_from(key)
                    .map_err(|_| NoteError::Key("public key is not 32 bytes"))?;
                VerifyingKey::from_bytes(&key)
                    .map_err(|_| NoteError::Key("not an Ed25519 public key"))?
            }
            _ => return Err(NoteError::Key("not an Ed25519 key")),
        };
        if key.is_weak() {
            return Err(NoteError::Key("a weak (small-order) public key"));
        }
        if key_id(name, &key) != id {
            return Err(NoteError::Key("key id does not match the key"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks `note`'s signature by this key and returns its text. Signatures by other
    /// keys are ignored; a signature by this key that fails rejects the note.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, signatures) = split_note(note)?;
        let mut verified = false;
        for line in signatures.lines() {
            let (name, blob) = parse_signature_line(line)?;
            if name != self.name {
                continue;
            }
            let Some((id, sig)) = blob.split_first_chunk::<4>() else {
                return Err(NoteError::Malformed("a signature shorter than its key id"));
            };
            if u32::from_be_bytes(*id) != self.id {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(sig)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if !verified {
            return Err(NoteError::NotSigned(self.to_string()));
        }
        Ok(text)
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_LEN {
        return Err(NoteError::Malformed("longer than 64 KiB"));
    }
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text does not end in a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("a control character"));
    }
    Ok(())
}

/// Splits a note into its text (with its final newline) and its signature lines.
fn split_note(note: &str) -> Result<(&str, &str), NoteError> {
    check_text(note)?;
    let at = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, rest) = note.split_at(at + 1);
    let signatures = rest.strip_prefix('\n').unwrap_or(rest);
    if signatures.is_empty() {
        return Err(NoteError::Malformed("no signatures"));
    }
    if signatures.lines().count() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("too many signatures"));
    }
    Ok((text, signatures))
}

fn parse_signature_line(line: &str) -> Result<(&str, Vec<u8>), NoteError> {
    let rest = line.strip_prefix(EM_DASH).ok_or(NoteError::Malformed(
        "a signature line must start with an em dash",
    ))?;
    let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
        "a signature line is '— <name> <base64>'",
    ))?;
    if !valid_name(name) {
        return Err(NoteError::KeyName(name.to_owned()));
    }
    let blob = B64
        .decode(blob)
        .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
    Ok((name, blob))
}

/// A log's commitment to its first `size` entries (c2sp.org/tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines after the root, kept as they are.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: origin, size and base64 root, one per line.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        check_text(text)?;
        let mut lines = text
            .strip_suffix('\n')
            .ok_or(NoteError::Checkpoint("no final newline"))?
            .split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Checkpoint("no origin line"))?;
        let size = lines.next().ok_or(NoteError::Checkpoint("no size line"))?;
        let canonical = size == "0" || (!size.starts_with('0') && !size.is_empty());
        if !canonical || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NoteError::Checkpoint("the size is not a plain decimal"));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| NoteError::Checkpoint("the size is out of range"))?;
        let root = lines.next().ok_or(NoteError::Checkpoint("no root line"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| Hash::from_slice(&r))
            .ok_or(NoteError::Checkpoint(
                "the root is not a base64 32-byte hash",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::Checkpoint("an empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The signed note of this checkpoint.
    pub fn sign(&self, key: &LogKey) -> Result<String, NoteError> {
        key.sign(&self.to_text())
    }

    /// Opens a signed checkpoint with the log's key; its origin must be the key's name.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(key.open(note)?)?;
        if checkpoint.origin != key.name {
            return Err(NoteError::Origin {
                got: checkpoint.origin,
                want: key.name.clone(),
            });
        }
        Ok(checkpoint)
    }
}
