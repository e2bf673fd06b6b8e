//! What one audit entry says, and its canonical encoding — the bytes the tree hashes.
//!
//! # Encoding, version 1
//!
//! Big-endian integers; a string is a `u16` byte length and UTF-8; an optional value is a
//! tag byte, 0 (absent) or 1 (present), then the value. In this order:
//!
//! | field        | encoding                                                        |
//! |--------------|-----------------------------------------------------------------|
//! | version      | `u8`, 1                                                         |
//! | prev         | 32 bytes: the leaf hash of the entry before (zeros for the first) |
//! | time_ms      | `u64`, milliseconds since the Unix epoch                        |
//! | kind         | `u8`: 1 request, 2 admin, 3 key change, 4 response, 5 publication, 6 data access |
//! | request_id   | `u64`                                                           |
//! | customer     | optional `u64`                                                  |
//! | api_key      | optional `u64`                                                  |
//! | operator     | optional string                                                 |
//! | client_ip    | `u8` 0 (none), 4 then 4 bytes, or 6 then 16 bytes               |
//! | action       | string, e.g. `POST /api/v3/order` or `admin api-key create`     |
//! | params       | `u16` count, then that many (name string, value string) pairs   |
//! | outcome      | `u8`: 1 success, 2 failure, 3 denied                             |
//! | denial       | `u8`: 0 when not denied, else the [`Denial`] code               |
//! | code         | optional `i32`, the error code the caller got                    |
//!
//! There is exactly one encoding of each entry: decoding refuses unknown versions and
//! codes, tags other than 0 and 1, invalid UTF-8 and trailing bytes, and an entry
//! re-encodes to the bytes it was read from. `prev` chains each entry to the one before
//! it, so that a verifier names the exact entry where a log was edited, cut, padded or
//! reordered, not only the checkpoint that no longer matches. A later version adds fields after a new
//! version byte; entries already logged keep their bytes and their meaning.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::hash::{HASH_LEN, Hash};

/// The text of an entry's fields: a string kept inline up to 24 bytes, where nearly
/// every action, parameter name and value fits, so that a request's entry (a score of
/// short strings, built on an HTTP thread and dropped on the monitor's) costs no
/// allocation per string.
pub type Text = compact_str::CompactString;

/// The only version written today.
pub const VERSION: u8 = 1;
/// The longest string field [`Entry::to_bytes`] keeps, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;
/// The most parameters [`Entry::to_bytes`] keeps.
pub const MAX_PARAMS: usize = 32;
/// The largest entry accepted, in bytes.
pub const MAX_ENTRY_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A request to the API, public or signed, allowed or not.
    Request = 1,
    /// An operator's command.
    Admin = 2,
    /// A change of an API key's permissions, allow-list or state, or of where the
    /// customer's notifications go (a webhook set or removed).
    KeyChange = 3,
    /// The platform's response to a detection (a ban, a frozen key, a notification).
    Response = 4,
    /// Something the platform published (a proof-of-reserves root).
    Publication = 5,
    /// A call to the data store: which service made it, for which principal, under
    /// which customer segment, on which tables (added within version 1: an older reader
    /// refuses the entry by its unknown kind rather than misreading it).
    DataAccess = 6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success = 1,
    /// Allowed through the gate, refused by the action itself (an order the balance
    /// does not cover).
    Failure = 2,
    /// Refused before it reached the action; see [`Denial`].
    Denied = 3,
}

/// Why a request was refused at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    BadSignature = 1,
    ExpiredTimestamp = 2,
    IpNotAllowed = 3,
    MissingPermission = 4,
    RateLimited = 5,
    UnknownKey = 6,
    MalformedRequest = 7,
    IpBanned = 8,
    KeyFrozen = 9,
}

impl Kind {
    /// Every value, in code order.
    pub const ALL: [Kind; 6] = [
        Kind::Request,
        Kind::Admin,
        Kind::KeyChange,
        Kind::Response,
        Kind::Publication,
        Kind::DataAccess,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Admin => "admin",
            Kind::KeyChange => "key_change",
            Kind::Response => "response",
            Kind::Publication => "publication",
            Kind::DataAccess => "data_access",
        }
    }
}

impl Outcome {
    /// Every value, in code order.
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

impl Denial {
    /// Every value, in code order.
    pub const ALL: [Denial; 9] = [
        Denial::BadSignature,
        Denial::ExpiredTimestamp,
        Denial::IpNotAllowed,
        Denial::MissingPermission,
        Denial::RateLimited,
        Denial::UnknownKey,
        Denial::MalformedRequest,
        Denial::IpBanned,
        Denial::KeyFrozen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Denial::BadSignature => "bad_signature",
            Denial::ExpiredTimestamp => "expired_timestamp",
            Denial::IpNotAllowed => "ip_not_allowed",
            Denial::MissingPermission => "missing_permission",
            Denial::RateLimited => "rate_limited",
            Denial::UnknownKey => "unknown_key",
            Denial::MalformedRequest => "malformed_request",
            Denial::IpBanned => "ip_banned",
            Denial::KeyFrozen => "key_frozen",
        }
    }
}

