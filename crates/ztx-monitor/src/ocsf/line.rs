//! An [`Event`] written straight to its JSON line, without serde: the monitor writes one
//! for every entry of the log, and `serde_json` spends most of that time escaping the
//! event's fixed keys byte by byte (about half the monitor's CPU under load). Here the
//! keys are written as they are and only the values taken from the entry are escaped;
//! each key, with its quotes, colon and comma, is one copy, and the runs of members that
//! repeat from event to event (the class and activity, the severity and status, the
//! product) are written once per thread and copied after that.
//!
//! The output is byte for byte what `serde_json::to_vec` makes of the same event (the
//! derived [`serde::Serialize`] stays the definition of the format, for the admin
//! endpoint's JSON values): `every_event_line_is_what_serde_writes` holds the two
//! together for any entry, control characters and non-ASCII text included.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::thread::LocalKey;

use super::{
    Actor, Admin, Api, Class, Cloud, Database, Endpoint, Event, FindingInfo, HttpRequest, Metadata,
    Params, ServedUser, User,
};

/// A member's name as written before its value, `,"name":` (the comma left out for an
/// object's first member), made by [`key!`] at compile time: starting a member is then
/// one copy instead of four writes. Names are the format's own, never an entry's, so
/// they need no escaping.
#[derive(Debug, Clone, Copy)]
struct Key(&'static str);

/// The [`Key`] of the member `name`.
macro_rules! key {
    ($name:literal) => {
        Key(concat!(",\"", $name, "\":"))
    };
}

/// One JSON object being written: its members are separated as they come.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, empty: true }
    }

    /// Starts the member `key` and returns where its value goes.
    fn key(&mut self, key: Key) -> &mut Vec<u8> {
        debug_assert!(
            key.0
                .get(2..key.0.len().saturating_sub(2))
                .is_some_and(|name| !name.bytes().any(needs_escape)),
            "{} needs escaping",
            key.0
        );
        self.members(key.0.as_bytes());
        self.out
    }

    /// Appends `members`, members each led by its comma (or nothing), dropping the first
    /// comma when they are the object's first.
    fn members(&mut self, members: &[u8]) {
        if members.is_empty() {
            return;
        }
        let skip = usize::from(self.empty);
        self.out
            .extend_from_slice(members.get(skip..).unwrap_or_default());
        self.empty = false;
    }

    fn str(&mut self, key: Key, value: &str) {
        string(self.key(key), value);
    }

    fn num(&mut self, key: Key, value: impl itoa::Integer) {
        number(self.key(key), value);
    }

    /// A number written as a JSON string (as the derived serializer's `display` does).
    fn num_str(&mut self, key: Key, value: impl itoa::Integer) {
        let out = self.key(key);
        out.push(b'"');
        number(out, value);
        out.push(b'"');
    }

    fn obj(&mut self, key: Key, write: impl FnOnce(&mut Obj<'_>)) {
        let mut inner = Obj::open(self.key(key));
        write(&mut inner);
        inner.close();
    }

    /// Members that depend on nothing but what `matches` compares: written by `write` the
    /// first time on this thread, copied from `cache` after that. An event's first eight
    /// members, for one, are the same for every event of its class and activity.
    fn cached<K: 'static>(
        &mut self,
        cache: &'static LocalKey<Runs<K>>,
        matches: impl Fn(&K) -> bool,
        key: impl FnOnce() -> K,
        write: impl FnOnce(&mut Obj<'_>),
    ) {
        cache.with_borrow_mut(|cache| {
            if let Some((_, members)) = cache.iter().find(|(k, _)| matches(k)) {
                self.members(members);
                return;
            }
            let first = self.empty;
            let start = self.out.len();
            write(self);
            if cache.len() < MAX_CACHED {
                // Kept with the comma that leads them when they are not the first.
                let written = self.out.get(start..).unwrap_or_default();
                let mut members = Vec::with_capacity(written.len() + 1);
                if first && !written.is_empty() {
                    members.push(b',');
                }
                members.extend_from_slice(written);
                cache.push((key(), members.into()));
            }
        });
    }

    /// [`Obj::cached`] for a key that is a plain value.
    fn cached_by<K: Copy + PartialEq + 'static>(
        &mut self,
        cache: &'static LocalKey<Runs<K>>,
        key: K,
        write: impl FnOnce(&mut Obj<'_>),
    ) {
        self.cached(cache, |k| *k == key, || key, write);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Runs of members [`Obj::cached`] wrote, each with what it depends on.
type Runs<K> = RefCell<Vec<(K, Box<[u8]>)>>;

/// The most runs of members [`Obj::cached`] keeps in one cache on one thread: the
/// events' classes, activities, severities and outcomes make a few dozen at most.
const MAX_CACHED: usize = 64;

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// An address as its `Display` writes it (digits, dots, colons and hex letters, which
/// need no escaping); IPv4, nearly every client's, without the formatting machinery.
fn ip_text(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, octet);
            }
        }
        // Writing to a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn number(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `value` as a JSON string, escaped as `serde_json` escapes it.
fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    string_contents(out, value);
    out.push(b'"');
}

/// Whether any byte of `bytes` needs escaping, looked at eight bytes at a time: nearly
/// every value needs none, and scanning was the writer's largest cost. A byte below
/// 0x20, a quote or a backslash in a word sets that byte's top bit of the word's test
/// (the bit-twiddling "has less than" and "has zero byte" tests, exact as to whether
/// any byte matches); a byte with its own top bit set (UTF-8 beyond ASCII) never does.
fn any_needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const TOPS: u64 = u64::from_le_bytes([0x80; 8]);
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & TOPS;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let w = u64::from_le_bytes(eight);
        let control = w.wrapping_sub(SPACES) & !w & TOPS;
        if control | zero_byte(w ^ QUOTES) | zero_byte(w ^ BACKSLASHES) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| needs_escape(b))
}

fn string_contents(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    if !any_needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    fn hex(n: u8) -> u8 {
        if n < 10 { b'0' + n } else { b'a' + n - 10 }
    }
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b if b < 0x20 => {
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 0xf)])
            }
            b => out.push(b),
        }
    }
}

/// What an event's members before `time` follow from: its class and its activity's id
/// and name ([`Event::new`], the only maker of events, derives the class's name, the
/// category, `type_uid` and `type_name` from these).
type Head = (Class, u32, &'static str);

/// Severity and status: `severity_id`, `severity`, `status_id`, `status`.
type Status = (u32, &'static str, u32, &'static str);

thread_local! {
    static HEADS: Runs<Head> = const { RefCell::new(Vec::new()) };
    static STATUSES: Runs<Status> = const { RefCell::new(Vec::new()) };
    /// By the product's name, vendor and version: its `product` member.
    static PRODUCTS: Runs<(String, String, String)> = const { RefCell::new(Vec::new()) };
}

/// How many runs of members this thread has cached (for tests).
#[cfg(test)]
pub(super) fn cached_runs() -> usize {
    HEADS.with_borrow(Vec::len) + STATUSES.with_borrow(Vec::len) + PRODUCTS.with_borrow(Vec::len)
}

impl Event<'_> {
    /// Appends the event to `out` as one line of JSON, without the line's end.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        let head = (self.type_name.class, self.activity_id, self.activity_name);
        o.cached_by(&HEADS, head, |o| {
            o.num(key!("class_uid"), self.class_uid);
            o.str(key!("class_name"), self.class_name);
            o.num(key!("category_uid"), self.category_uid);
            o.str(key!("category_name"), self.category_name);
            o.num(key!("activity_id"), self.activity_id);
            o.str(key!("activity_name"), self.activity_name);
            o.num(key!("type_uid"), self.type_uid);
            let out = o.key(key!("type_name"));
            out.push(b'"');
            string_contents(out, self.type_name.class.name());
            out.extend_from_slice(b": ");
            string_contents(out, self.type_name.activity);
            out.push(b'"');
        });
        o.num(key!("time"), self.time);
        let status = (self.severity_id, self.severity, self.status_id, self.status);
        o.cached_by(&STATUSES, status, |o| {
            o.num(key!("severity_id"), self.severity_id);
            o.str(key!("severity"), self.severity);
            o.num(key!("status_id"), self.status_id);
            o.str(key!("status"), self.status);
        });
        if let Some(code) = self.status_code {
            o.num_str(key!("status_code"), code);
        }
        if let Some(detail) = self.status_detail {
            o.str(key!("status_detail"), detail);
        }
        o.num(key!("action_id"), self.action_id);
        o.str(key!("action"), self.action);
        {
            let entry = self.message.0;
            let out = o.key(key!("message"));
            out.push(b'"');
            string_contents(out, &entry.action);
            out.extend_from_slice(b": ");
            string_contents(out, entry.outcome.as_str());
            if let Some(denial) = entry.denial {
                out.extend_from_slice(b" (");
                string_contents(out, denial.as_str());
                out.push(b')');
            }
            out.push(b'"');
        }
        o.obj(key!("metadata"), |o| self.metadata.write(o));
        self.actor.write(&mut o);
        if let Some(Endpoint { ip }) = &self.src_endpoint {
            o.obj(key!("src_endpoint"), |o| {
                let out = o.key(key!("ip"));
                out.push(b'"');
                ip_text(out, ip);
                out.push(b'"');
            });
        }
        if let Some(api) = &self.api {
            o.obj(key!("api"), |o| api.write(o));
        }
        if let Some(HttpRequest { http_method, url }) = &self.http_request {
            o.obj(key!("http_request"), |o| {
                o.str(key!("http_method"), http_method);
                o.obj(key!("url"), |o| o.str(key!("path"), url.path));
            });
        }
        if let Some(Cloud { provider, region }) = &self.cloud {
            o.obj(key!("cloud"), |o| {
                o.str(key!("provider"), provider);
                o.str(key!("region"), region);
            });
        }
        if let Some(user) = &self.user {
            o.obj(key!("user"), |o| user.write(o));
        }
        if let Some(id) = self.auth_protocol_id {
            o.num(key!("auth_protocol_id"), id);
        }
        if let Some(protocol) = self.auth_protocol {
            o.str(key!("auth_protocol"), protocol);
        }
        if let Some(mfa) = self.is_mfa {
            o.key(key!("is_mfa"))
                .extend_from_slice(if mfa { b"true" } else { b"false" });
        }
        if let Some(service) = &self.service {
            o.obj(key!("service"), |o| o.str(key!("name"), service.name));
        }
        if let Some(Database {
            name,
            type_id,
            kind,
        }) = &self.database
        {
            o.obj(key!("database"), |o| {
                o.str(key!("name"), name);
                o.num(key!("type_id"), *type_id);
                o.str(key!("type"), kind);
            });
        }
        if let Some(table) = &self.table {
            o.obj(key!("table"), |o| o.str(key!("name"), table.name));
        }
        if let Some(finding) = &self.finding_info {
            o.obj(key!("finding_info"), |o| finding.write(o));
        }
        o.obj(key!("unmapped"), |o| {
            o.str(key!("kind"), self.unmapped.kind);
            o.str(key!("outcome"), self.unmapped.outcome);
            o.obj(key!("params"), |o| self.unmapped.params.write(o));
            if let Some(key) = self.unmapped.api_key_id {
                o.num(key!("api_key_id"), key);
            }
        });
        o.close();
    }
}

