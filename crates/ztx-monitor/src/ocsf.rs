//! Every audit-log entry as an OCSF event (Open Cybersecurity Schema Framework,
//! schema [`OCSF_VERSION`]), for a SIEM. One entry is one event; the event's
//! `metadata.uid` and `metadata.sequence` are the entry's index in the log, so an event
//! can be checked against the signed log with an inclusion proof.
//!
//! # Mapping
//!
//! | entry | OCSF class | activity |
//! |---|---|---|
//! | request refused while proving who sent it (bad signature, expired timestamp, unknown or frozen key, address not on the key's allow-list) | Authentication (3002) | Logon (1), status Failure |
//! | request for the audit log itself (`/ztx/v1/audit/…`) | Datastore Activity (6005) | Read (1) |
//! | any other request, allowed or refused | API Activity (6003) | by HTTP method: POST Create (1), GET Read (2), PUT Update (3), DELETE Delete (4), else Other (99) |
//! | admin command reading data (`… events`, `… export`) | Datastore Activity (6005) | Read (1) |
//! | other admin command, change of a key or of a customer's webhook | Account Change (3001) | by its verb: create Create (1), enable Enable (2), disable Disable (5), delete Delete (6), permissions or allow-list Attach Policy (7), freeze Lock (9), unfreeze Unlock (12), else (`webhook set`, `webhook remove`) Other (99) |
//! | detection (`detect <rule>`) | Detection Finding (2004) | Create (1) |
//! | response to a detection (ban, notification) | Detection Finding (2004) | Update (2), same `finding_info.uid` |
//! | publication (a proof-of-reserves root) | Datastore Activity (6005) | Write (5) |
//! | data access (a store call) | Datastore Activity (6005) | as the entry's `activity`: Read (1), Update (2), Query (4), Write (5), Create (6), Delete (7), else Other (99); `database` ztx (Relational), `table` the tables it touched, `actor.app_name` the service and `actor.user` the principal |
//!
//! Common to all: `time` (the entry's, in ms), `metadata` (schema version, product,
//! `log_name` = the log's origin, `uid`/`sequence` = index, `correlation_uid` = request
//! id), `status_id` (Success 1, Failure 2 — a denial is a failure, its reason in
//! `status_detail`, the error code the caller got in `status_code`), `action_id` (1
//! Allowed, 2 Denied), `actor` (the customer as `user`, an operator as an Admin `user`,
//! the detector as `app_name`), `src_endpoint.ip`. What OCSF has no attribute for —
//! the entry kind, the API key's number, the logged parameters — is under `unmapped`.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use ztx_audit::{Denial, Entry, Kind, Outcome, Text};

mod line;

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// What the events say produced them.
#[derive(Debug, Clone)]
pub struct Product {
    pub name: String,
    pub version: String,
    /// The audit log's origin, as its checkpoints name it.
    pub log_name: String,
}

/// An OCSF event class, with the numbers the schema gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    AccountChange,
    Authentication,
    DetectionFinding,
    ApiActivity,
    DatastoreActivity,
}

impl Class {
    pub fn uid(self) -> u32 {
        match self {
            Class::AccountChange => 3001,
            Class::Authentication => 3002,
            Class::DetectionFinding => 2004,
            Class::ApiActivity => 6003,
            Class::DatastoreActivity => 6005,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::AccountChange => "Account Change",
            Class::Authentication => "Authentication",
            Class::DetectionFinding => "Detection Finding",
            Class::ApiActivity => "API Activity",
            Class::DatastoreActivity => "Datastore Activity",
        }
    }

    fn category(self) -> (u32, &'static str) {
        match self {
            Class::DetectionFinding => (2, "Findings"),
            Class::AccountChange | Class::Authentication => (3, "Identity & Access Management"),
            Class::ApiActivity | Class::DatastoreActivity => (6, "Application Activity"),
        }
    }
}

/// The action of the entry logged for a refused admin TLS handshake.
pub const ADMIN_HANDSHAKE: &str = "admin TLS handshake";

