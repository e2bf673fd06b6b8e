//! The ledger's tests: TigerBeetle's semantics case by case, and the invariants of
//! DESIGN.md (conservation, no negative balance, idempotency) as properties.

use proptest::prelude::*;

use super::*;

fn usdt() -> AssetCode {
    AssetCode::new("USDT").unwrap()
}
fn btc() -> AssetCode {
    AssetCode::new("BTC").unwrap()
}
fn cust(n: u64, asset: AssetCode) -> AccountKey {
    AccountKey::new(Owner::Customer(CustomerId(n)), asset)
}
fn external(asset: AssetCode) -> AccountKey {
    AccountKey::new(Owner::External, asset)
}
fn escrow(asset: AssetCode) -> AccountKey {
    AccountKey::new(Owner::Escrow, asset)
}
fn single(id: u128, debit: AccountKey, credit: AccountKey, amount: u128) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit,
        credit,
        amount: Amount::from_minor(amount),
        kind: TransferKind::Single,
        code: TransferCode::Deposit,
        timestamp_ms: 1,
    }
}
fn with_kind(mut t: Transfer, kind: TransferKind) -> Transfer {
    t.kind = kind;
    t
}

#[test]
fn deposit_credits_customer_and_debits_external() {
    let mut l = Ledger::new();
    let t = single(1, external(usdt()), cust(1, usdt()), 500);
    assert_eq!(l.apply(t), Ok(Applied::Created));
    assert_eq!(
        l.balances(&cust(1, usdt())).available(),
        Amount::from_minor(500)
    );
    assert_eq!(l.balances(&external(usdt())).net_posted(), -500);
}

#[test]
fn repeated_id_with_same_content_returns_first_result_and_changes_nothing() {
    let mut l = Ledger::new();
    let t = single(1, external(usdt()), cust(1, usdt()), 500);
    l.apply(t).unwrap();
    let before = l.clone().balances(&cust(1, usdt()));
    assert_eq!(l.apply(t), Ok(Applied::AlreadyApplied));
    assert_eq!(l.balances(&cust(1, usdt())), before);
}

#[test]
fn repeated_id_with_different_content_is_refused() {
    let mut l = Ledger::new();
    l.apply(single(1, external(usdt()), cust(1, usdt()), 500))
        .unwrap();
    let changed = single(1, external(usdt()), cust(1, usdt()), 501);
    assert_eq!(
        l.apply(changed),
        Err(TransferError::ExistsWithDifferentContent(TransferId(1)))
    );
    assert_eq!(
        l.balances(&cust(1, usdt())).available(),
        Amount::from_minor(500)
    );
}

#[test]
fn overdraft_is_refused() {
    let mut l = Ledger::new();
    l.apply(single(1, external(usdt()), cust(1, usdt()), 100))
        .unwrap();
    let spend = single(2, cust(1, usdt()), cust(2, usdt()), 101);
    assert_eq!(
        l.apply(spend),
        Err(TransferError::ExceedsCredits(TransferId(2)))
    );
    assert_eq!(l.balances(&cust(2, usdt())), Balances::default());
}

#[test]
fn hold_then_partial_posts_then_void_of_the_rest() {
    let mut l = Ledger::new();
    l.apply(single(1, external(usdt()), cust(1, usdt()), 100))
        .unwrap();
    let hold = with_kind(
        single(2, cust(1, usdt()), escrow(usdt()), 80),
        TransferKind::Pending,
    );
    l.apply(hold).unwrap();
    let b = l.balances(&cust(1, usdt()));
    assert_eq!((b.available().minor(), b.held().minor()), (20, 80));
    // The hold blocks spending it twice.
    let spend = single(3, cust(1, usdt()), cust(2, usdt()), 21);
    assert!(l.apply(spend).is_err());
    let post = |id, amount| {
        with_kind(
            single(id, cust(1, usdt()), escrow(usdt()), amount),
            TransferKind::PostPending {
                pending_id: TransferId(2),
            },
        )
    };
    l.apply(post(4, 30)).unwrap();
    l.apply(post(5, 30)).unwrap();
    assert_eq!(l.pending(TransferId(2)).unwrap().remaining.minor(), 20);
    assert_eq!(
        l.apply(post(6, 21)),
        Err(TransferError::ExceedsPending(TransferId(6), TransferId(2)))
    );
    let void = with_kind(
        single(7, cust(1, usdt()), escrow(usdt()), 20),
        TransferKind::VoidPending {
            pending_id: TransferId(2),
        },
    );
    l.apply(void).unwrap();
    assert!(l.pending(TransferId(2)).is_none());
    let b = l.balances(&cust(1, usdt()));
    assert_eq!((b.available().minor(), b.held().minor()), (40, 0));
    assert_eq!(l.balances(&escrow(usdt())).credits_posted.minor(), 60);
}

