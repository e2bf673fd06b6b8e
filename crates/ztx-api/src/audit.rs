//! What the API writes to the audit log: one entry for every request, public or signed,
//! allowed or refused, durable before its answer leaves — and for a command, in the
//! very commit of its effects. Parameters are logged as received except the signature
//! and [`REMOVED_PARAMS`]; the API key is logged by its number, never its text.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use axum::response::Response;
use ztx_audit::{Denial, Entry, Kind, Outcome, Text, format_compact};

use crate::error::ApiError;
use crate::params::Params;

/// A refusal, and when the gate made it, why in the audit log's terms.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub denial: Option<Denial>,
}

impl From<ApiError> for Refusal {
    /// A refusal by the endpoint itself, after the gate let the request in.
    fn from(error: ApiError) -> Self {
        Refusal {
            error,
            denial: None,
        }
    }
}

/// Turns a gate check's error into a refusal for `denial`.
pub fn deny(denial: Denial) -> impl FnOnce(ApiError) -> Refusal {
    move |error| Refusal {
        error,
        denial: Some(denial),
    }
}

/// A request's entry between the gate and the answer.
#[derive(Debug, Default)]
enum Slot {
    /// The gate has not let the request in (yet).
    #[default]
    Empty,
    Waiting(Entry),
    /// A command took it into its commit.
    Committed,
}

/// Where a handler finds its request's entry; shared with the gate, which logs whatever
/// a command did not take.
#[derive(Clone, Debug, Default)]
pub struct AuditSlot(Arc<Mutex<Slot>>);

impl AuditSlot {
    pub(crate) fn fill(&self, entry: Entry) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Slot::Waiting(entry);
        }
    }

    /// The entry, for a command to commit with its effects; `None` when not auditing.
    pub(crate) fn take_for_command(&self) -> Option<Entry> {
        let mut slot = self.0.lock().ok()?;
        match std::mem::replace(&mut *slot, Slot::Committed) {
            Slot::Waiting(entry) => Some(entry),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// A command whose batch was not written: its entry goes back to be logged alone.
    pub(crate) fn put_back(&self, entry: Entry) {
        self.fill(entry);
    }

    /// The entry still to log, if the request got one and no command committed it.
    fn remaining(&self) -> Option<Option<Entry>> {
        let mut slot = self.0.lock().ok()?;
        match std::mem::take(&mut *slot) {
            Slot::Empty => Some(None),
            Slot::Waiting(entry) => Some(Some(entry)),
            Slot::Committed => None,
        }
    }
}

/// The entry of a request as it arrives.
pub fn arriving(method: &Method, path: &str, ip: IpAddr, now_ms: u64, request_id: u64) -> Entry {
    Entry {
        // The log sets it as it appends.
        prev: ztx_audit::Hash::ZERO,
        time_ms: now_ms,
        kind: Kind::Request,
        request_id,
        customer: None,
        api_key: None,
        operator: None,
        client_ip: Some(ip),
        action: format_compact!("{method} {path}"),
        params: Vec::new(),
        outcome: Outcome::Success,
        denial: None,
        code: None,
    }
}

/// Parameters whose values are logged as [`REMOVED`]: a webhook's address may carry
/// the receiver's own token in its path (the change's entry names its host).
pub const REMOVED_PARAMS: &[&str] = &["url"];
/// What a removed value is logged as.
pub const REMOVED: &str = "<removed>";

/// The parameters to log: all but the signature, secrets' values removed.
pub fn loggable(params: &Params) -> Vec<(Text, Text)> {
    params
        .iter()
        .filter(|p| p.name() != crate::auth::SIGNATURE_PARAM)
        .map(|p| {
            let value = if REMOVED_PARAMS.contains(&p.name()) {
                REMOVED
            } else {
                p.value()
            };
            (p.name().into(), value.into())
        })
        .collect()
}

/// What is left to log once the answer is known: the entry with its outcome, unless a
/// command already committed it.
///
/// `arrived` is the entry the gate still holds: `None` once it handed it to the slot
/// (or when not auditing).
pub fn finish(
    arrived: Option<Entry>,
    slot: &AuditSlot,
    result: &Result<Response, Refusal>,
) -> Option<Entry> {
    let mut entry = match slot.remaining() {
        None => return None,
        Some(Some(entry)) => entry,
        Some(None) => arrived?,
    };
    match result {
        Ok(_) => {
            entry.outcome = Outcome::Success;
            entry.denial = None;
            entry.code = None;
        }
        Err(refusal) => {
            entry.outcome = if refusal.denial.is_some() {
                Outcome::Denied
            } else {
                Outcome::Failure
            };
            entry.denial = refusal.denial;
            entry.code = Some(refusal.error.code());
        }
    }
    Some(entry)
}
