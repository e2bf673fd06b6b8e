//! Security monitoring's state: responses committed with the audit entries that record
//! them, notifications and their outbox, the addresses keys were used from.

use ztx_audit::Hash;
use ztx_core::{Changes, CustomerId};
use ztx_store::Channel::{Email, Webhook};
use ztx_store::{
    ApiKeyCredential, AuditAppend, AuditRow, Destination, NewApiKey, SecurityEffect, Store,
    StoredWebhook, WebhookRewrap, WrappedDataKey,
};

use crate::common::*;

fn key(store: &mut Box<dyn Store>, customer: CustomerId, name: &str) -> ztx_store::ApiKeyId {
    store
        .create_api_key(&NewApiKey {
            api_key: name.into(),
            customer,
            credential: ApiKeyCredential::Ed25519 {
                public_key: [1; 32],
            },
            permissions: "read".into(),
            ip_allowlist: String::new(),
            enabled: true,
            created_ms: 1,
        })
        .unwrap()
}

fn entry(index: u64) -> AuditRow {
    let bytes = format!("response {index}").into_bytes();
    AuditRow {
        index,
        leaf: Hash::leaf(&bytes),
        entry: bytes,
    }
}

pub fn security_effects_commit_with_their_entries(fx: &dyn Fixture) {
    let mut store = fx.open();
    let alice = ztx_store::testing::create_customer(&mut *store, "alice@example.com", 1).unwrap();
    let bob = ztx_store::testing::create_customer(&mut *store, "bob@example.com", 1).unwrap();
    let a = key(&mut store, alice, "keyA");
    assert_eq!(
        store.api_key_by_key("keyA").unwrap().unwrap().frozen_ms,
        None
    );
    let notify = |customer, finding: &str| SecurityEffect::Notify {
        customer,
        finding: finding.into(),
        message: format!("about {finding}"),
        at_ms: 50,
    };
    let batch = AuditAppend {
        rows: vec![entry(0), entry(1)],
        effects: vec![
            SecurityEffect::FreezeKey { key: a, at_ms: 40 },
            notify(alice, "f-1"),
            notify(bob, "f-1"),
            notify(alice, "f-2"),
            SecurityEffect::RememberAddress {
                key: a,
                ip: "192.0.2.1".into(),
                at_ms: 3,
            },
            SecurityEffect::RememberAddress {
                key: a,
                ip: "192.0.2.1".into(),
                at_ms: 9,
            },
            SecurityEffect::RememberAddress {
                key: a,
                ip: "2001:db8::1".into(),
                at_ms: 9,
            },
        ],
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &batch).unwrap();
    assert_eq!(store.audit_size().unwrap(), 2);
    assert_eq!(
        store.api_key_by_key("keyA").unwrap().unwrap().frozen_ms,
        Some(40)
    );

    // A customer sees their own notifications, newest first, and pages back by id.
    let mine = store
        .customer_scope(alice)
        .unwrap()
        .notifications(None, 10)
        .unwrap();
    assert_eq!(
        mine.iter().map(|n| n.finding.as_str()).collect::<Vec<_>>(),
        ["f-2", "f-1"]
    );
    assert!(
        mine.iter()
            .all(|n| n.customer == alice && n.created_ms == 50)
    );
    let older = store
        .customer_scope(alice)
        .unwrap()
        .notifications(Some(mine[0].id), 10)
        .unwrap();
    assert_eq!(older, mine[1..].to_vec());
    assert_eq!(
        store
            .customer_scope(bob)
            .unwrap()
            .notifications(None, 10)
            .unwrap()
            .len(),
        1
    );

    // Each waits in the outbox, addressed, until a sender delivers it.
    let pending = store.pending_outbox(Email, 60, 10).unwrap();
    assert_eq!(pending.len(), 3);
    let sealed = |c| {
        Destination::Email(ztx_store::StoredEmail::Sealed(
            ztx_store::testing::stand_in_sealed(c),
        ))
    };
    assert_eq!(pending[0].to, sealed(alice));
    assert_eq!(pending[1].to, sealed(bob));
    assert_eq!(pending[0].notification.message, "about f-1");
    // Nobody registered a webhook: e-mail only.
    assert!(store.pending_outbox(Webhook, 60, 10).unwrap().is_empty());
    store
        .outbox_attempt(pending[0].id, Err("mail server down"), 60)
        .unwrap();
    let retry_at = 60 + ztx_store::outbox_retry_after_ms(1);
    let again = store.pending_outbox(Email, retry_at - 1, 10).unwrap();
    assert_eq!(again.len(), 2, "a failure waits for its retry time");
    let again = store.pending_outbox(Email, retry_at, 10).unwrap();
    assert_eq!(
        (again.len(), again[0].attempts),
        (3, 1),
        "then it is pending again"
    );
    store
        .outbox_attempt(pending[0].id, Ok(()), retry_at)
        .unwrap();
    assert_eq!(store.pending_outbox(Email, retry_at, 10).unwrap().len(), 2);
    assert!(matches!(
        store.outbox_attempt(pending[0].id, Ok(()), retry_at + 1),
        Err(ztx_store::StoreError::UnknownOutboxMessage(_))
    ));
    // A message that keeps failing is given up after the last try.
    let failing = pending[1].id;
    let mut now = retry_at;
    for attempt in 1..=ztx_store::OUTBOX_MAX_ATTEMPTS {
        assert!(
            store
                .pending_outbox(Email, now, 10)
                .unwrap()
                .iter()
                .any(|m| m.id == failing && m.attempts == attempt - 1),
            "attempt {attempt}"
        );
        store.outbox_attempt(failing, Err("refused"), now).unwrap();
        now += ztx_store::outbox_retry_after_ms(attempt);
    }
    assert!(
        store
            .pending_outbox(Email, u64::MAX >> 2, 10)
            .unwrap()
            .iter()
            .all(|m| m.id != failing)
    );
    assert!(matches!(
        store.outbox_attempt(failing, Err("again"), now),
        Err(ztx_store::StoreError::UnknownOutboxMessage(_))
    ));

    let addresses = store.key_addresses().unwrap();
    assert_eq!(
        addresses,
        vec![(a, "192.0.2.1".to_owned()), (a, "2001:db8::1".to_owned())]
    );

    // Freezing twice keeps the first time; the customer's unfreeze lifts it.
    let refreeze = AuditAppend {
        rows: vec![entry(2)],
        effects: vec![SecurityEffect::FreezeKey { key: a, at_ms: 99 }],
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &refreeze).unwrap();
    assert_eq!(
        store.api_key_by_key("keyA").unwrap().unwrap().frozen_ms,
        Some(40)
    );
    let lift = AuditAppend {
        rows: vec![entry(3)],
        effects: vec![SecurityEffect::UnfreezeKey { key: a }],
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &lift).unwrap();
    assert_eq!(
        store.api_key_by_key("keyA").unwrap().unwrap().frozen_ms,
        None
    );
}