/// Parameters for an entry from any pairs of strings.
pub fn params<N: Into<Text>, V: Into<Text>>(
    pairs: impl IntoIterator<Item = (N, V)>,
) -> Vec<(Text, Text)> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.into(), value.into()))
        .collect()
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The leaf hash of the entry before this one; set by the log as it appends.
    pub prev: Hash,
    pub time_ms: u64,
    pub kind: Kind,
    pub request_id: u64,
    pub customer: Option<u64>,
    pub api_key: Option<u64>,
    pub operator: Option<Text>,
    pub client_ip: Option<IpAddr>,
    pub action: Text,
    /// Parameters as received, with secrets (signatures, keys) removed by the caller.
    pub params: Vec<(Text, Text)>,
    pub outcome: Outcome,
    /// Set exactly when `outcome` is [`Outcome::Denied`].
    pub denial: Option<Denial>,
    pub code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry is longer than {MAX_ENTRY_LEN} bytes")]
    TooLong,
    #[error("{field} is longer than 65535 bytes")]
    FieldTooLong { field: &'static str },
    #[error("unknown entry version {0}")]
    Version(u8),
    #[error("entry ends inside {field}")]
    Truncated { field: &'static str },
    #[error("{field} has the unknown value {value}")]
    Unknown { field: &'static str, value: u8 },
    #[error("{field} is not UTF-8")]
    Utf8 { field: &'static str },
    #[error("{0} bytes after the end of the entry")]
    Trailing(usize),
    #[error("a denied entry must name its denial, and only a denied entry may")]
    DenialMismatch,
}

impl Entry {
    /// The canonical bytes of this entry, after cutting what is too long to log (strings
    /// past [`MAX_FIELD_LEN`] bytes, parameters past [`MAX_PARAMS`], each cut marked
    /// with `…`) and making the denial agree with the outcome. Never fails: a request
    /// too odd to encode is still logged.
    pub fn to_bytes(self) -> Vec<u8> {
        self.logged().1
    }

    /// The entry as [`Entry::to_bytes`] logs it (cut to the limits, its denial agreeing
    /// with its outcome), with those bytes: exactly what decoding them gives back, for a
    /// reader in the same process that would otherwise decode what was just encoded.
    pub fn logged(mut self) -> (Entry, Vec<u8>) {
        fn clamp(text: &mut Text) {
            if text.len() > MAX_FIELD_LEN {
                let mut end = MAX_FIELD_LEN - '…'.len_utf8();
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push('…');
            }
        }
        if let Some(op) = &mut self.operator {
            clamp(op);
        }
        clamp(&mut self.action);
        if self.params.len() > MAX_PARAMS {
            self.params.truncate(MAX_PARAMS - 1);
            self.params.push(("…".into(), "…".into()));
        }
        for (name, value) in &mut self.params {
            clamp(name);
            clamp(value);
        }
        match (self.outcome, self.denial) {
            (Outcome::Denied, None) => self.denial = Some(Denial::MalformedRequest),
            (Outcome::Success | Outcome::Failure, Some(_)) => self.denial = None,
            _ => {}
        }
        // Within every limit now, and consistent: this cannot fail.
        let bytes = self.encode().unwrap_or_default();
        (self, bytes)
    }

    /// Writes `prev` into `bytes`, the encoding of an entry, where every version-1
    /// encoding holds it (right after the version byte): the bytes become those of the
    /// same entry with that `prev`. So an entry can be encoded before its place in the
    /// log is known, and chained later without encoding it again. Returns false, and
    /// changes nothing, when `bytes` is not long enough or not version 1.
    pub fn set_encoded_prev(bytes: &mut [u8], prev: &Hash) -> bool {
        match bytes.split_first_mut() {
            Some((&mut VERSION, rest)) => match rest.get_mut(..HASH_LEN) {
                Some(field) => {
                    field.copy_from_slice(&prev.0);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// The canonical bytes of this entry.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        if (self.outcome == Outcome::Denied) != self.denial.is_some() {
            return Err(EntryError::DenialMismatch);
        }
        // The fixed fields take at most 104 bytes; each string 2 more than its length.
        let strings = self.operator.as_ref().map_or(0, |op| op.len() + 2)
            + self.action.len()
            + 2
            + self
                .params
                .iter()
                .map(|(name, value)| name.len() + value.len() + 4)
                .sum::<usize>();
        let mut out = Vec::with_capacity(104 + strings);
        out.push(VERSION);
        out.extend_from_slice(&self.prev.0);
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.request_id.to_be_bytes());
        put_opt_u64(&mut out, self.customer);
        put_opt_u64(&mut out, self.api_key);
        match &self.operator {
            None => out.push(0),
            Some(op) => {
                out.push(1);
                put_str(&mut out, op, "operator")?;
            }
        }
        match self.client_ip {
            None => out.push(0),
            Some(IpAddr::V4(ip)) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        put_str(&mut out, &self.action, "action")?;
        let count = u16::try_from(self.params.len())
            .map_err(|_| EntryError::FieldTooLong { field: "params" })?;
        out.extend_from_slice(&count.to_be_bytes());
        for (name, value) in &self.params {
            put_str(&mut out, name, "parameter name")?;
            put_str(&mut out, value, "parameter value")?;
        }
        out.push(self.outcome as u8);
        out.push(self.denial.map_or(0, |d| d as u8));
        match self.code {
            None => out.push(0),
            Some(code) => {
                out.push(1);
                out.extend_from_slice(&code.to_be_bytes());
            }
        }
        if out.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLong);
        }
        Ok(out)
    }

    /// Reads an entry from its canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLong);
        }
        let mut r = Reader { rest: bytes };
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(EntryError::Version(version));
        }
        let prev = Hash(r.array::<HASH_LEN>("prev")?);
        let time_ms = r.u64("time_ms")?;
        let kind = r.code("kind", &Kind::ALL, |k| *k as u8)?;
        let request_id = r.u64("request_id")?;
        let customer = r.opt("customer", |r| r.u64("customer"))?;
        let api_key = r.opt("api_key", |r| r.u64("api_key"))?;
        let operator = r.opt("operator", |r| r.string("operator"))?;
        let client_ip = match r.u8("client_ip")? {
            0 => None,
            4 => Some(IpAddr::V4(Ipv4Addr::from(r.array::<4>("client_ip")?))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(r.array::<16>("client_ip")?))),
            value => {
                return Err(EntryError::Unknown {
                    field: "client_ip",
                    value,
                });
            }
        };
        let action = r.string("action")?;
        let count = u16::from_be_bytes(r.array::<2>("params")?);
        let mut params = Vec::with_capacity(usize::from(count).min(1024));
        for _ in 0..count {
            let name = r.string("parameter name")?;
            let value = r.string("parameter value")?;
            params.push((name, value));
        }
        let outcome = r.code("outcome", &Outcome::ALL, |o| *o as u8)?;
        let denial = match r.u8("denial")? {
            0 => None,
            value => Some(Denial::ALL.into_iter().find(|d| *d as u8 == value).ok_or(
                EntryError::Unknown {
                    field: "denial",
                    value,
                },
            )?),
        };
        let code = r.opt("code", |r| Ok(i32::from_be_bytes(r.array::<4>("code")?)))?;
        if !r.rest.is_empty() {
            return Err(EntryError::Trailing(r.rest.len()));
        }
        if (outcome == Outcome::Denied) != denial.is_some() {
            return Err(EntryError::DenialMismatch);
        }
        Ok(Entry {
            prev,
            time_ms,
            kind,
            request_id,
            customer,
            api_key,
            operator,
            client_ip,
            action,
            params,
            outcome,
            denial,
            code,
        })
    }
}

