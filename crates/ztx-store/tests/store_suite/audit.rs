//! The audit log's storage: entries appended with their commit, proofs from the stored
//! tree, append-only tables.

use ztx_audit::tree::root;
use ztx_audit::{Frontier, Hash, MemoryTree, verify_consistency, verify_inclusion};
use ztx_core::{Changes, TransferId, TransferKind};
use ztx_store::{AuditAppend, AuditRow, StoreError, StoredCheckpoint};

use crate::common::*;

fn rows(start: u64, count: u64) -> Vec<AuditRow> {
    (start..start + count)
        .map(|i| {
            let entry = format!("entry {i}").into_bytes();
            AuditRow {
                index: i,
                leaf: Hash::leaf(&entry),
                entry,
            }
        })
        .collect()
}

fn memory(n: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.push_entry(format!("entry {i}").as_bytes());
    }
    tree
}

fn append(rows: Vec<AuditRow>) -> AuditAppend {
    AuditAppend {
        rows,
        ..AuditAppend::default()
    }
}

/// Every proof the store serves verifies against the tree computed independently in
/// memory, whether its nodes are indexed, partly indexed or not at all.
pub fn audit_log_appends_and_proves(fx: &dyn Fixture) {
    let mut store = fx.open();
    assert_eq!(store.audit_size().unwrap(), 0);
    let mut size = 0;
    for count in [1u64, 6, 13, 1, 20] {
        store
            .commit(&Changes::default(), &append(rows(size, count)))
            .unwrap();
        size += count;
    }
    assert_eq!(store.audit_size().unwrap(), size);
    assert_eq!(store.audit_entries(0, 1000).unwrap(), rows(0, size));
    assert_eq!(store.audit_entries(40, 3).unwrap(), rows(40, 1));
    let tree = memory(size);
    let check = |store: &mut Box<dyn ztx_store::Store>| {
        for n in [1, 2, 7, 8, 9, 20, 33, size] {
            let r = root(&tree, n).unwrap();
            assert_eq!(store.audit_root(n).unwrap(), r, "root of {n}");
            for i in [0, n / 2, n - 1] {
                let proof = store.audit_inclusion_proof(i, n).unwrap();
                let leaf = Hash::leaf(format!("entry {i}").as_bytes());
                assert_eq!(verify_inclusion(i, n, &leaf, &proof, &r), Ok(()));
            }
            for m in [0, 1, n / 3, n - 1, n] {
                let proof = store.audit_consistency_proof(m, n).unwrap();
                let old = root(&tree, m).unwrap();
                assert_eq!(
                    verify_consistency(m, n, &old, &r, &proof),
                    Ok(()),
                    "{m}->{n}"
                );
            }
        }
        let mut frontier = Frontier::new();
        for row in rows(0, size) {
            frontier.push(row.leaf, |_| {});
        }
        assert_eq!(store.audit_frontier(size).unwrap(), frontier);
    };
    check(&mut store);
    assert_eq!(store.index_audit(10).unwrap(), 10);
    check(&mut store);
    assert_eq!(store.index_audit(1000).unwrap(), size - 10);
    assert_eq!(store.index_audit(1000).unwrap(), 0);
    check(&mut store);
    assert!(matches!(
        store.audit_inclusion_proof(0, size + 1),
        Err(StoreError::AuditRange(_))
    ));
    assert!(store.audit_inclusion_proof(size, size).is_err());
    assert!(store.audit_consistency_proof(5, 4).is_err());
}

