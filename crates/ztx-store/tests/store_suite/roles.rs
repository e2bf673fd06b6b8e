//! PostgreSQL only: the exchange's service role may add to and read the audit log, and
//! nothing else of it — a stolen service credential cannot rewrite history, nor drop or
//! disable the triggers that guard it.

use ztx_audit::Hash;
use ztx_core::Changes;
use ztx_store::testing::PgCluster;
use ztx_store::{AuditAppend, AuditRow, StoreError};

/// A fresh database (its owner's URL), and a new role's name and URL.
fn database_and_role() -> Option<(String, String, String)> {
    let cluster = PgCluster::shared().unwrap()?;
    let owner = cluster.fresh_database().unwrap();
    let (role, service) = cluster.new_role(&owner).unwrap();
    Some((owner, role, service))
}

fn raw(url: &str, sql: &str) -> Result<(), String> {
    postgres::Client::connect(url, postgres::NoTls)
        .unwrap()
        .batch_execute(sql)
        .map_err(|e| format!("{e:?}"))
}

fn entries(start: u64, count: u64) -> AuditAppend {
    let rows = (start..start + count)
        .map(|i| {
            let entry = format!("entry {i}").into_bytes();
            AuditRow {
                index: i,
                leaf: Hash::leaf(&entry),
                entry,
            }
        })
        .collect();
    AuditAppend {
        rows,
        ..AuditAppend::default()
    }
}

#[test]
fn a_stolen_service_credential_cannot_rewrite_the_audit_log() {
    let Some((owner, role, service)) = database_and_role() else {
        return;
    };
    ztx_store::grant_service_role(&owner, &role).unwrap();
    // The service runs the exchange: customers, commits, the log, its indexes.
    let mut store = ztx_store::open(&service).unwrap();
    let customer = ztx_store::testing::create_customer(&mut *store, "svc@example.com", 1).unwrap();
    assert!(
        store
            .customer_scope(customer)
            .unwrap()
            .customer()
            .unwrap()
            .is_some()
    );
    store.commit(&Changes::default(), &entries(0, 3)).unwrap();
    store.index_audit(100).unwrap();
    assert_eq!(store.audit_size().unwrap(), 3);
    drop(store);
    for (sql, says) in [
        (
            "UPDATE audit_entries SET entry = entry WHERE idx = 0",
            "permission denied",
        ),
        (
            "DELETE FROM audit_entries WHERE idx = 2",
            "permission denied",
        ),
        ("TRUNCATE audit_entries", "permission denied"),
        ("DELETE FROM audit_checkpoints", "permission denied"),
        (
            "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
            "must be owner",
        ),
        (
            "DROP TRIGGER audit_entries_append_only ON audit_entries",
            "must be owner",
        ),
        ("DROP TABLE audit_entries", "must be owner"),
        (
            "ALTER TABLE audit_entries RENAME TO old_entries",
            "must be owner",
        ),
    ] {
        // Nor can it grant itself what it lacks: PostgreSQL only warns, and grants nothing.
        let _ = raw(
            &service,
            &format!("GRANT UPDATE, DELETE, TRUNCATE ON audit_entries TO PUBLIC, {role}"),
        );
        let refused = raw(&service, sql).expect_err(sql);
        assert!(refused.contains(says), "{sql}: {refused}");
    }
    // What it may do to the exchange's own tables, it still may.
    raw(&service, "UPDATE customers SET created_ms = 2").unwrap();
    let mut store = ztx_store::open(&service).unwrap();
    assert_eq!(store.audit_size().unwrap(), 3);
    // And the owner still meets the triggers.
    let refused = raw(&owner, "DELETE FROM audit_entries").unwrap_err();
    assert!(refused.contains("append-only"), "{refused}");
}

#[test]
fn a_role_that_no_grant_binds_is_refused_as_the_service_role() {
    let Some((owner, role, _)) = database_and_role() else {
        return;
    };
    let refusal = |role: &str| match ztx_store::grant_service_role(&owner, role) {
        Err(StoreError::Role(why)) => why,
        other => panic!("{role}: {other:?}"),
    };
    assert!(refusal("postgres").contains("superuser"));
    raw(&owner, &format!("ALTER ROLE {role} BYPASSRLS")).unwrap();
    assert!(refusal(&role).contains("bypasses row security"));
    // A member of the owner's role may act as the owner.
    raw(&owner, &format!("ALTER ROLE {role} NOBYPASSRLS; CREATE ROLE owner_of_{role}; ALTER TABLE audit_entries OWNER TO owner_of_{role}; GRANT owner_of_{role} TO {role}")).unwrap();
    assert!(refusal(&role).contains("owns the tables"));
    assert!(refusal("nobody_here").contains("does not exist"));
    assert!(refusal("x; DROP TABLE meta").contains("not a role name"));
    assert!(refusal("").contains("not a role name"));
}

#[test]
fn a_service_role_cannot_migrate_and_says_who_can() {
    let Some((owner, role, service)) = database_and_role() else {
        return;
    };
    // A database as an older release left it, the role granted everything on it.
    drop(ztx_store::testing::open_at_version(&owner, 3).unwrap());
    raw(
        &owner,
        &format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
    )
    .unwrap();
    match ztx_store::open(&service) {
        Err(StoreError::Role(why)) => assert!(why.contains("ztx database setup"), "{why}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the service role migrated the schema"),
    }
    // The owner's setup migrates it; then the service opens it.
    ztx_store::grant_service_role(&owner, &role).unwrap();
    assert_eq!(ztx_store::open(&service).unwrap().audit_size().unwrap(), 0);
}