fn put_opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn put_str(out: &mut Vec<u8>, text: &str, field: &'static str) -> Result<(), EntryError> {
    let len = u16::try_from(text.len()).map_err(|_| EntryError::FieldTooLong { field })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], EntryError> {
        if self.rest.len() < n {
            return Err(EntryError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EntryError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| EntryError::Truncated { field })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EntryError> {
        Ok(u8::from_be_bytes(self.array::<1>(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, EntryError> {
        Ok(u64::from_be_bytes(self.array::<8>(field)?))
    }

    fn string(&mut self, field: &'static str) -> Result<Text, EntryError> {
        let len = u16::from_be_bytes(self.array::<2>(field)?);
        let bytes = self.take(usize::from(len), field)?;
        let text = std::str::from_utf8(bytes).map_err(|_| EntryError::Utf8 { field })?;
        Ok(Text::from(text))
    }

    fn opt<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, EntryError>,
    ) -> Result<Option<T>, EntryError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => read(self).map(Some),
            value => Err(EntryError::Unknown { field, value }),
        }
    }

    fn code<T: Copy>(
        &mut self,
        field: &'static str,
        all: &[T],
        code: impl Fn(&T) -> u8,
    ) -> Result<T, EntryError> {
        let value = self.u8(field)?;
        all.iter()
            .find(|t| code(t) == value)
            .copied()
            .ok_or(EntryError::Unknown { field, value })
    }
}