/// Proofs read stored nodes sixteen at a time. A group read part-indexed (nodes up to
/// the mark stored, the rest computed from their children), or reaching past the tree a
/// proof is asked for, still gives every proof and root exactly.
pub fn audit_proofs_from_partly_indexed_groups(fx: &dyn Fixture) {
    let mut store = fx.open();
    let size = 300;
    store
        .commit(&Changes::default(), &append(rows(0, size)))
        .unwrap();
    let tree = memory(size);
    let check = |store: &mut Box<dyn ztx_store::Store>| {
        for n in [1, 15, 16, 17, 100, 255, 256, 257, 299, size] {
            let r = root(&tree, n).unwrap();
            assert_eq!(store.audit_root(n).unwrap(), r, "root of {n}");
            for i in (0..n).step_by(7).chain([n - 1]) {
                let proof = store.audit_inclusion_proof(i, n).unwrap();
                let leaf = Hash::leaf(format!("entry {i}").as_bytes());
                assert_eq!(
                    verify_inclusion(i, n, &leaf, &proof, &r),
                    Ok(()),
                    "{i} in {n}"
                );
            }
            for m in [1, 16, 100, n / 2, n - 1].into_iter().filter(|&m| m <= n) {
                let proof = store.audit_consistency_proof(m, n).unwrap();
                let old = root(&tree, m).unwrap();
                assert_eq!(
                    verify_consistency(m, n, &old, &r, &proof),
                    Ok(()),
                    "{m}->{n}"
                );
            }
        }
    };
    // Level-4 nodes 0..=5 stored, 6..=15 of the same group not yet; no level-8 node.
    assert_eq!(store.index_audit(100).unwrap(), 100);
    check(&mut store);
    // Level-8 node 0 stored; level 4 complete up to node 17 of 18.
    assert_eq!(store.index_audit(1000).unwrap(), size - 100);
    check(&mut store);
}

/// Commits of order-like entries chained as the engine's writer chains them, with the
/// stored-level nodes each commit completed: (rows, start, end, nodes) per commit.
type Chained = (Vec<AuditRow>, u64, u64, Vec<ztx_audit::Completed>);

fn chained(sizes: &[u64]) -> (Vec<Chained>, Frontier) {
    let mut frontier = Frontier::new();
    let mut last_leaf = Hash::ZERO;
    let mut commits = Vec::new();
    for &count in sizes {
        let start = frontier.size();
        let encoded = (start..start + count)
            .map(|i| {
                ztx_audit::Entry {
                    prev: Hash::ZERO,
                    time_ms: 1_700_000_000_000 + i,
                    kind: ztx_audit::Kind::Request,
                    request_id: i,
                    customer: Some(1),
                    api_key: Some(1),
                    operator: None,
                    client_ip: None,
                    action: "POST /api/v3/order".into(),
                    params: vec![("n".into(), format!("{i}").into())],
                    outcome: ztx_audit::Outcome::Success,
                    denial: None,
                    code: None,
                }
                .logged()
            })
            .collect();
        let mut nodes = Vec::new();
        let (rows, _) = AuditRow::chain_encoded(encoded, &mut frontier, &mut last_leaf, &mut nodes);
        commits.push((rows, start, frontier.size(), nodes));
    }
    (commits, frontier)
}

