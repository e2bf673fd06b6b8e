//! The only way to a customer's own rows: a handle scoped to one customer.
//!
//! On PostgreSQL the handle is a transaction in which the database itself shows only
//! that customer's rows (row-level security keyed on `app.customer_id`, see the schema's
//! version 5), so a query that forgot its customer filter still could not return
//! another customer's orders. SQLite has no row security: there the segmentation is
//! this type's, whose every read is filtered by the customer it was opened for and
//! which no other part of the store API can stand in for.

use std::fmt;

use ztx_core::{CustomerId, Order, OrderId, Trade, TradeId};

use crate::access::Activity::{Query, Read};
use crate::access::{Accounting, Segment};
use crate::error::Result;
use crate::model::{ApiKeyRecord, CustomerRecord, OrderQuery, StoredWebhook};
use crate::security::Notification;
use crate::sql::Conn;
use crate::{read, security};

/// Reads of one customer's rows (see the module). Open one with
/// [`crate::Store::customer_scope`]; on PostgreSQL it holds a read-only transaction
/// until dropped, so keep it for one request's reads.
pub struct CustomerScope<'a> {
    pub(crate) conn: Box<dyn Conn + 'a>,
    customer: CustomerId,
    accounting: Accounting,
}

impl fmt::Debug for CustomerScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerScope")
            .field("customer", &self.customer)
            .finish_non_exhaustive()
    }
}

impl<'a> CustomerScope<'a> {
    pub(crate) fn new(
        conn: Box<dyn Conn + 'a>,
        customer: CustomerId,
        accounting: Accounting,
    ) -> Self {
        Self {
            conn,
            customer,
            accounting,
        }
    }

    fn segment(&self) -> Segment {
        Segment::Customer(self.customer)
    }

    /// The customer this handle reads for.
    pub fn customer_id(&self) -> CustomerId {
        self.customer
    }

    /// The customer's own record; `None` if there is no such customer.
    pub fn customer(&mut self) -> Result<Option<CustomerRecord>> {
        let r = read::customer(&mut *self.conn, self.customer);
        self.accounting
            .note("customer", Read, &["customers"], self.segment(), r)
    }

    pub fn api_keys(&mut self) -> Result<Vec<ApiKeyRecord>> {
        let r = read::api_keys_of(&mut *self.conn, self.customer);
        self.accounting
            .note("api_keys", Query, &["api_keys"], self.segment(), r)
    }

    pub fn order(&mut self, symbol: &str, query: &OrderQuery) -> Result<Option<Order>> {
        let r = read::order(&mut *self.conn, self.customer, symbol, query);
        self.accounting.note(
            "order",
            Read,
            &["orders", "order_client_index"],
            self.segment(),
            r,
        )
    }

    /// See [`crate::Store`] for how history lists page.
    pub fn orders(
        &mut self,
        symbol: &str,
        from_id: Option<OrderId>,
        start_ms: Option<u64>,
        end_ms: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Order>> {
        let r = read::orders(
            &mut *self.conn,
            self.customer,
            symbol,
            from_id,
            (start_ms, end_ms),
            limit,
        );
        self.accounting.note(
            "orders",
            Query,
            &["orders", "order_index"],
            self.segment(),
            r,
        )
    }

    /// Open orders by id; of every market when `symbol` is `None`.
    pub fn open_orders(&mut self, symbol: Option<&str>) -> Result<Vec<Order>> {
        let r = read::open_orders(&mut *self.conn, self.customer, symbol);
        self.accounting
            .note("open_orders", Query, &["orders"], self.segment(), r)
    }

    /// Trades where the customer is buyer or seller (once if both).
    pub fn my_trades(
        &mut self,
        symbol: &str,
        from_id: Option<TradeId>,
        start_ms: Option<u64>,
        end_ms: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Trade>> {
        let r = read::my_trades(
            &mut *self.conn,
            self.customer,
            symbol,
            from_id,
            (start_ms, end_ms),
            limit,
        );
        self.accounting.note(
            "my_trades",
            Query,
            &["trades", "trade_index"],
            self.segment(),
            r,
        )
    }

    /// The customer's notifications, newest first; only those older than `before_id`
    /// when given.
    pub fn notifications(
        &mut self,
        before_id: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let r = security::notifications(&mut *self.conn, self.customer, before_id, limit);
        self.accounting.note(
            "notifications",
            Query,
            &["notifications"],
            self.segment(),
            r,
        )
    }

    /// The customer's webhook, sealed, if they registered one.
    pub fn webhook(&mut self) -> Result<Option<StoredWebhook>> {
        let r = security::webhook(&mut *self.conn, self.customer);
        self.accounting
            .note("webhook", Read, &["webhooks"], self.segment(), r)
    }
}
