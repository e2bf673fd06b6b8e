//! Data accesses in the audit log: each store call a service accounts for
//! ([`ztx_store::access`]) becomes one entry of kind [`Kind::DataAccess`], naming the
//! service that made it, the principal it acted for and the customer segment it ran
//! under — an OCSF Datastore Activity for the SIEM.
//!
//! # Entry
//!
//! | field | value |
//! |---|---|
//! | `action` | `store <operation>`, the store API's name for the call |
//! | `request_id` | the request it served; 0 for the platform's own work |
//! | `customer` | the segment: the customer whose rows alone it could reach; none for the platform's scope |
//! | `api_key`, `client_ip` | the request's, when it served one |
//! | `operator` | the operator, when it served an admin command |
//! | `outcome` | success, or failure when the store call failed |
//! | params | `service`, `principal`, `activity` (OCSF's name), `tables` (comma-separated), `rows`, and for a commit `customers` (whose rows it changed, ascending, cut at the entry's field limit with `…`); `dropped` when older accesses were dropped untaken |
//!
//! The principal is `customer <id>` (a request signed with that customer's key),
//! `operator <name>`, `anonymous` (a public request, or one refused before its signature
//! was checked) or `platform` (the engine's own work).

use std::net::IpAddr;

use ztx_audit::{Entry, Hash, Kind, Outcome, Text, ToCompactString, format_compact};
use ztx_core::CustomerId;
use ztx_store::DataAccess;

/// The engine's own connections (its commits, the inbox, its upkeep).
pub const SERVICE_ENGINE: &str = "engine";

/// Whom a store call served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The platform's own work, for no request.
    Platform,
    /// A caller who has not proved who they are.
    Anonymous,
    Customer(CustomerId),
    Operator(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Platform => f.write_str("platform"),
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Customer(c) => write!(f, "customer {}", c.0),
            Principal::Operator(name) => write!(f, "operator {name}"),
        }
    }
}

/// Who made a batch of store calls, and for what.
#[derive(Debug, Clone)]
pub struct Accessor {
    pub service: &'static str,
    pub principal: Principal,
    /// The request served; 0 for none.
    pub request_id: u64,
    pub api_key: Option<u64>,
    pub client_ip: Option<IpAddr>,
}

impl Accessor {
    /// The engine's own work.
    pub fn platform() -> Accessor {
        Accessor {
            service: SERVICE_ENGINE,
            principal: Principal::Platform,
            request_id: 0,
            api_key: None,
            client_ip: None,
        }
    }

    /// The entries of `accesses` (and a note of `dropped` older ones, on the first) at
    /// `now_ms`.
    pub fn entries(&self, accesses: Vec<DataAccess>, dropped: u64, now_ms: u64) -> Vec<Entry> {
        let mut dropped = (dropped > 0).then_some(dropped);
        accesses
            .into_iter()
            .map(|access| self.entry(access, dropped.take(), now_ms))
            .collect()
    }

    fn entry(&self, access: DataAccess, dropped: Option<u64>, now_ms: u64) -> Entry {
        let mut params: Vec<(Text, Text)> = vec![
            ("service".into(), self.service.into()),
            ("principal".into(), self.principal.to_compact_string()),
            ("activity".into(), access.activity.as_str().into()),
            ("tables".into(), access.tables.join(",").into()),
            ("rows".into(), access.rows.to_compact_string()),
        ];
        if !access.customers.is_empty() {
            let mut ids = Text::default();
            for (i, c) in access.customers.iter().enumerate() {
                if i > 0 {
                    ids.push(',');
                }
                ids.push_str(&c.0.to_compact_string());
            }
            params.push(("customers".into(), ids));
        }
        if let Some(dropped) = dropped {
            params.push(("dropped".into(), dropped.to_compact_string()));
        }
        Entry {
            prev: Hash::ZERO,
            time_ms: now_ms,
            kind: Kind::DataAccess,
            request_id: self.request_id,
            customer: access.segment.customer().map(|c| c.0),
            api_key: self.api_key,
            operator: match &self.principal {
                Principal::Operator(name) => Some(name.as_str().into()),
                _ => None,
            },
            client_ip: self.client_ip,
            action: format_compact!("store {}", access.operation),
            params,
            outcome: if access.ok {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            denial: None,
            code: None,
        }
    }
}

/// The platform's own accesses worth a log entry: those that touched a row or failed.
/// The engine polls its inbox and its upkeep indexes every few milliseconds; a poll that
/// finds nothing reads only a watermark, and logging each would bury the log in them.
pub fn touched(accesses: Vec<DataAccess>) -> Vec<DataAccess> {
    accesses
        .into_iter()
        .filter(|a| a.rows > 0 || !a.ok)
        .collect()
}