/// The nodes the writer completes as it chains a commit's entries, stored as they are
/// (`index_audit_nodes`) with no entry read back, give every root, proof and frontier
/// of the tree computed independently in memory, across group and level boundaries.
pub fn audit_nodes_the_writer_hands_over_are_the_indexed_nodes(fx: &dyn Fixture) {
    let (commits, frontier) = chained(&[1, 6, 13, 1, 20, 40, 300, 2, 129]);
    let size = frontier.size();
    let mut store = fx.open();
    let mut tree = MemoryTree::new();
    for (rows, start, end, nodes) in &commits {
        store
            .commit(&Changes::default(), &append(rows.clone()))
            .unwrap();
        rows.iter().for_each(|row| tree.push_entry(&row.entry));
        assert_eq!(
            store.index_audit_nodes(*start, *end, nodes).unwrap(),
            end - start,
            "entries {start}..{end}"
        );
    }
    // Nothing left for indexing to read: the handed nodes moved the mark to the end.
    assert_eq!(store.index_audit(100_000).unwrap(), 0);
    assert_eq!(store.audit_frontier(size).unwrap(), frontier);
    let rows: Vec<AuditRow> = commits.iter().flat_map(|c| c.0.clone()).collect();
    for n in [1, 16, 17, 255, 256, 257, 300, size - 1, size] {
        let r = root(&tree, n).unwrap();
        assert_eq!(store.audit_root(n).unwrap(), r, "root of {n}");
        for i in (0..n).step_by(37).chain([n - 1]) {
            let proof = store.audit_inclusion_proof(i, n).unwrap();
            let leaf = rows[usize::try_from(i).unwrap()].leaf;
            assert_eq!(
                verify_inclusion(i, n, &leaf, &proof, &r),
                Ok(()),
                "{i} in {n}"
            );
        }
        let proof = store.audit_consistency_proof(n / 2, n).unwrap();
        let old = root(&tree, n / 2).unwrap();
        assert_eq!(verify_consistency(n / 2, n, &old, &r, &proof), Ok(()));
    }
    // Proofs compute a node that is not stored from its children, so the checks above
    // hold with nodes missing too. With every leaf zeroed behind the store's back (its
    // trigger dropped first), a root of a multiple of 16 entries comes from stored
    // nodes alone: each is right only if every node handed over was stored.
    drop(store);
    if fx.try_raw("DROP TRIGGER audit_entries_no_update").is_ok() {
        fx.raw("UPDATE audit_entries SET leaf = zeroblob(32)");
    } else {
        fx.raw("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only");
        fx.raw("UPDATE audit_entries SET leaf = decode(repeat('00', 32), 'hex')");
    }
    let mut store = fx.open();
    assert_eq!(
        store.audit_entries(0, 1).unwrap()[0].leaf,
        Hash(Default::default())
    );
    for n in (16..=size).step_by(16) {
        assert_eq!(
            store.audit_root(n).unwrap(),
            root(&tree, n).unwrap(),
            "root of {n}"
        );
    }
}

/// Nodes for entries past the indexed mark (a commit the indexer has not caught up to)
/// or past the end of the log are refused with 0 and change nothing: indexing then
/// reads the entries, and covers them all.
pub fn audit_nodes_handed_over_past_a_gap_change_nothing(fx: &dyn Fixture) {
    let (commits, frontier) = chained(&[20, 40]);
    let mut store = fx.open();
    for (rows, ..) in &commits {
        store
            .commit(&Changes::default(), &append(rows.clone()))
            .unwrap();
    }
    let (_, start, end, nodes) = &commits[1];
    assert_eq!(store.index_audit_nodes(*start, *end, nodes).unwrap(), 0);
    let (_, first_start, _, first_nodes) = &commits[0];
    assert_eq!(
        store
            .index_audit_nodes(*first_start, end + 5, first_nodes)
            .unwrap(),
        0,
        "entries past the end of the log"
    );
    assert_eq!(store.index_audit(1_000).unwrap(), frontier.size());
    // Handed again once indexed: nothing to do.
    assert_eq!(store.index_audit_nodes(*start, *end, nodes).unwrap(), 0);
    assert_eq!(store.audit_root(frontier.size()).unwrap(), frontier.root());
}

pub fn audit_checkpoints_are_kept_in_order(fx: &dyn Fixture) {
    let mut store = fx.open();
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    let checkpoint = |size: u64| StoredCheckpoint {
        size,
        root: Hash::leaf(&size.to_be_bytes()),
        note: format!("ztx.test/audit\n{size}\n...\n"),
        created_ms: 1_000 + size,
    };
    for (start, count) in [(0, 3), (3, 4), (7, 2)] {
        let batch = AuditAppend {
            rows: rows(start, count),
            checkpoint: Some(checkpoint(start + count)),
            ..AuditAppend::default()
        };
        store.commit(&Changes::default(), &batch).unwrap();
    }
    assert_eq!(store.latest_checkpoint().unwrap(), Some(checkpoint(9)));
    assert_eq!(
        store.audit_checkpoints(3, 10).unwrap(),
        vec![checkpoint(7), checkpoint(9)]
    );
    assert_eq!(store.audit_checkpoints(0, 1).unwrap(), vec![checkpoint(3)]);
}