#[test]
fn post_of_a_finished_hold_is_refused() {
    let mut l = Ledger::new();
    l.apply(single(1, external(usdt()), cust(1, usdt()), 10))
        .unwrap();
    let hold = with_kind(
        single(2, cust(1, usdt()), escrow(usdt()), 10),
        TransferKind::Pending,
    );
    l.apply(hold).unwrap();
    let void = |id| {
        with_kind(
            single(id, cust(1, usdt()), escrow(usdt()), 10),
            TransferKind::VoidPending {
                pending_id: TransferId(2),
            },
        )
    };
    l.apply(void(3)).unwrap();
    assert_eq!(
        l.apply(void(4)),
        Err(TransferError::PendingNotFound(TransferId(4), TransferId(2)))
    );
}

#[test]
fn linked_chain_is_all_or_nothing() {
    let mut l = Ledger::new();
    l.apply(single(1, external(usdt()), cust(1, usdt()), 100))
        .unwrap();
    let before = l.clone();
    let chain = [
        single(2, cust(1, usdt()), cust(2, usdt()), 60),
        single(3, cust(1, usdt()), cust(3, usdt()), 60), // overdraws: the chain fails
    ];
    assert!(l.apply_linked(&chain).is_err());
    assert_eq!(
        l.balances(&cust(1, usdt())),
        before.balances(&cust(1, usdt()))
    );
    assert_eq!(l.balances(&cust(2, usdt())), Balances::default());
    assert!(
        l.transfer(TransferId(2)).is_none(),
        "the first link was undone"
    );
}

#[test]
fn mismatched_assets_zero_amounts_and_self_transfers_are_refused() {
    let mut l = Ledger::new();
    assert_eq!(
        l.apply(single(1, external(usdt()), cust(1, btc()), 1)),
        Err(TransferError::AssetMismatch(TransferId(1)))
    );
    assert_eq!(
        l.apply(single(2, external(usdt()), cust(1, usdt()), 0)),
        Err(TransferError::ZeroAmount(TransferId(2)))
    );
    assert_eq!(
        l.apply(single(3, cust(1, usdt()), cust(1, usdt()), 1)),
        Err(TransferError::SameAccount(TransferId(3)))
    );
}

/// A random operation against a small set of accounts.
#[derive(Debug, Clone)]
enum Op {
    Deposit { to: u64, amount: u128 },
    Move { from: u64, to: u64, amount: u128 },
    Hold { from: u64, amount: u128 },
    Post { hold: usize, amount: u128 },
    Void { hold: usize, amount: u128 },
    Repeat { index: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..4, 1u128..1_000).prop_map(|(to, amount)| Op::Deposit { to, amount }),
        (0u64..4, 0u64..4, 1u128..1_000).prop_map(|(from, to, amount)| Op::Move {
            from,
            to,
            amount
        }),
        (0u64..4, 1u128..1_000).prop_map(|(from, amount)| Op::Hold { from, amount }),
        (0usize..8, 1u128..500).prop_map(|(hold, amount)| Op::Post { hold, amount }),
        (0usize..8, 1u128..500).prop_map(|(hold, amount)| Op::Void { hold, amount }),
        (0usize..64).prop_map(|index| Op::Repeat { index }),
    ]
}

