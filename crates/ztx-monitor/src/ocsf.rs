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
//! | other admin command, change of a key | Account Change (3001) | by its verb: create Create (1), enable Enable (2), disable Disable (5), delete Delete (6), permissions or allow-list Attach Policy (7), freeze Lock (9), unfreeze Unlock (12), else Other (99) |
//! | detection (`detect <rule>`) | Detection Finding (2004) | Create (1) |
//! | response to a detection (ban, notification) | Detection Finding (2004) | Update (2), same `finding_info.uid` |
//! | publication (a proof-of-reserves root) | Datastore Activity (6005) | Write (5) |
//!
//! Common to all: `time` (the entry's, in ms), `metadata` (schema version, product,
//! `log_name` = the log's origin, `uid`/`sequence` = index, `correlation_uid` = request
//! id), `status_id` (Success 1, Failure 2 — a denial is a failure, its reason in
//! `status_detail`, the error code the caller got in `status_code`), `action_id` (1
//! Allowed, 2 Denied), `actor` (the customer as `user`, an operator as an Admin `user`,
//! the detector as `app_name`), `src_endpoint.ip`. What OCSF has no attribute for —
//! the entry kind, the API key's number, the logged parameters — is under `unmapped`.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use ztx_audit::{Denial, Entry, Kind, Outcome};

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
        Kind::Admin | Kind::KeyChange => {
            let (id, name) = account_activity(&entry.action);
            (Class::AccountChange, id, name)
        }
        Kind::Response if entry.action.starts_with("detect ") => {
            (Class::DetectionFinding, 1, "Create")
        }
        Kind::Response => (Class::DetectionFinding, 2, "Update"),
        Kind::Publication => (Class::DatastoreActivity, 5, "Write"),
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

/// The OCSF event of the entry at `index`.
pub fn event(index: u64, entry: &Entry, product: &Product) -> Value {
    let (class, activity_id, activity_name) = classify(entry);
    let (category_uid, category_name) = class.category();
    let (severity_id, severity_name) = severity(entry, class);
    let (status_id, status) = match entry.outcome {
        Outcome::Success => (1, "Success"),
        Outcome::Failure | Outcome::Denied => (2, "Failure"),
    };
    let mut e = Map::new();
    e.insert("class_uid".into(), json!(class.uid()));
    e.insert("class_name".into(), json!(class.name()));
    e.insert("category_uid".into(), json!(category_uid));
    e.insert("category_name".into(), json!(category_name));
    e.insert("activity_id".into(), json!(activity_id));
    e.insert("activity_name".into(), json!(activity_name));
    e.insert(
        "type_uid".into(),
        json!(u64::from(class.uid()) * 100 + u64::from(activity_id)),
    );
    e.insert(
        "type_name".into(),
        json!(format!("{}: {activity_name}", class.name())),
    );
    e.insert("time".into(), json!(entry.time_ms));
    e.insert("severity_id".into(), json!(severity_id));
    e.insert("severity".into(), json!(severity_name));
    e.insert("status_id".into(), json!(status_id));
    e.insert("status".into(), json!(status));
    if let Some(code) = entry.code {
        e.insert("status_code".into(), json!(code.to_string()));
    }
    if let Some(denial) = entry.denial {
        e.insert("status_detail".into(), json!(denial.as_str()));
    }
    let denied = entry.outcome == Outcome::Denied;
    e.insert("action_id".into(), json!(if denied { 2 } else { 1 }));
    e.insert(
        "action".into(),
        json!(if denied { "Denied" } else { "Allowed" }),
    );
    e.insert("message".into(), json!(message(entry)));
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "uid": index.to_string(),
        "sequence": index,
        "log_name": product.log_name,
        "logged_time": entry.time_ms,
        "product": {
            "name": product.name,
            "vendor_name": product.name,
            "version": product.version,
        },
    });
    if entry.request_id != 0
        && let Some(m) = metadata.as_object_mut()
    {
        m.insert(
            "correlation_uid".into(),
            json!(entry.request_id.to_string()),
        );
    }
    e.insert("metadata".into(), metadata);
    e.insert("actor".into(), actor(entry));
    if let Some(ip) = entry.client_ip {
        e.insert("src_endpoint".into(), json!({ "ip": ip.to_string() }));
    }
    let user = user(entry);
    match class {
        Class::ApiActivity => {
            let (method, path) = entry.action.split_once(' ').unwrap_or(("", &entry.action));
            let mut response = Map::new();
            if let Some(code) = entry.code {
                response.insert("code".into(), json!(code));
            }
            e.insert(
                "api".into(),
                json!({
                    "operation": entry.action,
                    "request": { "uid": entry.request_id.to_string() },
                    "response": response,
                }),
            );
            e.insert(
                "http_request".into(),
                json!({ "http_method": method, "url": { "path": path } }),
            );
            e.insert(
                "cloud".into(),
                json!({ "provider": product.name, "region": product.log_name }),
            );
        }
        Class::Authentication => {
            e.insert("user".into(), user);
            e.insert("auth_protocol_id".into(), json!(99));
            e.insert("auth_protocol".into(), json!("API key signature"));
            e.insert("is_mfa".into(), json!(false));
            e.insert(
                "service".into(),
                json!({ "name": entry.action.split_once(' ').map_or("", |(_, p)| p) }),
            );
        }
        Class::AccountChange => {
            e.insert("user".into(), user);
        }
        Class::DatastoreActivity => {
            e.insert(
                "database".into(),
                json!({ "name": "audit_log", "type_id": 99, "type": "Transparency log" }),
            );
        }
        Class::DetectionFinding => {
            e.insert("finding_info".into(), finding_info(entry));
        }
    }
    e.insert("unmapped".into(), unmapped(entry));
    Value::Object(e)
}