/// A ban is stored with its entry, so that the next start enforces it; a shorter ban
/// of the same address does not cut a longer one, and a ban that ran out is not loaded.
pub fn bans_outlive_a_restart(fx: &dyn Fixture) {
    let mut store = fx.open();
    let ban = |ip: &str, until_ms, at_ms| SecurityEffect::BanIp {
        ip: ip.into(),
        until_ms,
        at_ms,
    };
    let first = AuditAppend {
        rows: vec![entry(0)],
        effects: vec![ban("192.0.2.7", 5_000, 100), ban("2001:db8::9", 900, 100)],
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &first).unwrap();
    let shorter = AuditAppend {
        rows: vec![entry(1)],
        effects: vec![ban("192.0.2.7", 2_000, 200)],
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &shorter).unwrap();
    drop(store);
    let mut store = fx.open();
    assert_eq!(
        store.ip_bans(500).unwrap(),
        vec![
            ("192.0.2.7".to_owned(), 5_000),
            ("2001:db8::9".to_owned(), 900)
        ]
    );
    assert_eq!(
        store.ip_bans(1_000).unwrap(),
        vec![("192.0.2.7".to_owned(), 5_000)]
    );
    // Without its entry, no ban.
    let broken = AuditAppend {
        rows: vec![entry(7)],
        effects: vec![ban("198.51.100.1", 9_000, 1_000)],
        ..AuditAppend::default()
    };
    assert!(store.commit(&Changes::default(), &broken).is_err());
    assert_eq!(store.ip_bans(1_000).unwrap().len(), 1);
    // A later ban drops those that ran out: the table holds the running ones.
    let later = AuditAppend {
        rows: vec![entry(2)],
        effects: vec![ban("198.51.100.2", 9_000, 1_000)],
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &later).unwrap();
    assert_eq!(
        store.ip_bans(0).unwrap(),
        vec![
            ("192.0.2.7".to_owned(), 5_000),
            ("198.51.100.2".to_owned(), 9_000)
        ]
    );
}