/// Runs ops, returning the ledger, every transfer it accepted, and the deposited total.
fn run(ops: &[Op]) -> (Ledger, Vec<Transfer>, u128) {
    let mut l = Ledger::new();
    let mut accepted: Vec<Transfer> = Vec::new();
    let mut holds: Vec<TransferId> = Vec::new();
    let mut deposited = 0u128;
    for (n, op) in ops.iter().enumerate() {
        let id = TransferId(n as u128 + 1);
        let t = match op {
            Op::Deposit { to, amount } => {
                single(id.0, external(usdt()), cust(*to, usdt()), *amount)
            }
            Op::Move { from, to, amount } => {
                single(id.0, cust(*from, usdt()), cust(*to, usdt()), *amount)
            }
            Op::Hold { from, amount } => with_kind(
                single(id.0, cust(*from, usdt()), escrow(usdt()), *amount),
                TransferKind::Pending,
            ),
            Op::Post { hold, amount } | Op::Void { hold, amount } => {
                let Some(pending_id) = holds.get(*hold).copied() else {
                    continue;
                };
                let Some(p) = l.pending(pending_id) else {
                    continue;
                };
                let kind = if matches!(op, Op::Post { .. }) {
                    TransferKind::PostPending { pending_id }
                } else {
                    TransferKind::VoidPending { pending_id }
                };
                with_kind(
                    single(id.0, p.transfer.debit, p.transfer.credit, *amount),
                    kind,
                )
            }
            Op::Repeat { index } => {
                let Some(t) = accepted.get(*index).copied() else {
                    continue;
                };
                assert_eq!(l.apply(t), Ok(Applied::AlreadyApplied));
                continue;
            }
        };
        if l.apply(t) == Ok(Applied::Created) {
            accepted.push(t);
            if matches!(op, Op::Deposit { .. }) {
                deposited += t.amount.minor();
            }
            if t.kind == TransferKind::Pending {
                holds.push(t.id);
            }
        }
    }
    (l, accepted, deposited)
}

proptest! {
    /// Invariant 2: per asset, posted credits equal posted debits over all accounts, and
    /// the platform-side total changes only by deposits.
    #[test]
    fn per_asset_conservation(ops in proptest::collection::vec(op(), 0..64)) {
        let (l, _, deposited) = run(&ops);
        let net: i128 = l.accounts().map(|(_, b)| b.net_posted()).sum();
        prop_assert_eq!(net, 0);
        let pending_debits: u128 = l.accounts().map(|(_, b)| b.debits_pending.minor()).sum();
        let pending_credits: u128 = l.accounts().map(|(_, b)| b.credits_pending.minor()).sum();
        prop_assert_eq!(pending_debits, pending_credits);
        let inside: i128 = l
            .accounts()
            .filter(|(k, _)| k.owner != Owner::External)
            .map(|(_, b)| b.net_posted())
            .sum();
        prop_assert_eq!(inside, deposited as i128);
    }

    /// Invariant 2: no customer balance goes negative, holds included.
    #[test]
    fn no_negative_customer_balance(ops in proptest::collection::vec(op(), 0..64)) {
        let (l, _, _) = run(&ops);
        for (key, b) in l.accounts() {
            if key.owner != Owner::External {
                prop_assert!(b.debits_posted.minor() + b.debits_pending.minor() <= b.credits_posted.minor(), "{key:?} {b:?}");
            }
        }
    }

    /// Invariant 2: a transfer id is applied at most once, whatever is replayed.
    #[test]
    fn idempotency(ops in proptest::collection::vec(op(), 0..64)) {
        let (mut l, accepted, _) = run(&ops);
        let before: Vec<(AccountKey, Balances)> = l.accounts().map(|(k, b)| (*k, *b)).collect();
        for t in &accepted {
            prop_assert_eq!(l.apply(*t), Ok(Applied::AlreadyApplied));
            let mut altered = *t;
            altered.amount = Amount::from_minor(t.amount.minor() + 1);
            prop_assert_eq!(l.apply(altered), Err(TransferError::ExistsWithDifferentContent(t.id)));
        }
        let after: Vec<(AccountKey, Balances)> = l.accounts().map(|(k, b)| (*k, *b)).collect();
        prop_assert_eq!(before, after);
    }
}
