//! Customers' data keys and sealed contact data: what `ztx vault` reads and re-wraps.
//! The store only moves bytes; sealing and wrapping are `ztx_vault::contact`'s.

use ztx_core::CustomerId;

use crate::error::{Result, StoreError};
use crate::model::{
    ApiKeyId, CustomerKeyRow, KeyRewrap, KeyStatus, SealedEmailRow, SecretReseal, StoredSecret,
    WebhookRewrap,
};
use crate::sql::{self, Backend, Conn, Param, RowReader};

pub(crate) fn insert_key(
    tx: &mut dyn Conn,
    customer: CustomerId,
    kek_version: u32,
    data_key: Vec<u8>,
) -> Result<()> {
    tx.exec(
        "INSERT INTO customer_keys (customer_id, kek_version, data_key) VALUES ($1, $2, $3)",
        &[
            sql::int(customer.0, "customer id")?,
            Param::Int(i64::from(kek_version)),
            Param::Blob(data_key),
        ],
    )?;
    Ok(())
}

/// Where wrapped data keys are kept by customer: each customer's own, and each
/// customer's webhook's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyTable {
    Customers,
    Webhooks,
}

/// Up to `limit` wrapped data keys in `table` of customers after `after`, by customer,
/// of KEK versions other than `except_version`.
pub(crate) fn keys(
    conn: &mut dyn Conn,
    table: KeyTable,
    after: CustomerId,
    except_version: u32,
    limit: u32,
) -> Result<Vec<CustomerKeyRow>> {
    let (name, query) = match table {
        KeyTable::Customers => (
            "customer_keys",
            "SELECT customer_id, kek_version, data_key FROM customer_keys \
             WHERE customer_id > $1 AND kek_version <> $2 ORDER BY customer_id LIMIT $3",
        ),
        KeyTable::Webhooks => (
            "webhooks",
            "SELECT customer_id, kek_version, data_key FROM webhooks \
             WHERE customer_id > $1 AND kek_version <> $2 ORDER BY customer_id LIMIT $3",
        ),
    };
    let rows = conn.query(
        query,
        &[
            sql::int(after.0, "customer id")?,
            Param::Int(i64::from(except_version)),
            sql::limit(limit),
        ],
    )?;
    rows.into_iter()
        .map(|row| key_row(RowReader::new(name, row)))
        .collect()
}

/// Replaces each customer's wrapped key that is still the one under its
/// `from_version` (a concurrent rotation may have moved it on), in one transaction.
/// How many it replaced.
pub(crate) fn rewrap<B: Backend>(db: &mut B, rows: &[KeyRewrap]) -> Result<u64> {
    db.transaction(|tx| {
        let mut changed = 0u64;
        for row in rows {
            changed = changed.saturating_add(tx.exec(
                "UPDATE customer_keys SET kek_version = $1, data_key = $2 \
                 WHERE customer_id = $3 AND kek_version = $4",
                &[
                    Param::Int(i64::from(row.to_version)),
                    Param::Blob(row.data_key.clone()),
                    sql::int(row.customer.0, "customer id")?,
                    Param::Int(i64::from(row.from_version)),
                ],
            )?);
        }
        Ok(changed)
    })
}

fn key_row(mut r: RowReader) -> Result<CustomerKeyRow> {
    let customer = CustomerId(r.u64("customer_id")?);
    let version = r.u64("kek_version")?;
    Ok(CustomerKeyRow {
        customer,
        kek_version: u32::try_from(version)
            .map_err(|_| r.corrupt_here("kek_version", format!("version {version}")))?,
        data_key: r
            .opt_blob("data_key")?
            .ok_or_else(|| r.corrupt_here("data_key", "unexpected NULL"))?,
    })
}

/// Replaces each webhook's wrapped key that is still the one under its `from_version`
/// (a concurrent rotation, or a new registration, may have replaced it), in one
/// transaction. How many it replaced.
pub(crate) fn rewrap_webhooks<B: Backend>(db: &mut B, rows: &[WebhookRewrap]) -> Result<u64> {
    db.transaction(|tx| {
        let mut changed = 0u64;
        for row in rows {
            changed = changed.saturating_add(tx.exec(
                "UPDATE webhooks SET kek_version = $1, data_key = $2 \
                 WHERE customer_id = $3 AND kek_version = $4 AND data_key = $5",
                &[
                    Param::Int(i64::from(row.to_key.kek_version)),
                    Param::Blob(row.to_key.wrapped.clone()),
                    sql::int(row.customer.0, "customer id")?,
                    Param::Int(i64::from(row.from_key.kek_version)),
                    Param::Blob(row.from_key.wrapped.clone()),
                ],
            )?);
        }
        Ok(changed)
    })
}

/// Up to `limit` customers whose address is still in the clear, with it.
pub(crate) fn plain_emails(conn: &mut dyn Conn, limit: u32) -> Result<Vec<(CustomerId, String)>> {
    let rows = conn.query(
        "SELECT id, email_index FROM customers WHERE email_sealed IS NULL ORDER BY id LIMIT $1",
        &[sql::limit(limit)],
    )?;
    rows.into_iter()
        .map(|row| {
            let mut r = RowReader::new("customers", row);
            Ok((CustomerId(r.u64("id")?), r.text("email_index")?))
        })
        .collect()
}