/// A response whose entry cannot be appended (here: a gap in the log) is not carried
/// out either: the two are one commit.
pub fn a_response_is_not_applied_without_its_entry(fx: &dyn Fixture) {
    let mut store = fx.open();
    let alice = ztx_store::testing::create_customer(&mut *store, "alice@example.com", 1).unwrap();
    let a = key(&mut store, alice, "keyA");
    let broken = AuditAppend {
        rows: vec![entry(5)],
        effects: vec![
            SecurityEffect::FreezeKey { key: a, at_ms: 40 },
            SecurityEffect::Notify {
                customer: alice,
                finding: "f".into(),
                message: "m".into(),
                at_ms: 1,
            },
        ],
        ..AuditAppend::default()
    };
    assert!(store.commit(&Changes::default(), &broken).is_err());
    assert_eq!(
        store.api_key_by_key("keyA").unwrap().unwrap().frozen_ms,
        None
    );
    assert!(
        store
            .customer_scope(alice)
            .unwrap()
            .notifications(None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(store.pending_outbox(Email, 100, 10).unwrap().is_empty());
}

fn webhook(customer: CustomerId, tag: u8, version: u32) -> StoredWebhook {
    StoredWebhook {
        customer,
        url_sealed: vec![tag; 40],
        secret_sealed: vec![tag ^ 0xff; 48],
        data_key: WrappedDataKey {
            kek_version: version,
            wrapped: vec![tag; 60],
        },
        created_ms: u64::from(tag),
    }
}

fn commit_effects(store: &mut Box<dyn Store>, effects: Vec<SecurityEffect>) {
    let index = store.audit_size().unwrap();
    let batch = AuditAppend {
        rows: vec![entry(index)],
        effects,
        ..AuditAppend::default()
    };
    store.commit(&Changes::default(), &batch).unwrap();
}

pub fn a_webhook_gets_its_customers_notifications_until_removed(fx: &dyn Fixture) {
    let mut store = fx.open();
    let alice = ztx_store::testing::create_customer(&mut *store, "alice@example.com", 1).unwrap();
    let bob = ztx_store::testing::create_customer(&mut *store, "bob@example.com", 1).unwrap();
    let notify = |customer, finding: &str| SecurityEffect::Notify {
        customer,
        finding: finding.into(),
        message: format!("about {finding}"),
        at_ms: 50,
    };
    commit_effects(
        &mut store,
        vec![SecurityEffect::SetWebhook {
            customer: alice,
            webhook: Some(webhook(alice, 1, 1)),
            at_ms: 10,
        }],
    );
    assert_eq!(
        store.customer_scope(alice).unwrap().webhook().unwrap(),
        Some(webhook(alice, 1, 1))
    );
    assert_eq!(store.customer_scope(bob).unwrap().webhook().unwrap(), None);
    commit_effects(&mut store, vec![notify(alice, "f-1"), notify(bob, "f-2")]);
    // Alice's notification goes by e-mail and to her webhook; Bob's by e-mail only.
    let hooks = store.pending_outbox(Webhook, 50, 10).unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].to, Destination::Webhook(webhook(alice, 1, 1)));
    assert_eq!(hooks[0].channel(), Webhook);
    assert_eq!(hooks[0].notification.finding, "f-1");
    assert_eq!(store.pending_outbox(Email, 50, 10).unwrap().len(), 2);

    // Replaced: what waited for the old webhook is given up, not sent to the new one
    // (a key that can change the webhook cannot collect what was meant for the last).
    commit_effects(
        &mut store,
        vec![SecurityEffect::SetWebhook {
            customer: alice,
            webhook: Some(webhook(alice, 2, 1)),
            at_ms: 60,
        }],
    );
    assert!(store.pending_outbox(Webhook, 60, 10).unwrap().is_empty());
    commit_effects(&mut store, vec![notify(alice, "f-1b")]);
    let hooks = store.pending_outbox(Webhook, 60, 10).unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].to, Destination::Webhook(webhook(alice, 2, 1)));
    assert_eq!(hooks[0].notification.finding, "f-1b");
    // A failure recorded after the message was given up does not bring it back.
    let given_up = hooks[0].id;
    commit_effects(
        &mut store,
        vec![SecurityEffect::SetWebhook {
            customer: alice,
            webhook: Some(webhook(alice, 2, 1)),
            at_ms: 61,
        }],
    );
    assert!(matches!(
        store.outbox_attempt(given_up, Err("timed out"), 62),
        Err(ztx_store::StoreError::UnknownOutboxMessage(_))
    ));
    assert!(
        store
            .pending_outbox(Webhook, 1 << 62, 10)
            .unwrap()
            .is_empty()
    );

    // The rotation's view: the key, its re-wrapping (only over the key it read), the
    // status by version.
    let keys = store.webhook_keys(CustomerId(0), 2, 10).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].customer, keys[0].kek_version), (alice, 1));
    assert_eq!(store.key_status().unwrap().webhook_keys, vec![(1, 1)]);
    let stale = WebhookRewrap {
        customer: alice,
        from_key: webhook(alice, 1, 1).data_key,
        to_key: webhook(alice, 9, 2).data_key,
    };
    assert_eq!(
        store.rewrap_webhook_keys(&[stale]).unwrap(),
        0,
        "a key replaced since it was read is not overwritten"
    );
    let current = WebhookRewrap {
        customer: alice,
        from_key: webhook(alice, 2, 1).data_key,
        to_key: webhook(alice, 9, 2).data_key,
    };
    assert_eq!(store.rewrap_webhook_keys(&[current]).unwrap(), 1);
    assert!(store.webhook_keys(CustomerId(0), 2, 10).unwrap().is_empty());
    assert_eq!(store.key_status().unwrap().webhook_keys, vec![(2, 1)]);
    let stored = store
        .customer_scope(alice)
        .unwrap()
        .webhook()
        .unwrap()
        .unwrap();
    assert_eq!(stored.data_key, webhook(alice, 9, 2).data_key);
    assert_eq!(stored.url_sealed, webhook(alice, 2, 1).url_sealed);

    // Removed: the message waiting for it is given up, later ones go by e-mail only.
    commit_effects(&mut store, vec![notify(alice, "f-2b")]);
    assert_eq!(store.pending_outbox(Webhook, 70, 10).unwrap().len(), 1);
    commit_effects(
        &mut store,
        vec![SecurityEffect::SetWebhook {
            customer: alice,
            webhook: None,
            at_ms: 70,
        }],
    );
    assert_eq!(
        store.customer_scope(alice).unwrap().webhook().unwrap(),
        None
    );
    assert!(store.pending_outbox(Webhook, 70, 10).unwrap().is_empty());
    commit_effects(&mut store, vec![notify(alice, "f-3")]);
    assert!(store.pending_outbox(Webhook, 80, 10).unwrap().is_empty());
    commit_effects(
        &mut store,
        vec![SecurityEffect::SetWebhook {
            customer: alice,
            webhook: Some(webhook(alice, 3, 2)),
            at_ms: 90,
        }],
    );
    assert!(
        store.pending_outbox(Webhook, 90, 10).unwrap().is_empty(),
        "a message given up stays given up"
    );

    // A webhook set for another customer than the effect's is refused, and nothing of
    // its commit is kept.
    let size = store.audit_size().unwrap();
    let crossed = AuditAppend {
        rows: vec![entry(size)],
        effects: vec![SecurityEffect::SetWebhook {
            customer: bob,
            webhook: Some(webhook(alice, 4, 2)),
            at_ms: 100,
        }],
        ..AuditAppend::default()
    };
    assert!(store.commit(&Changes::default(), &crossed).is_err());
    assert_eq!(store.audit_size().unwrap(), size);
    assert_eq!(store.customer_scope(bob).unwrap().webhook().unwrap(), None);
}