/// The class and activity (id, name) of an entry.
pub fn classify(entry: &Entry) -> (Class, u32, &'static str) {
    match entry.kind {
        Kind::Request => {
            let authentication = matches!(
                entry.denial,
                Some(
                    Denial::BadSignature
                        | Denial::ExpiredTimestamp
                        | Denial::UnknownKey
                        | Denial::KeyFrozen
                        | Denial::IpNotAllowed
                )
            );
            let (method, path) = entry.action.split_once(' ').unwrap_or(("", &entry.action));
            if authentication {
                (Class::Authentication, 1, "Logon")
            } else if path.starts_with("/ztx/v1/audit/") {
                (Class::DatastoreActivity, 1, "Read")
            } else {
                let (id, name) = match method {
                    "POST" => (1, "Create"),
                    "GET" => (2, "Read"),
                    "PUT" => (3, "Update"),
                    "DELETE" => (4, "Delete"),
                    _ => (99, "Other"),
                };
                (Class::ApiActivity, id, name)
            }
        }
        Kind::Admin if reads_data(&entry.action) => (Class::DatastoreActivity, 1, "Read"),
        // An operator's connection whose certificate was refused: a failed logon.
        Kind::Admin if entry.action == ADMIN_HANDSHAKE => (Class::Authentication, 1, "Logon"),
        Kind::Admin | Kind::KeyChange => {
            let (id, name) = account_activity(&entry.action);
            (Class::AccountChange, id, name)
        }
        Kind::Response if entry.action.starts_with("detect ") => {
            (Class::DetectionFinding, 1, "Create")
        }
        Kind::Response => (Class::DetectionFinding, 2, "Update"),
        Kind::Publication => (Class::DatastoreActivity, 5, "Write"),
        Kind::DataAccess => {
            let (id, name) = match param(entry, "activity") {
                Some("read") => (1, "Read"),
                Some("update") => (2, "Update"),
                Some("query") => (4, "Query"),
                Some("write") => (5, "Write"),
                Some("create") => (6, "Create"),
                Some("delete") => (7, "Delete"),
                _ => (99, "Other"),
            };
            (Class::DatastoreActivity, id, name)
        }
    }
}

fn reads_data(action: &str) -> bool {
    action.ends_with(" events") || action.ends_with(" export") || action.contains("/events")
}

fn account_activity(action: &str) -> (u32, &'static str) {
    let verb = action.rsplit(' ').next().unwrap_or_default();
    match verb {
        "create" => (1, "Create"),
        "enable" => (2, "Enable"),
        "disable" => (5, "Disable"),
        "delete" => (6, "Delete"),
        "permissions" | "allow-list" => (7, "Attach Policy"),
        "freeze" => (9, "Lock"),
        "unfreeze" => (12, "Unlock"),
        _ => (99, "Other"),
    }
}

fn severity(entry: &Entry, class: Class) -> (u32, &'static str) {
    if class == Class::DetectionFinding {
        return match param(entry, "severity") {
            Some("high") => (4, "High"),
            Some("medium") => (3, "Medium"),
            Some("low") => (2, "Low"),
            _ => (1, "Informational"),
        };
    }
    match entry.outcome {
        Outcome::Denied => (2, "Low"),
        Outcome::Success | Outcome::Failure => (1, "Informational"),
    }
}

/// The value of the entry's parameter `name`, if logged.
pub fn param<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry
        .params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The OCSF event of the entry at `index`, as a JSON value.
pub fn event(index: u64, entry: &Entry, product: &Product) -> Value {
    serde_json::to_value(Event::new(index, entry, product)).unwrap_or(Value::Null)
}

/// The OCSF event of an entry, borrowing from it: serialized straight to JSON, with no
/// tree of values built in between (the monitor writes one per entry of the log).
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u64,
    #[serde(serialize_with = "display")]
    type_name: TypeName,
    time: u64,
    severity_id: u32,
    severity: &'static str,
    status_id: u32,
    status: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_some"
    )]
    status_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_detail: Option<&'static str>,
    action_id: u32,
    action: &'static str,
    #[serde(serialize_with = "display")]
    message: Message<'a>,
    metadata: Metadata<'a>,
    actor: Actor<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_endpoint: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<Api<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud: Option<Cloud<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_mfa: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<Service<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<Database>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<Table<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finding_info: Option<FindingInfo<'a>>,
    unmapped: Unmapped<'a>,
}

