//! PostgreSQL only: row-level security. A customer-scoped read sees that customer's rows
//! even when its query forgets to filter by customer; a transaction that set no scope
//! sees nothing; a customer scope cannot write.

use proptest::prelude::*;
use ztx_core::{Changes, CustomerId, OrderStatus};
use ztx_store::testing::{PgCluster, unfiltered_ids};
use ztx_store::{ApiKeyCredential, NewApiKey, SecurityEffect, Store};

use crate::common::*;

/// Queries with no customer filter at all, one per customer-owned table, each
/// returning an id that says whose row it is (the customer's, or the row's own id
/// when `owner` maps it back).
const UNFILTERED: &[(&str, &str)] = &[
    ("customers", "SELECT id FROM customers ORDER BY 1"),
    (
        "api_keys",
        "SELECT DISTINCT customer_id FROM api_keys ORDER BY 1",
    ),
    (
        "orders",
        "SELECT DISTINCT customer_id FROM orders ORDER BY 1",
    ),
    (
        "order_index",
        "SELECT DISTINCT owner FROM order_index ORDER BY 1",
    ),
    (
        "order_client_index",
        "SELECT DISTINCT owner FROM order_client_index ORDER BY 1",
    ),
    (
        "trade_index",
        "SELECT DISTINCT owner FROM trade_index ORDER BY 1",
    ),
    (
        "accounts",
        "SELECT DISTINCT owner_id FROM accounts WHERE owner_kind = 'customer' ORDER BY 1",
    ),
    (
        "notifications",
        "SELECT DISTINCT customer_id FROM notifications ORDER BY 1",
    ),
    ("inbox", "SELECT DISTINCT customer_id FROM inbox ORDER BY 1"),
    (
        "webhooks",
        "SELECT DISTINCT customer_id FROM webhooks ORDER BY 1",
    ),
];

/// A store on a fresh database, opened as a service role (not the owner, not a
/// superuser: row security binds it), with `customers` customers, each owning rows in
/// every customer-owned table.
fn populated(customers: u64, orders_each: u64) -> Option<(Box<dyn Store>, String)> {
    let cluster = PgCluster::shared().unwrap()?;
    let owner = cluster.fresh_database().unwrap();
    let (role, service) = cluster.new_role(&owner).unwrap();
    ztx_store::grant_service_role(&owner, &role).unwrap();
    let mut store = ztx_store::open(&service).unwrap();
    let mut changes = Changes::default();
    let mut next = 1;
    for c in 1..=customers {
        let id = ztx_store::testing::create_customer(&mut *store, &format!("c{c}@example.com"), 1)
            .unwrap();
        assert_eq!(id, CustomerId(c));
        store
            .create_api_key(&NewApiKey {
                api_key: format!("key-{c}"),
                customer: id,
                credential: ApiKeyCredential::Ed25519 {
                    public_key: [1; 32],
                },
                permissions: "read".into(),
                ip_allowlist: String::new(),
                enabled: true,
                created_ms: 1,
            })
            .unwrap();
        for _ in 0..orders_each {
            changes
                .orders
                .push(order(next, c, "BTCUSDT", OrderStatus::New, next));
            next += 1;
        }
        changes.accounts.push((
            customer_key(c, "USDT"),
            ztx_core::Balances {
                credits_posted: ztx_core::Amount::from_minor(u128::from(c)),
                ..ztx_core::Balances::default()
            },
        ));
        store
            .enqueue_deposit(
                ztx_core::TransferId(u128::from(c)),
                id,
                asset("USDT"),
                ztx_core::Amount::from_minor(5),
                1,
            )
            .unwrap();
    }
    // Trades between neighbours, so each customer is party to some and not others.
    for c in 1..customers {
        changes
            .trades
            .push(trade(c, "BTCUSDT", c, c + 1, c, 30_000, 1, c % 2 == 0));
    }
    let effects = (1..=customers)
        .flat_map(|c| {
            [
                SecurityEffect::SetWebhook {
                    customer: CustomerId(c),
                    webhook: Some(ztx_store::StoredWebhook {
                        customer: CustomerId(c),
                        url_sealed: vec![1; 8],
                        secret_sealed: vec![2; 8],
                        data_key: ztx_store::WrappedDataKey {
                            kek_version: 1,
                            wrapped: vec![3; 8],
                        },
                        created_ms: 1,
                    }),
                    at_ms: 1,
                },
                SecurityEffect::Notify {
                    customer: CustomerId(c),
                    finding: format!("f-{c}"),
                    message: "about you".into(),
                    at_ms: 1,
                },
            ]
        })
        .collect();
    store.apply(&changes).unwrap();
    // Two audit entries and a checkpoint, which name every customer's requests.
    let rows: Vec<ztx_store::AuditRow> = (0..2u64)
        .map(|index| {
            let bytes = format!("entry {index}").into_bytes();
            ztx_store::AuditRow {
                index,
                leaf: ztx_audit::Hash::leaf(&bytes),
                entry: bytes,
            }
        })
        .collect();
    let checkpoint = ztx_store::StoredCheckpoint {
        size: 2,
        root: ztx_audit::Hash::ZERO,
        note: "a note".into(),
        created_ms: 1,
    };
    store
        .commit(
            &Changes::default(),
            &ztx_store::AuditAppend {
                rows,
                checkpoint: Some(checkpoint),
                effects,
            },
        )
        .unwrap();
    store.index_history(10_000).unwrap();
    Some((store, service))
}

