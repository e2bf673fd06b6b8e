//! Every data access accounted for: each call through the store API, once accounting is
//! on for a connection ([`crate::Store::account`]), leaves one [`DataAccess`] saying what
//! it did (an OCSF Datastore Activity), to which tables, under which segment (the
//! platform's scope or one customer's) and how many rows it returned or wrote. The
//! caller, who knows the service and the principal it acted for, turns them into audit
//! entries ([`crate::Store::take_accesses`]).
//!
//! Three kinds of call leave none: [`crate::Store::commit`], whose writer accounts for it
//! in the very commit ([`commit_access`]) so that the account is durable with the
//! rows; the audit log's own appends and the indexing of its tree
//! ([`crate::Store::index_audit`], [`crate::Store::index_audit_nodes`]), which its
//! signed checkpoints already account for (an entry for each indexing would be one
//! more entry to index, without end); and the
//! maintenance calls that touch no row ([`crate::Store::maintain`],
//! [`crate::Store::complete_checkpoint`]).

use std::sync::{Arc, Mutex};

use ztx_core::{Changes, CustomerId, Owner};

use crate::error::Result;

/// What a store call did, numbered as OCSF's Datastore Activity (6005) numbers its
/// activities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activity {
    /// A look-up of rows by their key.
    Read = 1,
    Update = 2,
    /// A list of rows by a condition (history, a queue).
    Query = 4,
    Write = 5,
    Create = 6,
    Delete = 7,
}

impl Activity {
    /// Every value, in code order.
    pub const ALL: [Activity; 6] = [
        Activity::Read,
        Activity::Update,
        Activity::Query,
        Activity::Write,
        Activity::Create,
        Activity::Delete,
    ];

    /// OCSF's `activity_id`.
    pub fn ocsf_id(self) -> u32 {
        self as u32
    }

    /// OCSF's `activity_name`, lower case: how entries name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Read => "read",
            Activity::Update => "update",
            Activity::Query => "query",
            Activity::Write => "write",
            Activity::Create => "create",
            Activity::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Activity> {
        Activity::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// Whose rows a call could reach: on PostgreSQL, the row-security scope it ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    /// The platform's own scope (`app.scope = platform`): any customer's rows.
    Platform,
    /// One customer's rows only (a [`crate::CustomerScope`], or a call for one customer).
    Customer(CustomerId),
}

impl Segment {
    pub fn customer(self) -> Option<CustomerId> {
        match self {
            Segment::Platform => None,
            Segment::Customer(c) => Some(c),
        }
    }
}

/// One store call, as accounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataAccess {
    /// The store API's name for the call (`orders`, `api_key_by_key`, `commit`).
    pub operation: &'static str,
    pub activity: Activity,
    pub tables: &'static [&'static str],
    pub segment: Segment,
    /// Rows returned, or written.
    pub rows: u64,
    /// The customers whose rows a platform-scope write changed, ascending (a commit's);
    /// empty otherwise.
    pub customers: Vec<CustomerId>,
    /// Whether the call succeeded.
    pub ok: bool,
}

/// The most accesses a connection keeps untaken; past it the oldest are dropped and
/// counted, so that a caller who never takes them cannot grow memory without bound.
pub const MAX_UNTAKEN: usize = 4096;

#[derive(Debug, Default)]
struct Ledger {
    accesses: Vec<DataAccess>,
    dropped: u64,
}

/// A connection's accounting: off (the default) or collecting. Shared with the
/// [`crate::CustomerScope`]s the connection opens.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accounting(Option<Arc<Mutex<Ledger>>>);

/// The rows a call's result stands for.
pub(crate) trait Counted {
    fn rows(&self) -> u64;
}

impl<T> Counted for Vec<T> {
    fn rows(&self) -> u64 {
        u64::try_from(self.len()).unwrap_or(u64::MAX)
    }
}

impl<T> Counted for Option<T> {
    fn rows(&self) -> u64 {
        u64::from(self.is_some())
    }
}

/// Whether the row was there (or was changed).
impl Counted for bool {
    fn rows(&self) -> u64 {
        u64::from(*self)
    }
}

/// A count the call returns (rows re-wrapped, rows indexed).
impl Counted for u64 {
    fn rows(&self) -> u64 {
        *self
    }
}

impl Accounting {
    pub(crate) fn set(&mut self, on: bool) {
        match (on, self.0.is_some()) {
            (true, false) => self.0 = Some(Arc::default()),
            (false, true) => self.0 = None,
            _ => {}
        }
    }