impl<'a> Event<'a> {
    /// The event of the entry at `index`.
    pub fn new(index: u64, entry: &'a Entry, product: &'a Product) -> Event<'a> {
        let (class, activity_id, activity_name) = classify(entry);
        let (category_uid, category_name) = class.category();
        let (severity_id, severity) = severity(entry, class);
        let (status_id, status) = match entry.outcome {
            Outcome::Success => (1, "Success"),
            Outcome::Failure | Outcome::Denied => (2, "Failure"),
        };
        let denied = entry.outcome == Outcome::Denied;
        let (method, path) = entry.action.split_once(' ').unwrap_or(("", &entry.action));
        let mut event = Event {
            class_uid: class.uid(),
            class_name: class.name(),
            category_uid,
            category_name,
            activity_id,
            activity_name,
            type_uid: u64::from(class.uid()) * 100 + u64::from(activity_id),
            type_name: TypeName {
                class,
                activity: activity_name,
            },
            time: entry.time_ms,
            severity_id,
            severity,
            status_id,
            status,
            status_code: entry.code,
            status_detail: entry.denial.map(Denial::as_str),
            action_id: if denied { 2 } else { 1 },
            action: if denied { "Denied" } else { "Allowed" },
            message: Message(entry),
            metadata: Metadata {
                version: OCSF_VERSION,
                uid: index,
                sequence: index,
                log_name: &product.log_name,
                logged_time: entry.time_ms,
                product: ProductInfo {
                    name: &product.name,
                    vendor_name: &product.name,
                    version: &product.version,
                },
                correlation_uid: (entry.request_id != 0).then_some(entry.request_id),
            },
            actor: actor(entry),
            src_endpoint: entry.client_ip.map(|ip| Endpoint { ip }),
            api: None,
            http_request: None,
            cloud: None,
            user: None,
            auth_protocol_id: None,
            auth_protocol: None,
            is_mfa: None,
            service: None,
            database: None,
            table: None,
            finding_info: None,
            unmapped: Unmapped {
                kind: entry.kind.as_str(),
                outcome: entry.outcome.as_str(),
                params: Params(&entry.params),
                api_key_id: entry.api_key,
            },
        };
        match class {
            Class::ApiActivity => {
                event.api = Some(Api {
                    operation: &entry.action,
                    request: Uid {
                        uid: entry.request_id,
                    },
                    response: ApiResponse { code: entry.code },
                });
                event.http_request = Some(HttpRequest {
                    http_method: method,
                    url: Url { path },
                });
                event.cloud = Some(Cloud {
                    provider: &product.name,
                    region: &product.log_name,
                });
            }
            Class::Authentication => {
                event.user = Some(User::of(entry));
                event.auth_protocol_id = Some(99);
                event.auth_protocol = Some("API key signature");
                event.is_mfa = Some(false);
                event.service = Some(Service {
                    name: entry.action.split_once(' ').map_or("", |(_, p)| p),
                });
            }
            Class::AccountChange => event.user = Some(User::of(entry)),
            Class::DatastoreActivity if entry.kind == Kind::DataAccess => {
                event.database = Some(Database {
                    name: "ztx",
                    type_id: 1,
                    kind: "Relational",
                });
                event.table = param(entry, "tables").map(|name| Table { name });
            }
            Class::DatastoreActivity => {
                event.database = Some(Database {
                    name: "audit_log",
                    type_id: 99,
                    kind: "Transparency log",
                });
            }
            Class::DetectionFinding => event.finding_info = Some(FindingInfo::of(entry)),
        }
        event
    }
}

fn display<S: Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

#[allow(clippy::ref_option)] // the signature serde's `serialize_with` calls
fn display_some<S: Serializer>(
    value: &Option<impl std::fmt::Display>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.collect_str(value),
        None => s.serialize_none(),
    }
}

#[derive(Debug)]
struct TypeName {
    class: Class,
    activity: &'static str,
}

impl std::fmt::Display for TypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class.name(), self.activity)
    }
}

#[derive(Debug)]
struct Message<'a>(&'a Entry);