fn message(entry: &Entry) -> String {
    let mut text = entry.action.clone();
    let _ = write!(text, ": {}", entry.outcome.as_str());
    if let Some(denial) = entry.denial {
        let _ = write!(text, " ({})", denial.as_str());
    }
    text
}

fn user(entry: &Entry) -> Value {
    let mut user = Map::new();
    if let Some(customer) = entry.customer {
        user.insert("uid".into(), json!(customer.to_string()));
        user.insert("type_id".into(), json!(1));
        user.insert("type".into(), json!("User"));
    }
    if let Some(key) = entry.api_key {
        user.insert("credential_uid".into(), json!(key.to_string()));
    }
    Value::Object(user)
}

fn actor(entry: &Entry) -> Value {
    match (&entry.operator, entry.kind) {
        (Some(operator), Kind::Response) => json!({ "app_name": operator }),
        (Some(operator), Kind::KeyChange) if entry.action.ends_with(" freeze") => {
            json!({ "app_name": operator })
        }
        (Some(operator), _) => json!({
            "user": { "name": operator, "type_id": 2, "type": "Admin" },
        }),
        (None, _) => json!({ "user": user(entry) }),
    }
}

fn finding_info(entry: &Entry) -> Value {
    let related: Vec<Value> = param(entry, "events")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|uid| json!({ "uid": uid }))
        .collect();
    let mut info = json!({
        "uid": param(entry, "finding").unwrap_or_default(),
        "title": param(entry, "title").unwrap_or(&entry.action),
        "types": [param(entry, "rule").unwrap_or_default()],
    });
    if let Some(m) = info.as_object_mut() {
        if let Some(rule) = param(entry, "rule") {
            m.insert(
                "analytic".into(),
                json!({ "name": rule, "type_id": 1, "type": "Rule" }),
            );
        }
        if !related.is_empty() {
            m.insert("related_events".into(), Value::Array(related));
        }
    }
    info
}

fn unmapped(entry: &Entry) -> Value {
    let params: Map<String, Value> = entry
        .params
        .iter()
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect();
    let mut u = json!({
        "kind": entry.kind.as_str(),
        "outcome": entry.outcome.as_str(),
        "params": params,
    });
    if let (Some(key), Some(m)) = (entry.api_key, u.as_object_mut()) {
        m.insert("api_key_id".into(), json!(key));
    }
    u
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;
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
    fn a_detection_links_the_events_behind_it() {
        let mut entry = request("detect bad_signatures_per_key", Outcome::Success, None);
        entry.kind = Kind::Response;
        entry.operator = Some("ztx-monitor".into());
        entry.params = vec![
            ("finding".into(), "bad_signatures_per_key-41".into()),
            ("rule".into(), "bad_signatures_per_key".into()),
            ("events".into(), "37,38,41".into()),
            ("severity".into(), "high".into()),
            ("title".into(), "repeated bad signatures".into()),
        ];
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
                    action,
                    params,
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
    }
}
