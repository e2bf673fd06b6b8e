//! Every data access accounted for: with accounting on, each store call leaves exactly
//! one account, naming its operation, activity, tables, segment and rows; a customer
//! scope's reads are in that customer's segment; a commit is left to its writer.

use proptest::prelude::*;
use ztx_core::{Changes, CustomerId, OrderStatus};
use ztx_store::{Activity, ApiKeyCredential, DataAccess, NewApiKey, OrderQuery, Segment, Store};

use crate::common::*;

/// Two customers with orders and a trade between them, and a key for the first.
fn populated(store: &mut dyn Store) -> (CustomerId, CustomerId) {
    let alice = ztx_store::testing::create_customer(store, "alice@example.com", 1).unwrap();
    let bob = ztx_store::testing::create_customer(store, "bob@example.com", 1).unwrap();
    store
        .create_api_key(&NewApiKey {
            api_key: "keyA".into(),
            customer: alice,
            credential: ApiKeyCredential::Ed25519 {
                public_key: [1; 32],
            },
            permissions: "read".into(),
            ip_allowlist: String::new(),
            enabled: true,
            created_ms: 1,
        })
        .unwrap();
    store
        .apply(&Changes {
            orders: vec![
                order(1, alice.0, "BTCUSDT", OrderStatus::New, 10),
                order(2, alice.0, "BTCUSDT", OrderStatus::Filled, 11),
                order(3, bob.0, "BTCUSDT", OrderStatus::New, 12),
            ],
            trades: vec![trade(1, "BTCUSDT", alice.0, bob.0, 13, 100, 2, true)],
            ..Changes::default()
        })
        .unwrap();
    (alice, bob)
}

fn summary(a: &DataAccess) -> (&'static str, Activity, Segment, u64) {
    (a.operation, a.activity, a.segment, a.rows)
}

pub fn every_store_call_is_accounted_with_its_segment(fx: &dyn Fixture) {
    let mut store = fx.open();
    let (alice, bob) = populated(&mut *store);
    // Off by default: nothing was accounted for.
    assert_eq!(store.take_accesses(), (Vec::new(), 0));

    store.account(true);
    let key = store.api_key_by_key("keyA").unwrap().unwrap();
    assert!(store.api_key_by_key("no-such-key").unwrap().is_none());
    let recent = store.recent_trades("BTCUSDT", 10).unwrap();
    {
        let mut scope = store.customer_scope(alice).unwrap();
        assert_eq!(scope.open_orders(None).unwrap().len(), 1);
        assert_eq!(
            scope
                .orders("BTCUSDT", None, None, None, 100)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            scope
                .my_trades("BTCUSDT", None, None, None, 100)
                .unwrap()
                .len(),
            1
        );
        let found = scope
            .order("BTCUSDT", &OrderQuery::ById(ztx_core::OrderId(3)))
            .unwrap();
        assert!(found.is_none(), "bob's order is not in alice's segment");
    }
    {
        let mut scope = store.customer_scope(bob).unwrap();
        assert!(scope.customer().unwrap().is_some());
        assert!(scope.api_keys().unwrap().is_empty());
    }
    // The writer accounts for its own commits.
    store
        .apply(&Changes {
            orders: vec![order(4, bob.0, "BTCUSDT", OrderStatus::New, 14)],
            ..Changes::default()
        })
        .unwrap();

    let (accesses, dropped) = store.take_accesses();
    assert_eq!(dropped, 0);
    let alice_segment = Segment::Customer(alice);
    assert_eq!(
        accesses.iter().map(summary).collect::<Vec<_>>(),
        vec![
            ("api_key_by_key", Activity::Read, alice_segment, 1),
            ("api_key_by_key", Activity::Read, Segment::Platform, 0),
            (
                "recent_trades",
                Activity::Query,
                Segment::Platform,
                recent.len() as u64
            ),
            ("open_orders", Activity::Query, alice_segment, 1),
            ("orders", Activity::Query, alice_segment, 2),
            ("my_trades", Activity::Query, alice_segment, 1),
            ("order", Activity::Read, alice_segment, 0),
            ("customer", Activity::Read, Segment::Customer(bob), 1),
            ("api_keys", Activity::Query, Segment::Customer(bob), 0),
        ]
    );
    assert_eq!(key.customer, alice);
    assert!(accesses.iter().all(|a| a.ok && !a.tables.is_empty()));
    assert_eq!(accesses[4].tables, &["orders", "order_index"]);
    // Taken: the next take starts empty.
    assert_eq!(store.take_accesses(), (Vec::new(), 0));

    // A failed call is accounted for as failed.
    assert!(store.audit_inclusion_proof(5, 1).is_err());
    let (accesses, _) = store.take_accesses();
    assert_eq!(accesses.len(), 1);
    assert_eq!(
        (accesses[0].operation, accesses[0].ok, accesses[0].rows),
        ("audit_inclusion_proof", false, 0)
    );

    // Off again: nothing more.
    store.account(false);
    store.recent_trades("BTCUSDT", 10).unwrap();
    assert_eq!(store.take_accesses(), (Vec::new(), 0));
}

pub fn untaken_accesses_are_bounded_and_counted(fx: &dyn Fixture) {
    let mut store = fx.open();
    store.account(true);
    let extra = 5;
    for _ in 0..ztx_store::access::MAX_UNTAKEN + extra {
        store.mode().unwrap();
    }
    let (accesses, dropped) = store.take_accesses();
    assert_eq!(accesses.len(), ztx_store::access::MAX_UNTAKEN);
    assert_eq!(dropped, extra as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever customers read and in whatever order, each read is accounted for once, in
    /// the segment of the customer whose scope made it, with the rows it returned.
    #[test]
    fn scope_reads_are_accounted_in_their_customers_segment(
        reads in prop::collection::vec((0usize..3, 0u8..4), 1..20),
    ) {
        let fx = SqliteFixture::new();
        let mut store = fx.open();
        let (alice, bob) = populated(&mut *store);
        let customers = [alice, bob, CustomerId(99)];
        store.account(true);
        let mut expected = Vec::new();
        for &(who, what) in &reads {
            let customer = customers[who];
            let mut scope = store.customer_scope(customer).unwrap();
            let (operation, rows) = match what {
                0 => ("open_orders", scope.open_orders(Some("BTCUSDT")).unwrap().len()),
                1 => ("orders", scope.orders("BTCUSDT", None, None, None, 50).unwrap().len()),
                2 => ("my_trades", scope.my_trades("BTCUSDT", None, None, None, 50).unwrap().len()),
                _ => ("notifications", scope.notifications(None, 50).unwrap().len()),
            };
            expected.push((operation, Segment::Customer(customer), rows as u64));
        }
        let (accesses, dropped) = store.take_accesses();
        prop_assert_eq!(dropped, 0);
        let got: Vec<_> = accesses.iter().map(|a| (a.operation, a.segment, a.rows)).collect();
        prop_assert_eq!(got, expected);
    }
}