impl std::fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.action, self.0.outcome.as_str())?;
        if let Some(denial) = self.0.denial {
            write!(f, " ({})", denial.as_str())?;
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct Metadata<'a> {
    version: &'static str,
    #[serde(serialize_with = "display")]
    uid: u64,
    sequence: u64,
    log_name: &'a str,
    logged_time: u64,
    product: ProductInfo<'a>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_some"
    )]
    correlation_uid: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ProductInfo<'a> {
    name: &'a str,
    vendor_name: &'a str,
    version: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Actor<'a> {
    Service {
        app_name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<ServedUser<'a>>,
    },
    App {
        app_name: &'a str,
    },
    Admin {
        user: Admin<'a>,
    },
    User {
        user: User,
    },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ServedUser<'a> {
    Admin(Admin<'a>),
    Customer(User),
}

#[derive(Debug, Serialize)]
struct Admin<'a> {
    name: &'a str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The customer (and the key) an entry is about.
#[derive(Debug, Serialize)]
struct User {
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_some"
    )]
    uid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_id: Option<u32>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_some"
    )]
    credential_uid: Option<u64>,
}

impl User {
    fn of(entry: &Entry) -> User {
        User {
            uid: entry.customer,
            type_id: entry.customer.map(|_| 1),
            kind: entry.customer.map(|_| "User"),
            credential_uid: entry.api_key,
        }
    }
}

fn actor(entry: &Entry) -> Actor<'_> {
    if entry.kind == Kind::DataAccess {
        // The service made the call; the user is whom it served.
        let service = param(entry, "service").unwrap_or_default();
        let user = match (&entry.operator, param(entry, "principal")) {
            (Some(operator), _) => Some(ServedUser::Admin(Admin {
                name: operator,
                type_id: 2,
                kind: "Admin",
            })),
            // The principal's customer, which a platform-segment call (a key looked
            // up) does not carry as the entry's customer.
            (None, Some(p)) => p
                .strip_prefix("customer ")
                .and_then(|id| id.parse::<u64>().ok())
                .map(|id| {
                    ServedUser::Customer(User {
                        uid: Some(id),
                        type_id: Some(1),
                        kind: Some("User"),
                        credential_uid: entry.api_key,
                    })
                }),
            _ => None,
        };
        return Actor::Service {
            app_name: service,
            user,
        };
    }
    match (&entry.operator, entry.kind) {
        (Some(operator), Kind::Response) => Actor::App { app_name: operator },
        (Some(operator), Kind::KeyChange) if entry.action.ends_with(" freeze") => {
            Actor::App { app_name: operator }
        }
        (Some(operator), _) => Actor::Admin {
            user: Admin {
                name: operator,
                type_id: 2,
                kind: "Admin",
            },
        },
        (None, _) => Actor::User {
            user: User::of(entry),
        },
    }
}

#[derive(Debug, Serialize)]
struct Endpoint {
    #[serde(serialize_with = "display")]
    ip: std::net::IpAddr,
}

#[derive(Debug, Serialize)]
struct Uid {
    #[serde(serialize_with = "display")]
    uid: u64,
}

#[derive(Debug, Serialize)]
struct Api<'a> {
    operation: &'a str,
    request: Uid,
    response: ApiResponse,
}

#[derive(Debug, Serialize)]
struct ApiResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
}

#[derive(Debug, Serialize)]
struct HttpRequest<'a> {
    http_method: &'a str,
    url: Url<'a>,
}

#[derive(Debug, Serialize)]
struct Url<'a> {
    path: &'a str,
}

#[derive(Debug, Serialize)]
struct Cloud<'a> {
    provider: &'a str,
    region: &'a str,
}

#[derive(Debug, Serialize)]
struct Service<'a> {
    name: &'a str,
}

#[derive(Debug, Serialize)]
struct Database {
    name: &'static str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct Table<'a> {
    name: &'a str,
}

#[derive(Debug, Serialize)]
struct FindingInfo<'a> {
    uid: &'a str,
    title: &'a str,
    types: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    analytic: Option<Analytic<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    related_events: Option<Related<'a>>,
}

