//! An [`Event`] written straight to its JSON line, without serde: the monitor writes one
//! for every entry of the log, and `serde_json` spends most of that time escaping the
//! event's fixed keys byte by byte (about half the monitor's CPU under load). Here the
//! keys are written as they are and only the values taken from the entry are escaped.
//!
//! The output is byte for byte what `serde_json::to_vec` makes of the same event (the
//! derived [`serde::Serialize`] stays the definition of the format, for the admin
//! endpoint's JSON values): `every_event_line_is_what_serde_writes` holds the two
//! together for any entry, control characters and non-ASCII text included.

use std::io::Write as _;
use std::net::IpAddr;

use super::{
    Actor, Admin, Api, Cloud, Database, Endpoint, Event, FindingInfo, HttpRequest, Metadata,
    Params, ServedUser, User,
};

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

    /// Starts the member `key`, a name of the format's own (never taken from an entry,
    /// so it needs no escaping), and returns where its value goes.
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(!key.bytes().any(needs_escape), "{key} needs escaping");
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, key: &'static str, value: &str) {
        string(self.key(key), value);
    }

    fn num(&mut self, key: &'static str, value: impl itoa::Integer) {
        number(self.key(key), value);
    }

    /// A number written as a JSON string (as the derived serializer's `display` does).
    fn num_str(&mut self, key: &'static str, value: impl itoa::Integer) {
        let out = self.key(key);
        out.push(b'"');
        number(out, value);
        out.push(b'"');
    }

    fn obj(&mut self, key: &'static str, write: impl FnOnce(&mut Obj<'_>)) {
        let mut inner = Obj::open(self.key(key));
        write(&mut inner);
        inner.close();
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

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

impl Event<'_> {
    /// Appends the event to `out` as one line of JSON, without the line's end.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.num("class_uid", self.class_uid);
        o.str("class_name", self.class_name);
        o.num("category_uid", self.category_uid);
        o.str("category_name", self.category_name);
        o.num("activity_id", self.activity_id);
        o.str("activity_name", self.activity_name);
        o.num("type_uid", self.type_uid);
        {
            let out = o.key("type_name");
            out.push(b'"');
            string_contents(out, self.type_name.class.name());
            out.extend_from_slice(b": ");
            string_contents(out, self.type_name.activity);
            out.push(b'"');
        }
        o.num("time", self.time);
        o.num("severity_id", self.severity_id);
        o.str("severity", self.severity);
        o.num("status_id", self.status_id);
        o.str("status", self.status);
        if let Some(code) = self.status_code {
            o.num_str("status_code", code);
        }
        if let Some(detail) = self.status_detail {
            o.str("status_detail", detail);
        }
        o.num("action_id", self.action_id);
        o.str("action", self.action);
        {
            let entry = self.message.0;
            let out = o.key("message");
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
        o.obj("metadata", |o| self.metadata.write(o));
        self.actor.write(&mut o);
        if let Some(Endpoint { ip }) = &self.src_endpoint {
            o.obj("src_endpoint", |o| {
                let out = o.key("ip");
                out.push(b'"');
                ip_text(out, ip);
                out.push(b'"');
            });
        }
        if let Some(api) = &self.api {
            o.obj("api", |o| api.write(o));
        }
        if let Some(HttpRequest { http_method, url }) = &self.http_request {
            o.obj("http_request", |o| {
                o.str("http_method", http_method);
                o.obj("url", |o| o.str("path", url.path));
            });
        }
        if let Some(Cloud { provider, region }) = &self.cloud {
            o.obj("cloud", |o| {
                o.str("provider", provider);
                o.str("region", region);
            });
        }
        if let Some(user) = &self.user {
            o.obj("user", |o| user.write(o));
        }
        if let Some(id) = self.auth_protocol_id {
            o.num("auth_protocol_id", id);
        }
        if let Some(protocol) = self.auth_protocol {
            o.str("auth_protocol", protocol);
        }
        if let Some(mfa) = self.is_mfa {
            o.key("is_mfa")
                .extend_from_slice(if mfa { b"true" } else { b"false" });
        }
        if let Some(service) = &self.service {
            o.obj("service", |o| o.str("name", service.name));
        }
        if let Some(Database {
            name,
            type_id,
            kind,
        }) = &self.database
        {
            o.obj("database", |o| {
                o.str("name", name);
                o.num("type_id", *type_id);
                o.str("type", kind);
            });
        }
        if let Some(table) = &self.table {
            o.obj("table", |o| o.str("name", table.name));
        }
        if let Some(finding) = &self.finding_info {
            o.obj("finding_info", |o| finding.write(o));
        }
        o.obj("unmapped", |o| {
            o.str("kind", self.unmapped.kind);
            o.str("outcome", self.unmapped.outcome);
            o.obj("params", |o| self.unmapped.params.write(o));
            if let Some(key) = self.unmapped.api_key_id {
                o.num("api_key_id", key);
            }
        });
        o.close();
    }
}

impl Metadata<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str("version", self.version);
        o.num_str("uid", self.uid);
        o.num("sequence", self.sequence);
        o.str("log_name", self.log_name);
        o.num("logged_time", self.logged_time);
        o.obj("product", |o| {
            o.str("name", self.product.name);
            o.str("vendor_name", self.product.vendor_name);
            o.str("version", self.product.version);
        });
        if let Some(id) = self.correlation_uid {
            o.num_str("correlation_uid", id);
        }
    }
}

impl Actor<'_> {
    /// The `actor` member of the event.
    fn write(&self, o: &mut Obj<'_>) {
        o.obj("actor", |o| match self {
            Actor::Service { app_name, user } => {
                o.str("app_name", app_name);
                match user {
                    Some(ServedUser::Admin(admin)) => o.obj("user", |o| admin.write(o)),
                    Some(ServedUser::Customer(user)) => o.obj("user", |o| user.write(o)),
                    None => {}
                }
            }
            Actor::App { app_name } => o.str("app_name", app_name),
            Actor::Admin { user } => o.obj("user", |o| user.write(o)),
            Actor::User { user } => o.obj("user", |o| user.write(o)),
        });
    }
}

impl Admin<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str("name", self.name);
        o.num("type_id", self.type_id);
        o.str("type", self.kind);
    }
}

impl User {
    fn write(&self, o: &mut Obj<'_>) {
        if let Some(uid) = self.uid {
            o.num_str("uid", uid);
        }
        if let Some(id) = self.type_id {
            o.num("type_id", id);
        }
        if let Some(kind) = self.kind {
            o.str("type", kind);
        }
        if let Some(credential) = self.credential_uid {
            o.num_str("credential_uid", credential);
        }
    }
}

impl Api<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str("operation", self.operation);
        o.obj("request", |o| o.num_str("uid", self.request.uid));
        o.obj("response", |o| {
            if let Some(code) = self.response.code {
                o.num("code", code);
            }
        });
    }
}

impl FindingInfo<'_> {
    fn write(&self, o: &mut Obj<'_>) {
        o.str("uid", self.uid);
        o.str("title", self.title);
        {
            let out = o.key("types");
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
            o.obj("analytic", |o| {
                o.str("name", analytic.name);
                o.num("type_id", analytic.type_id);
                o.str("type", analytic.kind);
            });
        }
        if let Some(related) = &self.related_events {
            let out = o.key("related_events");
            out.push(b'[');
            let uids = related.0.split(',').filter(|uid| !uid.is_empty());
            for (i, uid) in uids.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let mut event = Obj::open(out);
                event.str("uid", uid);
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