#[test]
fn support_reads_customer_metadata_and_no_secret_nor_trading_data() {
    let Some((owner, role, service)) = database_and_role() else {
        return;
    };
    ztx_store::grant_service_role(&owner, &role).unwrap();
    let cluster = PgCluster::shared().unwrap().unwrap();
    // A second role beside the service's, named after it.
    let support = format!("{role}_support");
    let support_url = service.replace(&format!("{role}@"), &format!("{support}@"));
    cluster
        .execute(&format!("CREATE ROLE {support} LOGIN"))
        .unwrap();
    ztx_store::grant_support_role(&owner, &support).unwrap();
    {
        let mut store = ztx_store::open(&service).unwrap();
        for name in ["a", "b"] {
            let c =
                ztx_store::testing::create_customer(&mut *store, &format!("{name}@example.com"), 1)
                    .unwrap();
            store
                .create_api_key(&ztx_store::NewApiKey {
                    api_key: format!("key-{name}"),
                    customer: c,
                    credential: ztx_store::ApiKeyCredential::Hmac {
                        secret_sealed: vec![7; 40],
                        data_key: Some(ztx_store::WrappedDataKey {
                            kek_version: 1,
                            wrapped: vec![9; 72],
                        }),
                    },
                    permissions: "read".into(),
                    ip_allowlist: String::new(),
                    enabled: true,
                    created_ms: 1,
                })
                .unwrap();
        }
    }
    let mut client = postgres::Client::connect(&support_url, postgres::NoTls).unwrap();
    // Every customer, without setting any scope: support looks customers up.
    let n: i64 = client
        .query_one("SELECT count(*) FROM customers", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let keys: Vec<String> = client
        .query("SELECT api_key FROM api_keys ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["key-a", "key-b"]);
    for sql in [
        "SELECT secret_sealed FROM api_keys",
        "SELECT secret_data_key FROM api_keys",
        "SELECT * FROM api_keys",
        "SELECT id FROM orders",
        "SELECT owner_id FROM accounts",
        "SELECT entry FROM audit_entries",
        "UPDATE customers SET created_ms = 2",
        "INSERT INTO notifications (customer_id, created_ms, finding, message) \
         VALUES (1, 1, 'x', 'y')",
    ] {
        let refused = raw(&support_url, sql).unwrap_err();
        assert!(refused.contains("permission denied"), "{sql}: {refused}");
    }
}

#[test]
fn the_exchange_adds_data_keys_but_cannot_read_change_or_remove_them() {
    let Some((owner, role, service)) = database_and_role() else {
        return;
    };
    ztx_store::grant_service_role(&owner, &role).unwrap();
    let mut store = ztx_store::open(&service).unwrap();
    // Creating a customer stores their wrapped data key: an INSERT it may do.
    let customer = ztx_store::testing::create_customer(&mut *store, "k@example.com", 1).unwrap();
    let record = store
        .customer_scope(customer)
        .unwrap()
        .customer()
        .unwrap()
        .unwrap();
    assert!(record.email_sealed);
    // Reading the key back is what it may not do, through the store or behind it.
    match store.sealed_email(customer) {
        Err(e) => assert!(e.to_string().contains("permission denied"), "{e}"),
        Ok(found) => panic!("the exchange read key material: {found:?}"),
    }
    drop(store);
    for sql in [
        "SELECT data_key FROM customer_keys",
        "UPDATE customer_keys SET kek_version = 9",
        "DELETE FROM customer_keys",
        "TRUNCATE customer_keys",
    ] {
        let refused = raw(&service, sql).unwrap_err();
        assert!(refused.contains("permission denied"), "{sql}: {refused}");
    }
    // The owner (who runs key rotation) reads it.
    let mut owner_store = ztx_store::open(&owner).unwrap();
    assert!(owner_store.sealed_email(customer).unwrap().is_some());
}

#[test]
fn a_role_cannot_be_both_the_service_and_the_support_role() {
    let Some((owner, role, _)) = database_and_role() else {
        return;
    };
    match ztx_store::grant_support_role_beside(&owner, &role, Some(&role)) {
        Err(StoreError::Role(why)) => assert!(why.contains("both"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_former_support_role_made_the_service_role_keeps_no_see_everything_policy() {
    let Some((owner, role, service)) = database_and_role() else {
        return;
    };
    ztx_store::grant_support_role(&owner, &role).unwrap();
    ztx_store::grant_service_role(&owner, &role).unwrap();
    let mut store = ztx_store::open(&service).unwrap();
    let a = ztx_store::testing::create_customer(&mut *store, "a@example.com", 1).unwrap();
    ztx_store::testing::create_customer(&mut *store, "b@example.com", 1).unwrap();
    let mut scope = store.customer_scope(a).unwrap();
    let seen = ztx_store::testing::unfiltered_ids(&mut scope, "SELECT id FROM customers").unwrap();
    assert_eq!(
        seen,
        vec![1],
        "the old support policy still shows every customer"
    );
}