impl Metadata<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str(key!("version"), self.version);
        o.num_str(key!("uid"), self.uid);
        o.num(key!("sequence"), self.sequence);
        o.str(key!("log_name"), self.log_name);
        o.num(key!("logged_time"), self.logged_time);
        let product = &self.product;
        o.cached(
            &PRODUCTS,
            |(name, vendor, version)| {
                (name.as_str(), vendor.as_str(), version.as_str())
                    == (product.name, product.vendor_name, product.version)
            },
            || {
                (
                    product.name.to_owned(),
                    product.vendor_name.to_owned(),
                    product.version.to_owned(),
                )
            },
            |o| {
                o.obj(key!("product"), |o| {
                    o.str(key!("name"), product.name);
                    o.str(key!("vendor_name"), product.vendor_name);
                    o.str(key!("version"), product.version);
                });
            },
        );
        if let Some(id) = self.correlation_uid {
            o.num_str(key!("correlation_uid"), id);
        }
    }
}

impl Actor<'_> {
    /// The `actor` member of the event.
    fn write(&self, o: &mut Obj<'_>) {
        o.obj(key!("actor"), |o| match self {
            Actor::Service { app_name, user } => {
                o.str(key!("app_name"), app_name);
                match user {
                    Some(ServedUser::Admin(admin)) => o.obj(key!("user"), |o| admin.write(o)),
                    Some(ServedUser::Customer(user)) => o.obj(key!("user"), |o| user.write(o)),
                    None => {}
                }
            }
            Actor::App { app_name } => o.str(key!("app_name"), app_name),
            Actor::Admin { user } => o.obj(key!("user"), |o| user.write(o)),
            Actor::User { user } => o.obj(key!("user"), |o| user.write(o)),
        });
    }
}

impl Admin<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str(key!("name"), self.name);
        o.num(key!("type_id"), self.type_id);
        o.str(key!("type"), self.kind);
    }
}

