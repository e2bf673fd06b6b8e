//! The engine against a real SQLite store: acknowledged means durable, a restart resumes
//! exactly, a failed commit acknowledges nothing, and the admin inbox is drained.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a panic is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ztx_audit::{Checkpoint, Denial, Entry, Kind, LogKey, Outcome, verify_consistency};
use ztx_core::{
    Amount, Asset, AssetCode, Command, CustomerId, Deposit, MarketParams, MarketSpec, NewOrder,
    OrderStatus, OrderType, Price, Reply, Side, StpMode, TimeInForce, TransferId,
};
use ztx_engine::{
    Audit, AuditConfig, Clock, Engine, EngineError, EngineHandle, Query, QueryReply, StartError,
};
use ztx_store::{SqliteStore, Store};

fn code(s: &str) -> AssetCode {
    AssetCode::new(s).unwrap()
}

fn market() -> MarketSpec {
    MarketSpec::new(MarketParams {
        symbol: "BTCUSDT".into(),
        base: Asset::new(code("BTC"), 8).unwrap(),
        quote: Asset::new(code("USDT"), 8).unwrap(),
        tick_size: Price::from_minor(1_000_000),
        min_price: Price::from_minor(1_000_000),
        max_price: Price::from_minor(100_000_000_000_000),
        step_size: Amount::from_minor(1_000),
        min_qty: Amount::from_minor(1_000),
        max_qty: Amount::from_minor(900_000_000_000),
        min_notional: Amount::from_minor(100_000_000),
        max_notional: Amount::from_minor(10u128.pow(20)),
        maker_fee_bps: 10,
        taker_fee_bps: 10,
    })
    .unwrap()
}

fn clock() -> Clock {
    let t = Arc::new(AtomicU64::new(1_700_000_000_000));
    Arc::new(move || t.fetch_add(1, Ordering::Relaxed))
}

/// A fresh database of either backend.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A fresh database on the shared throw-away cluster; `None` (said loudly by the
    /// harness) when PostgreSQL is not installed, an error when CI requires it.
    fn postgres() -> Option<Db> {
        let cluster = ztx_store::testing::PgCluster::shared().unwrap()?;
        Some(Db::Postgres(cluster.fresh_database().unwrap()))
    }

    fn factory(&self) -> ztx_store::StoreFactory {
        match self {
            Db::Sqlite(dir) => {
                let path = dir.path().join("ztx.sqlite");
                Arc::new(move || SqliteStore::open(&path).map(|s| Box::new(s) as Box<dyn Store>))
            }
            Db::Postgres(url) => {
                let url = url.clone();
                Arc::new(move || {
                    ztx_store::PgStore::connect(&url).map(|s| Box::new(s) as Box<dyn Store>)
                })
            }
        }
    }

    fn open(&self) -> Box<dyn Store> {
        (self.factory())().unwrap()
    }

    /// Makes every order insert fail, as a full disk or a broken database would.
    fn break_order_inserts(&self) {
        match self {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("ztx.sqlite"))
                .unwrap()
                .execute_batch(
                    "CREATE TRIGGER fail_orders BEFORE INSERT ON orders \
                     BEGIN SELECT RAISE(ABORT, 'injected'); END;",
                )
                .unwrap(),
            Db::Postgres(url) => ztx_store::pg_connect(url)
                .unwrap()
                .batch_execute(
                    "CREATE FUNCTION fail_orders() RETURNS trigger AS $$ \
                     BEGIN RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql; \
                     CREATE TRIGGER fail_orders BEFORE INSERT ON orders \
                     FOR EACH ROW EXECUTE FUNCTION fail_orders();",
                )
                .unwrap(),
        }
    }

    /// Runs SQL behind the engine's back, as the tables' owner.
    fn raw(&self, sql: &str) {
        match self {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("ztx.sqlite"))
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Db::Postgres(url) => ztx_store::pg_connect(url)
                .unwrap()
                .batch_execute(sql)
                .unwrap(),
        }
    }

    fn repair_order_inserts(&self) {
        match self {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("ztx.sqlite"))
                .unwrap()
                .execute_batch("DROP TRIGGER fail_orders;")
                .unwrap(),
            Db::Postgres(url) => ztx_store::pg_connect(url)
                .unwrap()
                .batch_execute("DROP TRIGGER fail_orders ON orders;")
                .unwrap(),
        }
    }
}