pub fn a_look_at_the_outbox_takes_a_few_of_each_customers(fx: &dyn Fixture) {
    let mut store = fx.open();
    let alice = ztx_store::testing::create_customer(&mut *store, "alice@example.com", 1).unwrap();
    let bob = ztx_store::testing::create_customer(&mut *store, "bob@example.com", 1).unwrap();
    let notify = |customer, n: u32| SecurityEffect::Notify {
        customer,
        finding: format!("f-{n}"),
        message: "about you".into(),
        at_ms: 5,
    };
    // Alice's backlog first, then one of Bob's.
    let mut effects: Vec<SecurityEffect> = (0..10).map(|n| notify(alice, n)).collect();
    effects.push(notify(bob, 10));
    commit_effects(&mut store, effects);
    let due = store.pending_outbox(Email, 5, 100).unwrap();
    let of = |c| due.iter().filter(|m| m.notification.customer == c).count();
    let per = usize::try_from(ztx_store::OUTBOX_PER_CUSTOMER).unwrap();
    assert_eq!(
        (of(alice), of(bob)),
        (per, 1),
        "Bob's is not stuck behind hers"
    );
    // Her oldest, in order.
    let hers: Vec<&str> = due
        .iter()
        .filter(|m| m.notification.customer == alice)
        .map(|m| m.notification.finding.as_str())
        .collect();
    assert_eq!(hers, ["f-0", "f-1", "f-2", "f-3"]);
    // The limit still holds over all customers.
    assert_eq!(store.pending_outbox(Email, 5, 2).unwrap().len(), 2);
    // Once hers are delivered, the next of hers come up.
    for m in due.iter().filter(|m| m.notification.customer == alice) {
        store.outbox_attempt(m.id, Ok(()), 6).unwrap();
    }
    let next = store.pending_outbox(Email, 6, 100).unwrap();
    assert_eq!(next[0].notification.finding, "f-4");
}