    /// Accounts for a call whose result is `result`, and hands the result back.
    pub(crate) fn note<T: Counted>(
        &self,
        operation: &'static str,
        activity: Activity,
        tables: &'static [&'static str],
        segment: Segment,
        result: Result<T>,
    ) -> Result<T> {
        let rows = result.as_ref().map_or(0, Counted::rows);
        self.push(operation, activity, tables, segment, rows, result.is_ok());
        result
    }

    /// Accounts for a call that stands for one row whatever it returns.
    pub(crate) fn note_one<T>(
        &self,
        operation: &'static str,
        activity: Activity,
        tables: &'static [&'static str],
        segment: Segment,
        result: Result<T>,
    ) -> Result<T> {
        self.push(
            operation,
            activity,
            tables,
            segment,
            u64::from(result.is_ok()),
            result.is_ok(),
        );
        result
    }

    fn push(
        &self,
        operation: &'static str,
        activity: Activity,
        tables: &'static [&'static str],
        segment: Segment,
        rows: u64,
        ok: bool,
    ) {
        let Some(ledger) = &self.0 else { return };
        // A poisoned lock only means a panic elsewhere mid-push; the list is still whole.
        let mut ledger = ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ledger.accesses.len() >= MAX_UNTAKEN {
            ledger.accesses.remove(0);
            ledger.dropped = ledger.dropped.saturating_add(1);
        }
        ledger.accesses.push(DataAccess {
            operation,
            activity,
            tables,
            segment,
            rows,
            customers: Vec::new(),
            ok,
        });
    }

    /// The accesses since the last take, and how many were dropped past [`MAX_UNTAKEN`].
    pub(crate) fn take(&self) -> (Vec<DataAccess>, u64) {
        let Some(ledger) = &self.0 else {
            return (Vec::new(), 0);
        };
        let mut ledger = ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dropped = std::mem::take(&mut ledger.dropped);
        (std::mem::take(&mut ledger.accesses), dropped)
    }
}

/// The tables [`crate::Store::commit`] writes the engine's changes to.
pub const COMMIT_TABLES: &[&str] = &["orders", "trades", "transfers", "accounts", "pending"];

/// The account of a commit of `changes`, for the writer to log in that same commit: a
/// platform-scope write of every row the commit writes, naming each customer whose rows
/// it changes. `None` when the commit writes no row of the exchange's state (the audit
/// log's own rows and the security effects' are accounted for by their own entries).
pub fn commit_access(changes: &Changes) -> Option<DataAccess> {
    if changes.is_empty() {
        return None;
    }
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let rows = count(changes.orders.len())
        .saturating_add(count(changes.trades.len()))
        .saturating_add(count(changes.transfers.len()))
        .saturating_add(count(changes.accounts.len()))
        .saturating_add(count(changes.pending.len()));
    let owner = |o: Owner| match o {
        Owner::Customer(c) => Some(c),
        Owner::Escrow | Owner::Fees | Owner::External => None,
    };
    let mut customers: Vec<CustomerId> = changes
        .orders
        .iter()
        .map(|o| o.customer)
        .chain(changes.trades.iter().flat_map(|t| [t.buyer, t.seller]))
        .chain(
            changes
                .transfers
                .iter()
                .flat_map(|t| [owner(t.debit.owner), owner(t.credit.owner)])
                .flatten(),
        )
        .chain(changes.accounts.iter().filter_map(|(k, _)| owner(k.owner)))
        .collect();
    customers.sort_unstable();
    customers.dedup();
    Some(DataAccess {
        operation: "commit",
        activity: Activity::Write,
        tables: COMMIT_TABLES,
        segment: Segment::Platform,
        rows,
        customers,
        ok: true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

    use ztx_core::{AccountKey, AssetCode, Balances};

    use super::*;

    #[test]
    fn a_commit_names_every_customer_whose_rows_it_changes() {
        assert_eq!(commit_access(&Changes::default()), None);
        let usdt = AssetCode::new("USDT").unwrap();
        let changes = Changes {
            accounts: vec![
                (
                    AccountKey::new(Owner::Customer(CustomerId(9)), usdt),
                    Balances::default(),
                ),
                (AccountKey::new(Owner::Fees, usdt), Balances::default()),
                (
                    AccountKey::new(Owner::Customer(CustomerId(2)), usdt),
                    Balances::default(),
                ),
            ],
            pending: vec![(ztx_core::TransferId(1), ztx_core::Amount::ZERO)],
            ..Changes::default()
        };
        let access = commit_access(&changes).unwrap();
        assert_eq!(access.customers, vec![CustomerId(2), CustomerId(9)]);
        assert_eq!(access.rows, 4);
        assert_eq!(
            (access.operation, access.activity, access.segment),
            ("commit", Activity::Write, Segment::Platform)
        );
    }

    #[test]
    fn activities_carry_ocsf_numbers_and_names_that_parse_back() {
        let ids: Vec<u32> = Activity::ALL.iter().map(|a| a.ocsf_id()).collect();
        assert_eq!(ids, vec![1, 2, 4, 5, 6, 7]);
        for a in Activity::ALL {
            assert_eq!(Activity::parse(a.as_str()), Some(a));
        }
        assert_eq!(Activity::parse("connect"), None);
    }
}