impl<'a> FindingInfo<'a> {
    fn of(entry: &'a Entry) -> FindingInfo<'a> {
        let rule = param(entry, "rule");
        let events = param(entry, "events").filter(|e| e.split(',').any(|s| !s.is_empty()));
        FindingInfo {
            uid: param(entry, "finding").unwrap_or_default(),
            title: param(entry, "title").unwrap_or(&entry.action),
            types: [rule.unwrap_or_default()],
            analytic: rule.map(|name| Analytic {
                name,
                type_id: 1,
                kind: "Rule",
            }),
            related_events: events.map(Related),
        }
    }
}

#[derive(Debug, Serialize)]
struct Analytic<'a> {
    name: &'a str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The comma-separated indices of a finding's events, as `[{"uid": …}, …]`.
#[derive(Debug)]
struct Related<'a>(&'a str);

impl Serialize for Related<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.0
                .split(',')
                .filter(|uid| !uid.is_empty())
                .map(|uid| EventRef { uid }),
        )
    }
}

#[derive(Debug, Serialize)]
struct EventRef<'a> {
    uid: &'a str,
}

#[derive(Debug, Serialize)]
struct Unmapped<'a> {
    kind: &'static str,
    outcome: &'static str,
    params: Params<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_id: Option<u64>,
}

/// The logged parameters as an object (a repeated name keeps its last value, as a
/// JSON reader would).
#[derive(Debug)]
struct Params<'a>(&'a [(Text, Text)]);

impl Serialize for Params<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if !self.repeated_later(i, name) {
                map.serialize_entry(name.as_str(), value.as_str())?;
            }
        }
        map.end()
    }
}