fn start(db: &Db) -> (Engine, EngineHandle) {
    Engine::start(db.factory(), vec![market()], clock()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn deposit(customer: u64, asset: &str, whole: u128, id: u128) -> Command {
    Command::Deposit(Deposit {
        transfer_id: TransferId(id),
        customer: CustomerId(customer),
        asset: code(asset),
        amount: Amount::from_minor(whole * 100_000_000),
    })
}

fn buy(customer: u64, price_whole: u128, milli: u128) -> Command {
    Command::Place(NewOrder {
        customer: CustomerId(customer),
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: Some(TimeInForce::Gtc),
        price: Some(Price::from_minor(price_whole * 100_000_000)),
        quantity: Some(Amount::from_minor(milli * 100_000)),
        quote_order_qty: None,
        client_order_id: None,
        stp_mode: StpMode::ExpireMaker,
    })
}

fn sell(customer: u64, price_whole: u128, milli: u128) -> Command {
    let Command::Place(o) = buy(customer, price_whole, milli) else {
        unreachable!()
    };
    Command::Place(NewOrder {
        side: Side::Sell,
        ..o
    })
}

fn an_acknowledged_order_is_already_in_the_store(db: &Db) {
    let (_engine, handle) = start(db);
    let mut other = db.open();
    runtime().block_on(async {
        handle.execute(deposit(1, "USDT", 10_000, 1)).await.unwrap();
        let Reply::Placed { order, .. } = handle.execute(buy(1, 50_000, 10)).await.unwrap() else {
            panic!()
        };
        // A second, independent connection sees it the moment the reply arrives.
        let state = tokio::task::spawn_blocking(move || other.load_state().unwrap())
            .await
            .unwrap();
        assert_eq!(state.open_orders.len(), 1);
        assert_eq!(state.open_orders[0].id, order.id);
    });
}

fn restart_resumes_books_holds_and_balances_exactly(db: &Db) {
    let rt = runtime();
    let snapshot = |handle: &EngineHandle| {
        rt.block_on(async {
            let b1 = handle.query(Query::Balances(CustomerId(1))).await.unwrap();
            let b2 = handle.query(Query::Balances(CustomerId(2))).await.unwrap();
            let depth = handle
                .query(Query::Depth {
                    symbol: "BTCUSDT".into(),
                    limit: 100,
                })
                .await
                .unwrap();
            let open = handle
                .query(Query::OpenOrders {
                    customer: CustomerId(1),
                    symbol: None,
                })
                .await
                .unwrap();
            (b1, b2, depth, open)
        })
    };
    let before = {
        let (engine, handle) = start(db);
        rt.block_on(async {
            for cmd in [
                deposit(1, "USDT", 100_000, 1),
                deposit(2, "BTC", 10, 2),
                buy(1, 50_000, 100),
                buy(1, 49_000, 50),
                sell(2, 50_000, 40),
                sell(2, 51_000, 30),
            ] {
                handle.execute(cmd).await.unwrap();
            }
        });
        let s = snapshot(&handle);
        drop(handle);
        engine.join();
        s
    };
    let (_engine, handle) = start(db);
    let after = snapshot(&handle);
    assert_eq!(
        before, after,
        "the depth's lastUpdateId included: it must not run backwards"
    );
    let QueryReply::OpenOrders(open) = &after.3 else {
        panic!()
    };
    assert_eq!(open[0].status, OrderStatus::PartiallyFilled);
}

fn a_failed_commit_acknowledges_nothing_and_changes_nothing(db: &Db) {
    let (_engine, handle) = start(db);
    let rt = runtime();
    rt.block_on(async {
        handle
            .execute(deposit(1, "USDT", 100_000, 1))
            .await
            .unwrap();
    });
    db.break_order_inserts();
    rt.block_on(async {
        let refused = handle.execute(buy(1, 50_000, 10)).await;
        assert_eq!(refused, Err(EngineError::Unavailable));
        let QueryReply::Balances(b) = handle.query(Query::Balances(CustomerId(1))).await.unwrap()
        else {
            panic!()
        };
        let usdt = b.iter().find(|(a, _)| a.as_str() == "USDT").unwrap().1;
        assert_eq!(
            usdt.held(),
            Amount::ZERO,
            "the hold of the refused order was rolled back"
        );
    });
    db.repair_order_inserts();
    rt.block_on(async {
        let Reply::Placed { order, .. } = handle.execute(buy(1, 50_000, 10)).await.unwrap() else {
            panic!()
        };
        assert_eq!(order.id.0, 1, "the refused order's id was never used");
    });
}

/// A deposit from the inbox is credited once however often it is queued, and each time
/// it is taken the log says so, in the same commit.
fn inbox_deposits_are_applied_once_and_logged(db: &Db) {
    let (_engine, handle) = start_audited(db, Duration::from_secs(1)).unwrap();
    let mut admin = db.open();
    for n in 1..=3 {
        ztx_store::testing::create_customer(&mut *admin, &format!("c{n}@example.com"), 1).unwrap();
    }
    let amount = Amount::from_minor(5 * 100_000_000);
    let item = admin
        .enqueue_deposit(TransferId(77), CustomerId(3), code("USDT"), amount, 1)
        .unwrap();
    let again = admin
        .enqueue_deposit(TransferId(77), CustomerId(3), code("USDT"), amount, 2)
        .unwrap();
    let mut done = |id| {
        for _ in 0..200 {
            if let Some(c) = admin.inbox_item(id).unwrap().and_then(|i| i.completion) {
                return c.result;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("inbox item not processed");
    };
    assert!(done(item).starts_with("ok"));
    assert!(done(again).contains("AlreadyApplied"));
    runtime().block_on(async {
        let QueryReply::Balances(b) = handle.query(Query::Balances(CustomerId(3))).await.unwrap()
        else {
            panic!()
        };
        let usdt = b.iter().find(|(a, _)| a.as_str() == "USDT").unwrap().1;
        assert_eq!(usdt.available(), amount);
    });
    let taken: Vec<Entry> = logged(&mut db.open())
        .into_iter()
        .filter(|e| e.action == "inbox deposit")
        .collect();
    assert_eq!(taken.len(), 2, "{taken:?}");
    for (entry, id) in taken.iter().zip([item, again]) {
        assert_eq!((entry.kind, entry.outcome), (Kind::Admin, Outcome::Success));
        assert_eq!(entry.customer, Some(3));
        let item = entry.params.iter().find(|(n, _)| n == "item").unwrap();
        assert_eq!(item.1, id.0.to_string());
        assert!(
            entry
                .params
                .contains(&("amount_minor".into(), amount.minor().to_string().into()))
        );
    }
}

fn history_is_indexed_in_the_background(db: &Db) {
    let (_engine, handle) = start(db);
    let mut other = db.open();
    let (last_order, last_trade) = runtime().block_on(async {
        handle.execute(deposit(1, "USDT", 10_000, 1)).await.unwrap();
        handle.execute(deposit(2, "BTC", 1, 2)).await.unwrap();
        handle.execute(buy(1, 50_000, 10)).await.unwrap();
        let Reply::Placed { order, trades } = handle.execute(sell(2, 50_000, 10)).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(trades.len(), 1);
        (order.id, trades[0].id)
    });
    // Nobody but the engine's upkeep thread indexes; it catches up within a few of its
    // intervals.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (orders, trades) = other.history_indexed_to().unwrap();
        if orders == last_order && trades == last_trade {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "history still indexed only to {orders:?}, {trades:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The WAL's checkpoint sequence number (bytes 12..16 of its header): SQLite adds one
/// each time the WAL starts over from its beginning.
fn wal_restarts(wal: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(wal)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    Some(u32::from_be_bytes(header[12..16].try_into().ok()?))
}

/// Under commits that never pause, a checkpoint on another connection never catches up
/// with the last one, so only the writer can let the WAL start over; it must keep doing
/// so, or the WAL grows without end and every page look-up in it slows. The store's own
/// backstop restarts it only past 16,000 frames (about 64 MiB), so a first restart while
/// the file is well below that size is the writer's doing.
#[test]
fn the_wal_starts_over_under_continuous_commits() {
    const RESTARTS: usize = 3;
    const BACKSTOP_BYTES: u64 = 16_000 * (4_096 + 24);
    let db = Db::sqlite();
    let Db::Sqlite(dir) = &db else { unreachable!() };
    let wal = dir.path().join("ztx.sqlite-wal");
    let (_engine, handle) = start(&db);
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            // The WAL's size when it first started over (its file never shrinks).
            let mut before_first = 0;
            while running.load(Ordering::Acquire) && seen.len() <= RESTARTS {
                seen.extend(wal_restarts(&wal));
                if seen.len() <= 1 {
                    before_first = std::fs::metadata(&wal).map_or(0, |m| m.len());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            running.store(false, Ordering::Release);
            (seen.len().saturating_sub(1), before_first)
        })
    };
    let next_id = Arc::new(AtomicU64::new(1));
    runtime().block_on(async {
        // Slow machines (a debug build beside other tests) get time, not a pass.
        let until = std::time::Instant::now() + Duration::from_secs(20);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let handle = handle.clone();
                let next_id = next_id.clone();
                let running = running.clone();
                tokio::spawn(async move {
                    while running.load(Ordering::Acquire) && std::time::Instant::now() < until {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        handle
                            .execute(deposit(1 + id % 8, "USDT", 1, u128::from(id)))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    running.store(false, Ordering::Release);
    let (restarts, before_first) = sampler.join().unwrap();
    let committed = next_id.load(Ordering::Relaxed);
    eprintln!("{restarts} restarts in {committed} commits; {before_first} bytes before the first");
    assert!(
        restarts >= RESTARTS,
        "the WAL started over only {restarts} times in {committed} commits"
    );
    assert!(
        before_first < BACKSTOP_BYTES / 2,
        "the WAL grew to {before_first} bytes before it first started over"
    );
}

/// The exchange's commits never wait for the history database, where SQLite keeps the
/// derived indexes and the audit tree's nodes: while another connection holds its write
/// lock (as the upkeep does while indexing), an audited engine still commits. The
/// writer's connection must not have it attached, or its `BEGIN IMMEDIATE` would take
/// that lock too and wait for it (here until the busy timeout, then fail).
#[test]
fn an_audited_commit_does_not_wait_for_the_history_database() {
    let db = Db::sqlite();
    let Db::Sqlite(dir) = &db else { unreachable!() };
    let rt = runtime();
    // A log long enough that resuming it reads stored nodes of the tree.
    {
        let (engine, handle) = start_audited(&db, Duration::from_secs(3600)).unwrap();
        for id in 1..=40 {
            rt.block_on(handle.execute_audited(deposit(1, "USDT", 1, id), audit("deposit")))
                .unwrap();
        }
        drop(handle);
        engine.join();
    }
    db.open().index_audit(1_000).unwrap();
    let (_engine, handle) = start_audited(&db, Duration::from_secs(3600)).unwrap();
    let history = rusqlite::Connection::open(dir.path().join("ztx.sqlite-history")).unwrap();
    history.execute_batch("BEGIN IMMEDIATE").unwrap();
    let committed =
        rt.block_on(handle.execute_audited(deposit(1, "USDT", 1, 41), audit("deposit")));
    history.execute_batch("ROLLBACK").unwrap();
    assert!(
        committed.is_ok(),
        "a commit waited for the history database's lock: {committed:?}"
    );
}

fn log_key() -> LogKey {
    LogKey::from_seed("ztx.test/audit", &[5; 32]).unwrap()
}

fn start_audited(db: &Db, every: Duration) -> Result<(Engine, EngineHandle), StartError> {
    let config = AuditConfig {
        key: log_key(),
        checkpoint_every: every,
        feed: None,
    };
    Engine::start_with(db.factory(), vec![market()], clock(), Some(config))
}

fn entry(action: &str) -> Entry {
    Entry {
        prev: ztx_audit::Hash::ZERO,
        time_ms: 1_700_000_000_000,
        kind: Kind::Request,
        request_id: 7,
        customer: Some(1),
        api_key: Some(3),
        operator: None,
        client_ip: Some("192.0.2.1".parse().unwrap()),
        action: action.into(),
        params: vec![("symbol".into(), "BTCUSDT".into())],
        outcome: Outcome::Success,
        denial: None,
        code: None,
    }
}

fn audit(action: &str) -> Audit {
    Audit {
        entry: entry(action),
        code_of: |_| -2010,
        accessed: Vec::new(),
    }
}

/// The log's entries, those of the engine's own store calls included.
fn all_logged(store: &mut Box<dyn Store>) -> Vec<Entry> {
    let rows = store.audit_entries(0, 1000).unwrap();
    rows.iter()
        .map(|r| Entry::decode(&r.entry).unwrap())
        .collect()
}

/// The log's entries but those of store calls: what was sent to it.
fn logged(store: &mut Box<dyn Store>) -> Vec<Entry> {
    all_logged(store)
        .into_iter()
        .filter(|e| e.kind != Kind::DataAccess)
        .collect()
}

/// Each request's entry is in the store the moment its answer arrives, with the outcome
/// the exchange gave it; stopping signs a checkpoint of every entry.
fn audit_entries_are_durable_with_what_they_record(db: &Db) {
    let (engine, handle) = start_audited(db, Duration::from_secs(3600)).unwrap();
    let mut store = db.open();
    let rt = runtime();
    rt.block_on(handle.execute_audited(deposit(1, "USDT", 10_000, 1), audit("deposit")))
        .unwrap();
    assert_eq!(logged(&mut store).len(), 1);
    // Customer 2 has nothing: refused, and logged as refused with its code.
    let refused =
        rt.block_on(handle.execute_audited(buy(2, 50_000, 10), audit("POST /api/v3/order")));
    assert!(matches!(refused, Err(EngineError::Refused(_))));
    assert_eq!(logged(&mut store).len(), 2);
    let denied = Entry {
        outcome: Outcome::Denied,
        denial: Some(Denial::BadSignature),
        code: Some(-1022),
        ..entry("GET /api/v3/account")
    };
    rt.block_on(handle.record(denied.clone())).unwrap();
    assert_eq!(logged(&mut store).len(), 3);
    rt.block_on(handle.query_audited(Query::Balances(CustomerId(1)), entry("GET /api/v3/account")))
        .unwrap();
    let log = logged(&mut store);
    let outcomes: Vec<_> = log.iter().map(|e| (e.outcome, e.code)).collect();
    assert_eq!(
        outcomes,
        [
            (Outcome::Success, None),
            (Outcome::Failure, Some(-2010)),
            (Outcome::Denied, Some(-1022)),
            (Outcome::Success, None),
        ]
    );
    assert_eq!(
        log[2],
        Entry {
            prev: log[2].prev,
            ..denied
        }
    );
    // Each entry names the leaf before it.
    let all = all_logged(&mut store);
    let rows = store.audit_entries(0, 100).unwrap();
    assert_eq!(all[0].prev, ztx_audit::Hash::ZERO);
    for (entry, before) in all[1..].iter().zip(&rows) {
        assert_eq!(entry.prev, before.leaf);
    }
    // The deposit's commit is accounted for in that commit, right after its entry.
    assert_eq!(all[1].kind, Kind::DataAccess);
    assert_eq!(all[1].action, "store commit");
    assert_eq!(
        store.latest_checkpoint().unwrap(),
        None,
        "none due within an hour"
    );
    drop(handle);
    engine.join();
    let size = store.audit_size().unwrap();
    let last = store.latest_checkpoint().unwrap().unwrap();
    let signed = Checkpoint::open(&last.note, &log_key().verifier()).unwrap();
    assert_eq!((signed.size, last.size), (size, size));
    assert_eq!(signed.root, store.audit_root(size).unwrap());
}

/// While entries arrive, a checkpoint follows within the period even when nothing else
/// comes to commit; each one extends the one before.
fn checkpoints_are_signed_while_entries_arrive(db: &Db) {
    let (_engine, handle) = start_audited(db, Duration::from_millis(100)).unwrap();
    let mut store = db.open();
    let rt = runtime();
    let mut seen = Vec::new();
    for round in 0..3u64 {
        rt.block_on(handle.record(entry("GET /api/v3/ping")))
            .unwrap();
        // Everything logged so far, the engine's own accesses included.
        let wanted = store.audit_size().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let checkpoint = loop {
            match store.latest_checkpoint().unwrap() {
                Some(c) if c.size >= wanted => break c,
                _ if std::time::Instant::now() > deadline => panic!("no checkpoint of {round}"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let signed = Checkpoint::open(&checkpoint.note, &log_key().verifier()).unwrap();
        if let Some(previous) = seen.last() {
            let previous: &Checkpoint = previous;
            let proof = store
                .audit_consistency_proof(previous.size, signed.size)
                .unwrap();
            verify_consistency(
                previous.size,
                signed.size,
                &previous.root,
                &signed.root,
                &proof,
            )
            .unwrap();
        }
        seen.push(signed);
    }
    // The period holds while entries keep arriving: over two seconds of them, a
    // checkpoint at least every few periods (not only when the engine stops).
    let before = store.latest_checkpoint().unwrap().map_or(0, |c| c.size);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        rt.block_on(handle.record(entry("GET /api/v3/ping")))
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let signed = store.audit_checkpoints(before, 1_000).unwrap();
    assert!(
        signed.len() >= 5,
        "{} checkpoints in 2 s at a 100 ms period",
        signed.len()
    );
    for pair in signed.windows(2) {
        let gap = pair[1].created_ms - pair[0].created_ms;
        assert!(gap >= 100, "signed {gap} ms after the one before");
    }
}

/// An idle engine's log stops growing: the accounts of its own upkeep (which indexes the
/// log's tree, among other things) never feed on themselves.
fn an_idle_log_stops_growing(db: &Db) {
    let (_engine, handle) = start_audited(db, Duration::from_millis(100)).unwrap();
    let mut store = db.open();
    let rt = runtime();
    rt.block_on(handle.execute_audited(deposit(1, "USDT", 10_000, 1), audit("deposit")))
        .unwrap();
    // Several upkeep rounds (every 100 ms) and idle wakes of the writer (every 500 ms).
    std::thread::sleep(Duration::from_millis(1_500));
    let settled = store.audit_size().unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(store.audit_size().unwrap(), settled, "the idle log grew");
    // What it holds: the deposit, its commit, the state loaded at start and the upkeep's
    // indexing of the deposit's rows, each once.
    let actions: Vec<String> = all_logged(&mut store)
        .into_iter()
        .map(|e| e.action.to_string())
        .collect();
    assert!(actions.len() <= 8, "{actions:?}");
    assert_eq!(
        actions.iter().filter(|a| *a == "store commit").count(),
        1,
        "{actions:?}"
    );
}

/// After a restart the log goes on where it ended, consistent with what was signed.
fn a_restarted_engine_extends_the_same_log(db: &Db) {
    let rt = runtime();
    for _ in 0..2 {
        let (engine, handle) = start_audited(db, Duration::from_secs(3600)).unwrap();
        for _ in 0..3 {
            rt.block_on(handle.record(entry("GET /api/v3/time")))
                .unwrap();
        }
        drop(handle);
        engine.join();
    }
    let mut store = db.open();
    assert_eq!(logged(&mut store).len(), 6);
    let checkpoints = store.audit_checkpoints(0, 10).unwrap();
    let sizes: Vec<u64> = checkpoints.iter().map(|c| c.size).collect();
    // One at each stop, of everything logged by then (each start's state load too).
    assert_eq!(sizes.len(), 2);
    assert_eq!(sizes[1], store.audit_size().unwrap());
    assert!(sizes[0] >= 3 && sizes[0] < sizes[1], "{sizes:?}");
    let proof = store.audit_consistency_proof(sizes[0], sizes[1]).unwrap();
    verify_consistency(
        sizes[0],
        sizes[1],
        &checkpoints[0].root,
        &checkpoints[1].root,
        &proof,
    )
    .unwrap();
}

/// Someone with the database's owner rights drops the guard and edits an entry's leaf
/// hash, and the derived tree is rebuilt from the leaves: the server refuses to append
/// to a log whose stored root is not the one it signed. (An edit that leaves the stored
/// tree alone is the offline verifier's to name; see the `ztx audit verify` tests.)
fn a_rewritten_log_is_not_resumed(db: &Db) {
    let (engine, handle) = start_audited(db, Duration::from_secs(3600)).unwrap();
    let rt = runtime();
    for _ in 0..3 {
        rt.block_on(handle.record(entry("GET /api/v3/time")))
            .unwrap();
    }
    drop(handle);
    engine.join();
    let forged = Entry::encode(&entry("GET /api/v3/ping")).unwrap();
    let forged = ztx_audit::Hash::leaf(&forged);
    let (drop_guard, hex) = match db {
        Db::Sqlite(_) => ("DROP TRIGGER audit_entries_no_update;", "X'"),
        Db::Postgres(_) => (
            "DROP TRIGGER audit_entries_append_only ON audit_entries;",
            "'\\x",
        ),
    };
    db.raw(&format!(
        "{drop_guard} UPDATE audit_entries SET leaf = {hex}{}' WHERE idx = 1;",
        forged.to_hex()
    ));
    match db {
        Db::Sqlite(dir) => {
            for file in ["ztx.sqlite-history", "ztx.sqlite-history-wal"] {
                let _ = std::fs::remove_file(dir.path().join(file));
            }
        }
        Db::Postgres(_) => db.raw(
            "DELETE FROM audit_nodes; UPDATE history_indexed SET last_id = 0 WHERE name = 'audit';",
        ),
    }
    let refused = start_audited(db, Duration::from_secs(3600)).map(|_| ());
    assert!(matches!(refused, Err(StartError::Audit(_))), "{refused:?}");
}

/// An engine started without an audit log refuses audited requests, unexecuted.
fn audited_requests_need_an_audit_log(db: &Db) {
    let (_engine, handle) = start(db);
    runtime().block_on(async {
        let result = handle
            .execute_audited(deposit(1, "USDT", 10, 1), audit("deposit"))
            .await;
        assert_eq!(result, Err(EngineError::Unavailable));
        assert_eq!(
            handle.record(entry("GET /api/v3/time")).await,
            Err(EngineError::Unavailable)
        );
        let QueryReply::Balances(balances) =
            handle.query(Query::Balances(CustomerId(1))).await.unwrap()
        else {
            panic!()
        };
        assert!(
            balances
                .iter()
                .all(|(_, b)| b.credits_posted == Amount::ZERO),
            "the deposit did not happen: {balances:?}"
        );
    });
}

/// Runs each scenario against both backends.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Db::sqlite()); })+
        }
        mod postgres {
            $(#[test] fn $name() {
                if let Some(db) = super::Db::postgres() {
                    super::$name(&db);
                }
            })+
        }
    };
}

on_both_backends!(
    an_acknowledged_order_is_already_in_the_store,
    restart_resumes_books_holds_and_balances_exactly,
    a_failed_commit_acknowledges_nothing_and_changes_nothing,
    inbox_deposits_are_applied_once_and_logged,
    history_is_indexed_in_the_background,
    audit_entries_are_durable_with_what_they_record,
    checkpoints_are_signed_while_entries_arrive,
    an_idle_log_stops_growing,
    a_restarted_engine_extends_the_same_log,
    a_rewritten_log_is_not_resumed,
    audited_requests_need_an_audit_log,
);

/// The nice values of this process's threads with the given name (Linux reports each
/// thread's own in field 19 of `/proc/self/task/<tid>/stat`).
#[cfg(target_os = "linux")]
fn nice_of_threads(name: &str) -> Vec<i32> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        nice.push(fields[16].parse().unwrap());
    }
    nice
}

/// The upkeep thread works beside the request path: under load it must not take the
/// engine's or the writer's CPU, so it runs at a lower priority than they do.
#[cfg(target_os = "linux")]
#[test]
fn the_upkeep_thread_yields_to_the_request_path() {
    let db = Db::sqlite();
    let (_engine, handle) = start(&db);
    runtime()
        .block_on(handle.execute(deposit(1, "USDT", 1, 1)))
        .unwrap();
    // Other tests' engines run in this process too: every thread of each name counts.
    let writers = nice_of_threads("ztx-writer");
    // The nice the tests run at (0 unless started under `nice`).
    let base = *writers.iter().max().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let upkeep = nice_of_threads("ztx-upkeep");
        if !upkeep.is_empty()
            && upkeep
                .iter()
                .all(|&n| n == ztx_engine::BACKGROUND_NICE.max(base))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upkeep threads at nice {upkeep:?}, writers at {writers:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(nice_of_threads("ztx-engine").iter().all(|&n| n == base));
}
