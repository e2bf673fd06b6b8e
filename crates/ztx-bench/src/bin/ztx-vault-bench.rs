//! Column encryption's cost (issue 4's targets): sealing and opening one column value
//! under a customer's data key (XChaCha20-Poly1305, associated data binding table,
//! column, row and key version), a blind index, and rotating the key-encryption key over
//! the data keys of 100,000 customers (unwrap under the old version, wrap under the new).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_arithmetic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::panic,
    reason = "a benchmark harness: failing loudly is the right behaviour, and floats only format figures"
)]

use std::time::Instant;

use clap::Parser;
use hdrhistogram::Histogram;
use ztx_vault::Aad;
use ztx_vault::contact::ContactKeys;
use ztx_vault::envelope::{DataKey, IndexKey, KeyEncryption as _, LocalKeks, rewrap};

#[derive(Debug, Parser)]
#[command(about = "Column encryption: seal/open per value, blind index, KEK rotation")]
struct Args {
    /// Values sealed and opened per size.
    #[arg(long, default_value_t = 200_000)]
    values: u64,
    /// Customers whose data keys the rotation re-wraps.
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
}

fn report(name: &str, histogram: &Histogram<u64>) {
    println!(
        "{name}: mean {:.2} µs, p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        histogram.mean() / 1000.0,
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
    );
}

fn main() {
    let args = Args::parse();
    println!(
        "ztx-vault-bench --values {} --customers {}",
        args.values, args.customers
    );
    println!(
        "machine: {} cores; build: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let key = DataKey::generate();
    for (what, value) in [
        ("e-mail, 24 bytes", b"alice.smith@example.com!".to_vec()),
        ("API secret, 64 bytes", vec![0x5a; 64]),
    ] {
        let mut seal = Histogram::<u64>::new(3).unwrap();
        let mut open = Histogram::<u64>::new(3).unwrap();
        for row in 0..args.values {
            let row_key = row.to_be_bytes();
            let aad = Aad {
                table: "customers",
                column: "email",
                row_key: &row_key,
                key_version: 1,
            };
            let started = Instant::now();
            let sealed = key.seal(&value, &aad);
            let sealed_at = Instant::now();
            let opened = key.open(&sealed, &aad).unwrap();
            let opened_at = Instant::now();
            assert_eq!(opened.as_slice(), value.as_slice());
            seal.record((sealed_at - started).as_nanos() as u64)
                .unwrap();
            open.record((opened_at - sealed_at).as_nanos() as u64)
                .unwrap();
        }
        report(&format!("seal {what}"), &seal);
        report(&format!("open {what}"), &open);
    }
    let index = IndexKey::generate();
    let mut blind = Histogram::<u64>::new(3).unwrap();
    for row in 0..args.values {
        let email = format!("customer{row}@example.com");
        let started = Instant::now();
        std::hint::black_box(index.blind_index("email", email.as_bytes()));
        blind.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    report("blind index of an e-mail", &blind);

    let mut keks = LocalKeks::generate();
    let wrapped: Vec<_> = (0..args.customers)
        .map(|c| keks.wrap(&DataKey::generate(), &c.to_be_bytes()).unwrap())
        .collect();
    keks.add_version().unwrap();
    let started = Instant::now();
    let rewrapped: Vec<_> = wrapped
        .iter()
        .enumerate()
        .map(|(c, w)| {
            rewrap(&keks, w, &(c as u64).to_be_bytes())
                .unwrap()
                .unwrap()
        })
        .collect();
    let took = started.elapsed();
    assert!(rewrapped.iter().all(|w| w.kek_version == 2));
    // Untimed: every re-wrapped key still unwraps for its customer.
    for (c, w) in rewrapped.iter().enumerate() {
        keks.unwrap(w, &(c as u64).to_be_bytes()).unwrap();
    }
    println!(
        "KEK rotation: {} data keys re-wrapped in {:.3} s ({:.0} keys/s), one thread",
        args.customers,
        took.as_secs_f64(),
        args.customers as f64 / took.as_secs_f64()
    );
    rotate_in_the_store(args.customers);
}

/// The rotation as `ztx vault rotate` runs it: over the customers' rows of a SQLite
/// store (read a batch, re-wrap, write it back in one transaction, repeat).
fn rotate_in_the_store(customers: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ztx.sqlite");
    drop(ztx_store::SqliteStore::open(&path).unwrap());
    let keys = ContactKeys::load_or_create(dir.path()).unwrap();
    // Untimed set-up: the customers, as `ztx admin customer create` stores them, in
    // one transaction (one per customer would be a fsync each).
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    let tx = conn.transaction().unwrap();
    for c in 1..=customers {
        let email = format!("customer{c}@example.com");
        let row = ztx_api::contacts::stored(keys.seal_email(c, &email).unwrap());
        tx.execute(
            "INSERT INTO customers (id, email_index, email_sealed, created_ms) VALUES (?1, ?2, ?3, 1)",
            rusqlite::params![c as i64, keys.email_index(&email), row.sealed],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO customer_keys (customer_id, kek_version, data_key) VALUES (?1, ?2, ?3)",
            rusqlite::params![c as i64, row.kek_version, row.data_key],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(conn);
    keys.add_kek_version().unwrap();
    let mut store = ztx_store::open(path.to_str().unwrap()).unwrap();
    let started = Instant::now();
    let done =
        ztx_api::contacts::rotate(&mut *store, &keys, &ztx_vault::MasterKey::generate()).unwrap();
    let took = started.elapsed();
    assert_eq!(done.rewrapped, customers);
    let status = store.key_status().unwrap();
    assert_eq!(status.data_keys, vec![(2, customers)]);
    // Untimed: addresses still open, under the re-wrapped keys.
    for c in [1, customers / 2, customers] {
        let Some(ztx_store::StoredEmail::Sealed(row)) =
            store.sealed_email(ztx_core::CustomerId(c)).unwrap()
        else {
            panic!("customer {c} is not sealed");
        };
        let email = keys
            .open_email(c, &ztx_api::contacts::sealing(&row))
            .unwrap();
        assert_eq!(email, format!("customer{c}@example.com"));
    }
    println!(
        "KEK rotation in the store (SQLite, batches of {}): {} data keys read, re-wrapped and written in {:.3} s ({:.0} keys/s)",
        ztx_api::contacts::ROTATION_BATCH,
        customers,
        took.as_secs_f64(),
        customers as f64 / took.as_secs_f64()
    );
}