impl Params<'_> {
    /// Whether the parameter at `i`, named `name`, is given again after it.
    fn repeated_later(&self, i: usize, name: &str) -> bool {
        self.0
            .get(i + 1..)
            .is_some_and(|rest| rest.iter().any(|(n, _)| n == name))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use serde_json::json;
    use ztx_audit::Hash;

    use super::*;

    fn product() -> Product {
        Product {
            name: "ztx".into(),
            version: "0.1.0".into(),
            log_name: "ztx.local/audit/test".into(),
        }
    }

    fn request(action: &str, outcome: Outcome, denial: Option<Denial>) -> Entry {
        Entry {
            prev: Hash::ZERO,
            time_ms: 1_700_000_000_123,
            kind: Kind::Request,
            request_id: 77,
            customer: Some(3),
            api_key: Some(9),
            operator: None,
            client_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5))),
            action: action.into(),
            params: vec![("symbol".into(), "BTCUSDT".into())],
            outcome,
            denial,
            code: denial.map(|_| -2015),
        }
    }

    #[test]
    fn an_order_is_api_activity_create() {
        let e = event(
            12,
            &request("POST /api/v3/order", Outcome::Success, None),
            &product(),
        );
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["category_uid"], 6);
        assert_eq!(e["activity_id"], 1);
        assert_eq!(e["type_uid"], 600_301);
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["time"], 1_700_000_000_123_u64);
        assert_eq!(e["metadata"]["uid"], "12");
        assert_eq!(e["metadata"]["version"], OCSF_VERSION);
        assert_eq!(e["metadata"]["correlation_uid"], "77");
        assert_eq!(e["api"]["operation"], "POST /api/v3/order");
        assert_eq!(e["http_request"]["url"]["path"], "/api/v3/order");
        assert_eq!(e["src_endpoint"]["ip"], "203.0.113.5");
        assert_eq!(e["actor"]["user"]["uid"], "3");
        assert_eq!(e["unmapped"]["api_key_id"], 9);
        assert_eq!(e["unmapped"]["params"]["symbol"], "BTCUSDT");
    }

    #[test]
    fn a_bad_signature_is_a_failed_authentication() {
        let e = event(
            1,
            &request(
                "GET /api/v3/account",
                Outcome::Denied,
                Some(Denial::BadSignature),
            ),
            &product(),
        );
        assert_eq!(e["class_uid"], 3002);
        assert_eq!(e["category_uid"], 3);
        assert_eq!(e["activity_name"], "Logon");
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["status_detail"], "bad_signature");
        assert_eq!(e["status_code"], "-2015");
        assert_eq!(e["action_id"], 2);
        assert_eq!(e["user"]["uid"], "3");
        assert_eq!(e["user"]["credential_uid"], "9");
    }

    #[test]
    fn a_rate_limited_request_stays_api_activity() {
        let e = event(
            1,
            &request(
                "GET /api/v3/depth",
                Outcome::Denied,
                Some(Denial::RateLimited),
            ),
            &product(),
        );
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["activity_id"], 2);
        assert_eq!(e["status_detail"], "rate_limited");
    }

    #[test]
    fn reading_the_audit_log_is_datastore_activity() {
        let e = event(
            1,
            &request("GET /ztx/v1/audit/checkpoint", Outcome::Success, None),
            &product(),
        );
        assert_eq!(e["class_uid"], 6005);
        assert_eq!(e["activity_name"], "Read");
    }

    #[test]
    fn a_key_freeze_is_an_account_lock_by_the_detector() {
        let mut entry = request("api-key freeze", Outcome::Success, None);
        entry.kind = Kind::KeyChange;
        entry.operator = Some("ztx-monitor".into());
        let e = event(5, &entry, &product());
        assert_eq!(e["class_uid"], 3001);
        assert_eq!(e["activity_id"], 9);
        assert_eq!(e["actor"]["app_name"], "ztx-monitor");
        assert_eq!(e["user"]["credential_uid"], "9");
        entry.action = "api-key unfreeze".into();
        entry.operator = None;
        assert_eq!(event(6, &entry, &product())["activity_id"], 12);
    }

    #[test]
    fn a_webhook_change_is_an_account_change_of_the_customer() {
        let mut entry = request("webhook set", Outcome::Success, None);
        entry.kind = Kind::KeyChange;
        entry.params = vec![("host".into(), "hooks.example.com".into())];
        let e = event(7, &entry, &product());
        assert_eq!(e["class_uid"], 3001);
        assert_eq!(
            (e["activity_id"].clone(), e["activity_name"].clone()),
            (99.into(), "Other".into())
        );
        assert_eq!(e["unmapped"]["params"]["host"], "hooks.example.com");
        entry.action = "webhook remove".into();
        assert_eq!(event(8, &entry, &product())["class_uid"], 3001);
    }

    /// The detector's finding `finding` of the events `events`, high severity.
    fn detection(finding: &str, events: &str) -> Entry {
        let mut entry = request("detect bad_signatures_per_key", Outcome::Success, None);
        entry.kind = Kind::Response;
        entry.operator = Some("ztx-monitor".into());
        entry.params = vec![
            ("finding".into(), finding.into()),
            ("rule".into(), "bad_signatures_per_key".into()),
            ("events".into(), events.into()),
            ("severity".into(), "high".into()),
        ];
        entry
    }

    #[test]
    fn a_detection_links_the_events_behind_it() {
        let mut entry = detection("bad_signatures_per_key-41", "37,38,41");
        entry
            .params
            .push(("title".into(), "repeated bad signatures".into()));
        let e = event(42, &entry, &product());
        assert_eq!(e["class_uid"], 2004);
        assert_eq!(e["category_uid"], 2);
        assert_eq!(e["activity_id"], 1);
        assert_eq!(e["severity_id"], 4);
        assert_eq!(e["finding_info"]["uid"], "bad_signatures_per_key-41");
        assert_eq!(
            e["finding_info"]["analytic"]["name"],
            "bad_signatures_per_key"
        );
        assert_eq!(
            e["finding_info"]["related_events"],
            json!([{ "uid": "37" }, { "uid": "38" }, { "uid": "41" }])
        );
        entry.action = "ban ip".into();
        let update = event(43, &entry, &product());
        assert_eq!(update["class_uid"], 2004);
        assert_eq!(update["activity_id"], 2);
        assert_eq!(update["finding_info"]["uid"], "bad_signatures_per_key-41");
    }

    #[test]
    fn a_refused_operator_certificate_is_a_failed_logon() {
        let mut entry = request(ADMIN_HANDSHAKE, Outcome::Denied, Some(Denial::UnknownKey));
        entry.kind = Kind::Admin;
        let e = serde_json::to_value(Event::new(1, &entry, &product())).unwrap();
        assert_eq!(e["class_uid"], 3002, "{e}");
        assert_eq!(e["status"], "Failure", "{e}");
    }

    #[test]
    fn an_admin_command_is_by_an_admin_user() {
        let mut entry = request("admin customer create", Outcome::Success, None);
        entry.kind = Kind::Admin;
        entry.operator = Some("operator@local".into());
        let e = event(1, &entry, &product());
        assert_eq!(e["class_uid"], 3001);
        assert_eq!(e["activity_id"], 1);
        assert_eq!(e["actor"]["user"]["type"], "Admin");
        entry.action = "GET /ztx/admin/v1/events".into();
        assert_eq!(event(2, &entry, &product())["class_uid"], 6005);
    }

    #[test]
    fn a_store_call_is_datastore_activity_by_its_service_for_its_principal() {
        let mut entry = request("store orders", Outcome::Success, None);
        entry.kind = Kind::DataAccess;
        entry.customer = Some(7);
        entry.params = vec![
            ("service".into(), "api".into()),
            ("principal".into(), "customer 7".into()),
            ("activity".into(), "query".into()),
            ("tables".into(), "orders,order_index".into()),
            ("rows".into(), "3".into()),
        ];
        let e = event(11, &entry, &product());
        assert_eq!(e["class_uid"], 6005, "{e}");
        // The user is the principal, not the segment: here they differ.
        entry.customer = None;
        assert_eq!(event(11, &entry, &product())["actor"]["user"]["uid"], "7");
        entry.customer = Some(7);
        assert_eq!(e["activity_id"], 4);
        assert_eq!(e["type_uid"], 600_504);
        assert_eq!(e["actor"]["app_name"], "api");
        assert_eq!(e["actor"]["user"]["uid"], "7");
        assert_eq!(e["database"]["name"], "ztx");
        assert_eq!(e["table"]["name"], "orders,order_index");
        assert_eq!(e["unmapped"]["kind"], "data_access");
        entry.params[2].1 = "write".into();
        entry.params[1].1 = "platform".into();
        entry.customer = None;
        let e = event(12, &entry, &product());
        assert_eq!(e["activity_id"], 5);
        assert!(e["actor"].get("user").is_none(), "{e}");
        entry.operator = Some("spiffe://ztx.local/operator/ana".into());
        entry.params[1].1 = "operator spiffe://ztx.local/operator/ana".into();
        let e = event(13, &entry, &product());
        assert_eq!(e["actor"]["user"]["type"], "Admin");
        assert_eq!(e["actor"]["app_name"], "api");
    }

    fn any_entry() -> impl Strategy<Value = Entry> {
        let kind = prop::sample::select(Kind::ALL.to_vec());
        let denial = prop::option::of(prop::sample::select(Denial::ALL.to_vec()));
        (
            kind,
            denial,
            any::<u64>(),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<[u8; 4]>()),
            "[A-Z]{0,6} [ -~]{0,30}",
            prop::collection::vec(("[a-z]{1,8}", "[ -~]{0,12}"), 0..4),
        )
            .prop_map(
                |(kind, denial, time_ms, customer, ip, action, params)| Entry {
                    prev: Hash::ZERO,
                    time_ms,
                    kind,
                    request_id: time_ms / 3,
                    customer,
                    api_key: customer.map(|c| c / 2),
                    operator: None,
                    client_ip: ip.map(IpAddr::from),
                    action: action.into(),
                    params: ztx_audit::entry::params(params),
                    outcome: if denial.is_some() {
                        Outcome::Denied
                    } else {
                        Outcome::Success
                    },
                    denial,
                    code: denial.map(|_| -1),
                },
            )
    }

    /// Text heavy in what JSON must escape: every control character, quotes and
    /// backslashes, among letters and any other character.
    fn text() -> impl Strategy<Value = String> {
        let char = prop_oneof![
            Just('"'),
            Just('\\'),
            prop::char::range('\u{0}', '\u{1f}'),
            prop::char::range('a', 'z'),
            any::<char>(),
        ];
        prop::collection::vec(char, 0..16).prop_map(String::from_iter)
    }

    proptest! {
        /// Every entry becomes an event of one of the five classes, with the attributes
        /// every OCSF event must have, numbered as the schema numbers them, and naming
        /// its place in the log.
        #[test]
        fn every_entry_is_a_well_formed_event(entry in any_entry(), index in any::<u64>()) {
            let e = event(index, &entry, &product());
            let class = e["class_uid"].as_u64().unwrap();
            prop_assert!([2004, 3001, 3002, 6003, 6005].contains(&class));
            let activity = e["activity_id"].as_u64().unwrap();
            prop_assert_eq!(e["type_uid"].as_u64(), Some(class * 100 + activity));
            prop_assert_eq!(e["category_uid"].as_u64(), Some(class / 1000));
            for required in ["time", "severity_id", "metadata", "status_id", "class_name"] {
                prop_assert!(e.get(required).is_some(), "{required} missing");
            }
            prop_assert_eq!(e["metadata"]["sequence"].as_u64(), Some(index));
            prop_assert_eq!(e["time"].as_u64(), Some(entry.time_ms));
            prop_assert_eq!(e["status_id"].as_u64() == Some(1), entry.outcome == Outcome::Success);
            // One line of JSON, as the file and the endpoint carry it.
            prop_assert!(!serde_json::to_string(&e).unwrap().contains('\n'));
        }

        /// The file's own writer writes exactly what serde_json writes of the event, for
        /// any text in the entry: quotes, backslashes, control characters, non-ASCII.
        #[test]
        fn every_event_line_is_what_serde_writes(
            mut entry in any_entry(),
            index in any::<u64>(),
            operator in prop::option::of(text()),
            action in text(),
            params in prop::collection::vec((text(), text()), 0..4),
            repeated in any::<bool>(),
            code in prop::option::of(any::<i32>()),
            ipv6 in prop::option::of(any::<[u8; 16]>()),
            log_name in text(),
        ) {
            let product = product();
            let same = |entry: &Entry, product: &Product| {
                let serde = serde_json::to_vec(&Event::new(index, entry, product)).unwrap();
                let mut own = Vec::new();
                Event::new(index, entry, product).write_json(&mut own);
                (own == serde).then_some(()).ok_or_else(|| {
                    TestCaseError::fail(format!(
                        "{} != {}",
                        String::from_utf8_lossy(&own),
                        String::from_utf8_lossy(&serde)
                    ))
                })
            };
            same(&entry, &product)?;
            // Arbitrary text everywhere the entry and the product have text, a repeated
            // parameter, an IPv6 address.
            entry.operator = operator.map(Into::into);
            entry.action = action.into();
            entry.params = ztx_audit::entry::params(params);
            if repeated && let Some(first) = entry.params.first().cloned() {
                entry.params.push((first.0, "again".into()));
            }
            entry.code = code;
            if let Some(ip) = ipv6 {
                entry.client_ip = Some(IpAddr::from(ip));
            }
            let product = Product { log_name, ..product };
            same(&entry, &product)?;
        }
    }

    /// Every class, and each of the event's optional parts, written by both writers.
    #[test]
    fn the_fixed_events_are_written_as_serde_writes_them() {
        let mut access = request("store commit", Outcome::Success, None);
        access.kind = Kind::DataAccess;
        access.params = vec![
            ("service".into(), "engine".into()),
            ("principal".into(), "customer 7".into()),
            ("tables".into(), "orders".into()),
        ];
        let mut admin = request("admin customer create", Outcome::Failure, None);
        admin.kind = Kind::Admin;
        admin.operator = Some("ana \"the\" operator\u{7}".into());
        let mut served = access.clone();
        served.operator = Some("ana".into());
        let entries = [
            request("POST /api/v3/order", Outcome::Success, None),
            request(
                "GET /api/v3/account",
                Outcome::Denied,
                Some(Denial::BadSignature),
            ),
            request("GET /ztx/v1/audit/checkpoint", Outcome::Success, None),
            detection("f-1", "1,,2"),
            access,
            served,
            admin,
        ];
        let other = Product {
            name: "ztx \"next\"".into(),
            version: "2.0.0-rc.1".into(),
            log_name: "elsewhere/audit/1".into(),
        };
        // Twice over: the first time this thread writes the runs of members it caches,
        // the second time it copies them; each time for two products.
        for pass in ["writes", "copies"] {
            for product in [product(), other.clone()] {
                for entry in &entries {
                    let event = Event::new(3, entry, &product);
                    let mut own = Vec::new();
                    event.write_json(&mut own);
                    assert_eq!(
                        String::from_utf8(own).unwrap(),
                        serde_json::to_string(&event).unwrap(),
                        "{pass}: {entry:?}"
                    );
                }
            }
            assert!(line::cached_runs() > 0, "nothing was cached");
        }
    }
}