#[test]
fn a_query_that_forgets_its_customer_filter_returns_only_the_callers_rows() {
    let Some((mut store, _)) = populated(3, 4) else {
        return;
    };
    for c in 1..=3u64 {
        let mut scope = store.customer_scope(CustomerId(c)).unwrap();
        let me = i64::try_from(c).unwrap();
        for (table, sql) in UNFILTERED {
            assert_eq!(
                unfiltered_ids(&mut scope, sql).unwrap(),
                vec![me],
                "{table}"
            );
        }
        // Trades: only those the customer is party to, though the query asks for all.
        let trades = unfiltered_ids(&mut scope, "SELECT id FROM trades ORDER BY id").unwrap();
        let expected: Vec<i64> = [me - 1, me]
            .into_iter()
            .filter(|t| *t >= 1 && *t < 3)
            .collect();
        assert_eq!(trades, expected, "trades of {c}");
        // Tables no customer read needs show a customer nothing; the audit log names
        // every customer's requests.
        for sql in [
            "SELECT 1 FROM pending",
            "SELECT 1 FROM key_addresses",
            "SELECT id FROM notification_outbox",
            "SELECT idx FROM audit_entries",
            "SELECT size FROM audit_checkpoints",
        ] {
            assert!(unfiltered_ids(&mut scope, sql).unwrap().is_empty(), "{sql}");
        }
        // And the scope's own reads agree.
        assert_eq!(scope.open_orders(None).unwrap().len(), 4);
        assert_eq!(scope.api_keys().unwrap().len(), 1);
    }
    // Outside a customer scope the engine still sees everyone (its session's scope).
    assert_eq!(store.load_state().unwrap().open_orders.len(), 12);
    assert_eq!(store.audit_size().unwrap(), 2);
    assert_eq!(store.latest_checkpoint().unwrap().unwrap().size, 2);
}

#[test]
fn a_customer_scope_reading_another_customers_order_by_id_finds_nothing() {
    let Some((mut store, _)) = populated(2, 2) else {
        return;
    };
    // Order 3 is customer 2's. The product's query filters by customer as well; this
    // one asks by id alone, as a buggy handler might.
    let mut scope = store.customer_scope(CustomerId(1)).unwrap();
    assert!(
        unfiltered_ids(&mut scope, "SELECT id FROM orders WHERE id = 3")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        unfiltered_ids(&mut scope, "SELECT id FROM orders WHERE id = 1").unwrap(),
        vec![1]
    );
}