impl User {
    fn write(&self, o: &mut Obj<'_>) {
        if let Some(uid) = self.uid {
            o.num_str(key!("uid"), uid);
        }
        if let Some(id) = self.type_id {
            o.num(key!("type_id"), id);
        }
        if let Some(kind) = self.kind {
            o.str(key!("type"), kind);
        }
        if let Some(credential) = self.credential_uid {
            o.num_str(key!("credential_uid"), credential);
        }
    }
}

impl Api<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str(key!("operation"), self.operation);
        o.obj(key!("request"), |o| {
            o.num_str(key!("uid"), self.request.uid)
        });
        o.obj(key!("response"), |o| {
            if let Some(code) = self.response.code {
                o.num(key!("code"), code);
            }
        });
    }
}

impl FindingInfo<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str(key!("uid"), self.uid);
        o.str(key!("title"), self.title);
        {
            let out = o.key(key!("types"));
            out.push(b'[');
            for (i, kind) in self.types.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, kind);
            }
            out.push(b']');
        }
        if let Some(analytic) = &self.analytic {
            o.obj(key!("analytic"), |o| {
                o.str(key!("name"), analytic.name);
                o.num(key!("type_id"), analytic.type_id);
                o.str(key!("type"), analytic.kind);
            });
        }
        if let Some(related) = &self.related_events {
            let out = o.key(key!("related_events"));
            out.push(b'[');
            let uids = related.0.split(',').filter(|uid| !uid.is_empty());
            for (i, uid) in uids.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let mut event = Obj::open(out);
                event.str(key!("uid"), uid);
                event.close();
            }
            out.push(b']');
        }
    }
}

impl Params<'_> {
    /// The parameters as members; a repeated name keeps its last value.
    fn write(&self, o: &mut Obj<'_>) {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if self.repeated_later(i, name) {
                continue;
            }
            if !o.empty {
                o.out.push(b',');
            }
            o.empty = false;
            string(o.out, name);
            o.out.push(b':');
            string(o.out, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The word-at-a-time scan finds exactly the strings with a byte to escape, at
        /// any length and any position of that byte (every byte value included).
        #[test]
        fn the_scan_finds_what_needs_escaping(
            bytes in prop::collection::vec(any::<u8>(), 0..40),
            planted in prop::option::of((any::<prop::sample::Index>(), 0u8..0x20)),
        ) {
            let mut bytes = bytes;
            if let Some((at, control)) = planted
                && !bytes.is_empty()
            {
                let i = at.index(bytes.len());
                bytes[i] = control;
            }
            prop_assert_eq!(
                any_needs_escape(&bytes),
                bytes.iter().any(|&b| needs_escape(b))
            );
        }
    }

    #[test]
    fn each_byte_value_in_each_position_of_a_word() {
        for position in 0..17 {
            for b in 0..=u8::MAX {
                let mut bytes = vec![b'a'; 17];
                bytes[position] = b;
                assert_eq!(
                    any_needs_escape(&bytes),
                    needs_escape(b),
                    "{b:#04x} at {position}"
                );
            }
        }
    }

    thread_local! {
        static RUNS: Runs<u8> = const { RefCell::new(Vec::new()) };
    }

    /// One object: `before` members, then the run cached under `run` (`"a":1`, or nothing
    /// for run 0), then `"b":2`.
    fn with_cached_run(before: bool, run: u8) -> String {
        let mut out = Vec::new();
        let mut o = Obj::open(&mut out);
        if before {
            o.num(key!("z"), 0);
        }
        o.cached_by(&RUNS, run, |o| {
            if run != 0 {
                o.num(key!("a"), 1);
            }
        });
        o.num(key!("b"), 2);
        o.close();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_cached_run_is_copied_as_written_first_or_not() {
        for _ in 0..2 {
            // Written the first time through, copied the second, in either place.
            assert_eq!(with_cached_run(false, 1), r#"{"a":1,"b":2}"#);
            assert_eq!(with_cached_run(true, 1), r#"{"z":0,"a":1,"b":2}"#);
            // A run of no members leaves the object as it was.
            assert_eq!(with_cached_run(false, 0), r#"{"b":2}"#);
            assert_eq!(with_cached_run(true, 0), r#"{"z":0,"b":2}"#);
        }
        assert_eq!(RUNS.with_borrow(Vec::len), 2);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.199",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            ip_text(&mut out, &ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }
}