/// Seals an address written in the clear: its blind index replaces it, the sealed
/// value and the new data key are stored, in one transaction. Whether it was still
/// in the clear.
pub(crate) fn seal_plain_email<B: Backend>(
    db: &mut B,
    customer: CustomerId,
    email_index: &str,
    sealed: &SealedEmailRow,
) -> Result<bool> {
    db.transaction(|tx| {
        let changed = tx.exec(
            "UPDATE customers SET email_index = $1, email_sealed = $2 \
             WHERE id = $3 AND email_sealed IS NULL",
            &[
                sql::text(email_index),
                Param::Blob(sealed.sealed.clone()),
                sql::int(customer.0, "customer id")?,
            ],
        )?;
        if changed == 1 {
            insert_key(tx, customer, sealed.kek_version, sealed.data_key.clone())?;
        }
        Ok(changed == 1)
    })
}

pub(crate) fn status(conn: &mut dyn Conn) -> Result<KeyStatus> {
    let mut status = KeyStatus::default();
    for row in conn.query(
        "SELECT kek_version, COUNT(*) FROM customer_keys GROUP BY kek_version ORDER BY 1",
        &[],
    )? {
        let mut r = RowReader::new("customer_keys", row);
        let version = r.u64("kek_version")?;
        let version = u32::try_from(version).map_err(|_| {
            StoreError::corrupt("customer_keys", "kek_version", version.to_string())
        })?;
        status.data_keys.push((version, r.u64("count")?));
    }
    let row = sql::first(conn.query(
        "SELECT COUNT(*) FROM customers WHERE email_sealed IS NULL",
        &[],
    )?)
    .ok_or_else(|| StoreError::corrupt("customers", "count", "COUNT returned no row"))?;
    status.plain_emails = RowReader::new("customers", row).u64("count")?;
    for row in conn.query(
        "SELECT kek_version, COUNT(*) FROM webhooks GROUP BY kek_version ORDER BY 1",
        &[],
    )? {
        let mut r = RowReader::new("webhooks", row);
        let version = r.u64("kek_version")?;
        let version = u32::try_from(version)
            .map_err(|_| StoreError::corrupt("webhooks", "kek_version", version.to_string()))?;
        status.webhook_keys.push((version, r.u64("count")?));
    }
    for row in conn.query(
        "SELECT secret_kek_version, COUNT(*) FROM api_keys WHERE kind = 'hmac' \
         GROUP BY secret_kek_version ORDER BY 1",
        &[],
    )? {
        let mut r = RowReader::new("api_keys", row);
        let version = r.opt_u64("secret_kek_version")?;
        let count = r.u64("count")?;
        match version {
            None => status.master_sealed_secrets = count,
            Some(version) => {
                let version = u32::try_from(version).map_err(|_| {
                    StoreError::corrupt("api_keys", "secret_kek_version", version.to_string())
                })?;
                status.secret_keys.push((version, count));
            }
        }
    }
    Ok(status)
}

/// Up to `limit` HMAC keys after `after`, by id, whose secret is sealed under the master
/// key or whose data key is wrapped by a version other than `except_version`.
pub(crate) fn secrets(
    conn: &mut dyn Conn,
    after: ApiKeyId,
    except_version: u32,
    limit: u32,
) -> Result<Vec<StoredSecret>> {
    let rows = conn.query(
        "SELECT id, api_key, secret_sealed, secret_kek_version, secret_data_key FROM api_keys \
         WHERE kind = 'hmac' AND id > $1 \
         AND (secret_kek_version IS NULL OR secret_kek_version <> $2) ORDER BY id LIMIT $3",
        &[
            sql::int(after.0, "api key id")?,
            Param::Int(i64::from(except_version)),
            sql::limit(limit),
        ],
    )?;
    rows.into_iter()
        .map(|row| {
            let mut r = RowReader::new("api_keys", row);
            let id = ApiKeyId(r.u64("id")?);
            let api_key = r.text("api_key")?;
            let secret_sealed = r
                .opt_blob("secret_sealed")?
                .ok_or_else(|| r.corrupt_here("secret_sealed", "an HMAC key without it"))?;
            let data_key = crate::codec::secret_data_key(&mut r)?;
            Ok(StoredSecret {
                id,
                api_key,
                secret_sealed,
                data_key,
            })
        })
        .collect()
}

/// Replaces each key's sealed secret and wrapped data key that are still those of
/// `from_version` (a concurrent rotation may have moved them on), in one transaction.
/// How many it replaced.
pub(crate) fn reseal_secrets<B: Backend>(db: &mut B, rows: &[SecretReseal]) -> Result<u64> {
    db.transaction(|tx| {
        let mut changed = 0u64;
        for row in rows {
            let mut params = vec![
                Param::Blob(row.secret_sealed.clone()),
                Param::Int(i64::from(row.data_key.kek_version)),
                Param::Blob(row.data_key.wrapped.clone()),
                sql::int(row.id.0, "api key id")?,
            ];
            let statement = match row.from_version {
                None => {
                    "UPDATE api_keys SET secret_sealed = $1, secret_kek_version = $2, \
                     secret_data_key = $3 WHERE id = $4 AND secret_kek_version IS NULL"
                }
                Some(from) => {
                    params.push(Param::Int(i64::from(from)));
                    "UPDATE api_keys SET secret_sealed = $1, secret_kek_version = $2, \
                     secret_data_key = $3 WHERE id = $4 AND secret_kek_version = $5"
                }
            };
            changed = changed.saturating_add(tx.exec(statement, &params)?);
        }
        Ok(changed)
    })
}