#[test]
fn a_connection_that_sets_no_customer_sees_no_customer_rows() {
    let Some(cluster) = PgCluster::shared().unwrap() else {
        return;
    };
    let owner = cluster.fresh_database().unwrap();
    let (role, service) = cluster.new_role(&owner).unwrap();
    ztx_store::grant_service_role(&owner, &role).unwrap();
    {
        let mut store = ztx_store::open(&service).unwrap();
        ztx_store::testing::create_customer(&mut *store, "a@example.com", 1).unwrap();
        store
            .apply(&Changes {
                orders: vec![order(1, 1, "BTCUSDT", OrderStatus::New, 1)],
                ..Changes::default()
            })
            .unwrap();
    }
    // The service's own role, connected without the store: nothing set, nothing seen.
    let mut client = postgres::Client::connect(&service, postgres::NoTls).unwrap();
    for table in ["customers", "orders", "accounts", "api_keys"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    // A customer scope with no customer id is no customer.
    let mut tx = client.transaction().unwrap();
    tx.batch_execute("SELECT set_config('app.scope', 'customer', true)")
        .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM orders", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn every_customer_owned_table_is_under_forced_row_security() {
    let Some(cluster) = PgCluster::shared().unwrap() else {
        return;
    };
    let owner = cluster.fresh_database().unwrap();
    drop(ztx_store::open(&owner).unwrap());
    let mut client = postgres::Client::connect(&owner, postgres::NoTls).unwrap();
    // A table is customer-owned when a column names a customer, or a row that does.
    let owned: Vec<String> = client
        .query(
            "SELECT DISTINCT table_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND (column_name IN ('customer_id', 'owner', \
             'owner_id', 'buyer_id', 'debit_id', 'api_key_id', 'notification_id', \
             'transfer_id') OR table_name = 'customers') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(owned.len() >= 14, "{owned:?}");
    let forced: Vec<String> = client
        .query(
            "SELECT relname::text FROM pg_class WHERE relkind = 'r' \
             AND relrowsecurity AND relforcerowsecurity ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // `inbox` names a customer too; every one is under forced row security.
    for table in &owned {
        assert!(
            forced.contains(table),
            "{table} is not under forced row security"
        );
    }
}

#[test]
fn a_customer_scope_cannot_change_rows() {
    let Some((mut store, service)) = populated(2, 1) else {
        return;
    };
    let mut scope = store.customer_scope(CustomerId(1)).unwrap();
    // The scope's transaction is read-only, whatever the statement.
    let refused = unfiltered_ids(
        &mut scope,
        "UPDATE orders SET status = 'CANCELED' RETURNING id",
    )
    .unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    drop(scope);
    // And were it not read-only, the customer policy is for SELECT alone: a writable
    // transaction scoped to customer 1 changes no row and may add none.
    let mut client = postgres::Client::connect(&service, postgres::NoTls).unwrap();
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(
        "SELECT set_config('app.scope', 'customer', true), \
                set_config('app.customer_id', '1', true)",
    )
    .unwrap();
    assert_eq!(
        tx.execute("UPDATE orders SET status = 'CANCELED'", &[])
            .unwrap(),
        0
    );
    assert_eq!(tx.execute("DELETE FROM api_keys", &[]).unwrap(), 0);
    let insert = tx
        .execute(
            "INSERT INTO notifications (customer_id, created_ms, finding, message) \
             VALUES (1, 1, 'forged', 'x')",
            &[],
        )
        .unwrap_err();
    assert!(
        insert.to_string().contains("row-level security")
            || format!("{insert:?}").contains("row-level security"),
        "{insert:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Whatever the split of orders between customers, a customer scope's unfiltered
    /// query returns exactly that customer's orders.
    #[test]
    fn row_security_shows_each_customer_exactly_their_orders(
        owners in proptest::collection::vec(1u64..=4, 1..40),
        reader in 1u64..=4,
    ) {
        let Some(cluster) = PgCluster::shared().unwrap() else {
            return Ok(());
        };
        let owner = cluster.fresh_database().unwrap();
        let (role, service) = cluster.new_role(&owner).unwrap();
        ztx_store::grant_service_role(&owner, &role).unwrap();
        let mut store = ztx_store::open(&service).unwrap();
        for c in 1..=4 {
            ztx_store::testing::create_customer(&mut *store, &format!("p{c}@example.com"), 1).unwrap();
        }
        let orders = (1u64..).zip(&owners)
            .map(|(id, c)| order(id, *c, "BTCUSDT", OrderStatus::New, id))
            .collect();
        store.apply(&Changes { orders, ..Changes::default() }).unwrap();
        let mut scope = store.customer_scope(CustomerId(reader)).unwrap();
        let seen = unfiltered_ids(&mut scope, "SELECT id FROM orders ORDER BY id").unwrap();
        let expected: Vec<i64> = (1i64..).zip(&owners)
            .filter(|(_, c)| **c == reader)
            .map(|(id, _)| id)
            .collect();
        prop_assert_eq!(seen, expected);
    }
}