/// A commit's rows go in as multi-row INSERTs of 16, 8, 4, 2 and 1 rows: every count of
/// rows a commit may hold, up to three statements of the largest size, lands whole and
/// in order, and the log has the root of the same leaves hashed in memory.
pub fn audit_commits_of_every_size_land_whole(fx: &dyn Fixture) {
    let mut store = fx.open();
    let mut size = 0;
    for count in 1..=50 {
        store
            .commit(&Changes::default(), &append(rows(size, count)))
            .unwrap();
        size += count;
        assert_eq!(
            store.audit_size().unwrap(),
            size,
            "after a commit of {count}"
        );
    }
    assert_eq!(store.audit_entries(0, 2000).unwrap(), rows(0, size));
    assert_eq!(
        store.audit_root(size).unwrap(),
        root(&memory(size), size).unwrap()
    );
}

/// Entries must continue the log at its end; a commit that breaks that, or fails for
/// any other reason, appends nothing and changes nothing.
pub fn audit_appends_only_at_the_end(fx: &dyn Fixture) {
    let mut store = fx.open();
    store
        .commit(&Changes::default(), &append(rows(0, 3)))
        .unwrap();
    for (start, count) in [(4, 1), (2, 2), (0, 1)] {
        let err = store
            .commit(&Changes::default(), &append(rows(start, count)))
            .unwrap_err();
        assert!(matches!(err, StoreError::AuditGap { .. }), "{err}");
    }
    let mut shuffled = rows(3, 3);
    shuffled.swap(1, 2);
    assert!(matches!(
        store.commit(&Changes::default(), &append(shuffled)),
        Err(StoreError::AuditGap { .. })
    ));
    // A commit whose changes fail takes its entries with it.
    let bad = Changes {
        transfers: vec![
            transfer(70, TransferKind::Single, 1, 1),
            transfer(70, TransferKind::Single, 2, 1),
        ],
        ..Changes::default()
    };
    assert!(matches!(
        store.commit(&bad, &append(rows(3, 2))),
        Err(StoreError::DuplicateTransfer(TransferId(70)))
    ));
    assert_eq!(store.audit_size().unwrap(), 3);
    assert_eq!(store.audit_entries(0, 10).unwrap(), rows(0, 3));
}

/// The tables refuse to change what they hold, even to their owner's plain SQL.
/// A connection remembers where the log ended after its own last commit of entries
/// and checks the next against that, without a query. Entries another connection
/// appended meanwhile are not overwritten nor passed over: the primary key refuses the
/// stale append, and the connection then asks the database again.
pub fn audit_appends_after_another_connection_are_checked(fx: &dyn Fixture) {
    let mut writer = fx.open();
    writer
        .commit(&Changes::default(), &append(rows(0, 3)))
        .unwrap();
    let mut other = fx.open();
    other
        .commit(&Changes::default(), &append(rows(3, 2)))
        .unwrap();
    assert!(
        writer
            .commit(&Changes::default(), &append(rows(3, 1)))
            .is_err(),
        "an index another connection took"
    );
    assert!(matches!(
        writer.commit(&Changes::default(), &append(rows(6, 1))),
        Err(StoreError::AuditGap {
            expected: 5,
            got: 6
        })
    ));
    writer
        .commit(&Changes::default(), &append(rows(5, 1)))
        .unwrap();
    assert_eq!(writer.audit_entries(0, 10).unwrap(), rows(0, 6));
}

pub fn audit_rows_refuse_update_and_delete(fx: &dyn Fixture) {
    let mut store = fx.open();
    let batch = AuditAppend {
        rows: rows(0, 2),
        checkpoint: Some(StoredCheckpoint {
            size: 2,
            root: Hash::empty(),
            note: "n\n2\nx\n".into(),
            created_ms: 1,
        }),
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &batch).unwrap();
    drop(store);
    for sql in [
        "UPDATE audit_entries SET entry = entry WHERE idx = 0",
        "DELETE FROM audit_entries WHERE idx = 1",
        "UPDATE audit_checkpoints SET note = 'forged'",
        "DELETE FROM audit_checkpoints",
    ] {
        let refused = fx.try_raw(sql).unwrap_err();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    let mut store = fx.open();
    assert_eq!(store.audit_entries(0, 10).unwrap(), rows(0, 2));
    assert_eq!(store.latest_checkpoint().unwrap().map(|c| c.size), Some(2));
}
