//! A printed (not asserted) micro-benchmark: one `apply` of 1,000 orders, 6,000
//! transfers, 2,000 account updates, 1,000 pending updates and 500 trades.

use std::time::{Duration, Instant};

use ztx_core::{
    AccountKey, Amount, Balances, Changes, CustomerId, OrderStatus, Owner, TransferId, TransferKind,
};
use ztx_store::Store;

use crate::common::*;

fn batch(round: u64) -> Changes {
    let base = round * 1_000;
    let orders = (0..1_000)
        .map(|i| {
            order(
                base + i + 1,
                i % 100 + 1,
                "BTCUSDT",
                OrderStatus::New,
                base + i,
            )
        })
        .collect();
    let transfers = (0..6_000u128)
        .map(|i| {
            transfer(
                u128::from(round) * 10_000 + i + 1,
                TransferKind::Single,
                1 + i,
                base,
            )
        })
        .collect();
    let accounts = (0..2_000u64)
        .map(|i| {
            let key = AccountKey::new(
                Owner::Customer(CustomerId(i / 2 + 1)),
                asset(if i % 2 == 0 { "BTC" } else { "USDT" }),
            );
            let credits = Amount::from_minor(u128::from(round * 1_000 + i));
            (
                key,
                Balances {
                    credits_posted: credits,
                    ..Balances::default()
                },
            )
        })
        .collect();
    let pending = (0..1_000u128)
        .map(|i| {
            (
                TransferId(u128::from(round) * 10_000 + i + 1),
                Amount::from_minor(i + 1),
            )
        })
        .collect();
    let trades = (0..500)
        .map(|i| {
            trade(
                base + i + 1,
                "BTCUSDT",
                i % 7 + 1,
                i % 5 + 1,
                base * 60 + i * 100,
                30_000,
                3,
                i % 2 == 0,
            )
        })
        .collect();
    Changes {
        orders,
        trades,
        transfers,
        accounts,
        pending,
    }
}

fn run(name: &str, store: &mut dyn Store, rounds: u32) {
    let mut best = Duration::MAX;
    let started = Instant::now();
    for round in 0..rounds {
        let changes = batch(u64::from(round));
        let t = Instant::now();
        store.apply(&changes).unwrap();
        best = best.min(t.elapsed());
    }
    let mean = started.elapsed() / rounds;
    eprintln!(
        "bench {name}: apply(1000 orders + 6000 transfers + 2000 accounts + 1000 pending + \
         500 trades): best {} ms, mean {} ms over {rounds} batches (~{} orders/s)",
        best.as_millis(),
        mean.as_millis(),
        1_000_000_000 / mean.as_micros().max(1)
    );
}

#[test]
fn bench_apply_sqlite() {
    let fixture = SqliteFixture::new();
    let mut store = fixture.open();
    run("sqlite", &mut *store, 5);
    assert_eq!(store.load_state().unwrap().last_order_id, 5_000);
}

#[test]
fn bench_apply_postgres() {
    let Some(fixture) = PgFixture::new() else {
        return;
    };
    let mut store = fixture.open();
    run("postgres", &mut *store, 2);
    assert_eq!(store.load_state().unwrap().last_order_id, 2_000);
}
