//! What security monitoring keeps: keys frozen by detection, the addresses each key was
//! used from, customers' notifications and the outbox their senders deliver from. Every
//! change here is a [`SecurityEffect`] carried by the same commit as the audit entry
//! that records it ([`crate::AuditAppend::effects`]): a response is never visible before
//! it is in the log.

use ztx_core::CustomerId;

use crate::error::{Result, StoreError};
use crate::model::ApiKeyId;
use crate::sql::{self, Conn, Row, RowReader};
use crate::write::next_id;

/// A change to security state, committed with the entry that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityEffect {
    /// Refuse the key until its customer re-enables it.
    FreezeKey {
        key: ApiKeyId,
        at_ms: u64,
    },
    UnfreezeKey {
        key: ApiKeyId,
    },
    /// A notification for the customer, and one outbox message per channel.
    Notify {
        customer: CustomerId,
        finding: String,
        message: String,
        at_ms: u64,
    },
    /// The key was used from `ip` (first seen at `at_ms`).
    RememberAddress {
        key: ApiKeyId,
        ip: String,
        at_ms: u64,
    },
    /// Refuse `ip` until `until_ms` (a longer ban already running is kept); bans that
    /// ran out by `at_ms` are dropped on the way, so the table holds the running ones.
    BanIp {
        ip: String,
        until_ms: u64,
        at_ms: u64,
    },
}

/// A notification, as its customer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: u64,
    pub customer: CustomerId,
    pub created_ms: u64,
    /// The detection it comes from (its `finding_info.uid` in the OCSF events).
    pub finding: String,
    pub message: String,
}

/// A message waiting in the outbox for a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: u64,
    pub channel: String,
    /// Where to send it: the customer's e-mail address, sealed (the sender opens it
    /// with `ztx_vault::contact`).
    pub email: crate::StoredEmail,
    pub attempts: u64,
    pub notification: Notification,
}

/// The channels every notification goes out on. Webhooks join when customers can
/// register one.
pub const CHANNELS: &[&str] = &["email"];

const FREEZE: &str = "UPDATE api_keys SET frozen_ms = $1 WHERE id = $2 AND frozen_ms IS NULL";
const UNFREEZE: &str = "UPDATE api_keys SET frozen_ms = NULL WHERE id = $1";
const INSERT_NOTIFICATION: &str = "INSERT INTO notifications \
     (id, customer_id, created_ms, finding, message) VALUES ($1, $2, $3, $4, $5)";
const INSERT_OUTBOX: &str = "INSERT INTO notification_outbox \
     (id, notification_id, channel, created_ms, attempts) VALUES ($1, $2, $3, $4, 0)";
const PRUNE_BANS: &str = "DELETE FROM ip_bans WHERE until_ms <= $1";
const BAN: &str = "INSERT INTO ip_bans (ip, until_ms) VALUES ($1, $2) \
     ON CONFLICT (ip) DO UPDATE SET until_ms = excluded.until_ms \
     WHERE ip_bans.until_ms < excluded.until_ms";
const REMEMBER: &str = "INSERT INTO key_addresses (api_key_id, ip, first_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (api_key_id, ip) DO NOTHING";

/// Inside the commit's transaction.
pub(crate) fn apply(tx: &mut dyn Conn, effects: &[SecurityEffect]) -> Result<()> {
    for effect in effects {
        match effect {
            SecurityEffect::FreezeKey { key, at_ms } => {
                tx.exec(
                    FREEZE,
                    &[
                        sql::int(*at_ms, "frozen_ms")?,
                        sql::int(key.0, "api key id")?,
                    ],
                )?;
            }
            SecurityEffect::UnfreezeKey { key } => {
                tx.exec(UNFREEZE, &[sql::int(key.0, "api key id")?])?;
            }
            SecurityEffect::Notify {
                customer,
                finding,
                message,
                at_ms,
            } => {
                let id = next_id(
                    tx,
                    "SELECT COALESCE(MAX(id), 0) FROM notifications",
                    "notifications",
                )?;
                tx.exec(
                    INSERT_NOTIFICATION,
                    &[
                        sql::int(id, "notification id")?,
                        sql::int(customer.0, "customer id")?,
                        sql::int(*at_ms, "created_ms")?,
                        sql::text(finding),
                        sql::text(message),
                    ],
                )?;
                for channel in CHANNELS {
                    let outbox = next_id(
                        tx,
                        "SELECT COALESCE(MAX(id), 0) FROM notification_outbox",
                        "notification_outbox",
                    )?;
                    tx.exec(
                        INSERT_OUTBOX,
                        &[
                            sql::int(outbox, "outbox id")?,
                            sql::int(id, "notification id")?,
                            sql::text(channel),
                            sql::int(*at_ms, "created_ms")?,
                        ],
                    )?;
                }
            }
            SecurityEffect::RememberAddress { key, ip, at_ms } => {
                tx.exec(
                    REMEMBER,
                    &[
                        sql::int(key.0, "api key id")?,
                        sql::text(ip),
                        sql::int(*at_ms, "first_ms")?,
                    ],
                )?;
            }
            SecurityEffect::BanIp {
                ip,
                until_ms,
                at_ms,
            } => {
                tx.exec(PRUNE_BANS, &[sql::int(*at_ms, "at_ms")?])?;
                tx.exec(BAN, &[sql::text(ip), sql::int(*until_ms, "until_ms")?])?;
            }
        }
    }
    Ok(())
}

fn notification(r: &mut RowReader) -> Result<Notification> {
    Ok(Notification {
        id: r.u64("id")?,
        customer: CustomerId(r.u64("customer_id")?),
        created_ms: r.u64("created_ms")?,
        finding: r.text("finding")?,
        message: r.text("message")?,
    })
}

/// A customer's notifications, newest first, older than `before_id` if given.
pub(crate) fn notifications(
    conn: &mut dyn Conn,
    customer: CustomerId,
    before_id: Option<u64>,
    limit: u32,
) -> Result<Vec<Notification>> {
    let rows = conn.query(
        "SELECT id, customer_id, created_ms, finding, message FROM notifications \
         WHERE customer_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        &[
            sql::int(customer.0, "customer id")?,
            sql::int(
                before_id
                    .unwrap_or(i64::MAX.unsigned_abs())
                    .min(i64::MAX.unsigned_abs()),
                "before id",
            )?,
            sql::limit(limit),
        ],
    )?;
    rows.into_iter()
        .map(|row| notification(&mut RowReader::new("notifications", row)))
        .collect()
}

/// Outbox messages not yet delivered, oldest first.
pub(crate) fn pending_outbox(conn: &mut dyn Conn, limit: u32) -> Result<Vec<OutboxMessage>> {
    let rows = conn.query(
        "SELECT o.id AS outbox_id, o.channel, o.attempts, \
                c.email_index, c.email_sealed, k.kek_version, k.data_key, \
                n.id, n.customer_id, n.created_ms, n.finding, n.message \
         FROM notification_outbox o \
         JOIN notifications n ON n.id = o.notification_id \
         JOIN customers c ON c.id = n.customer_id \
         LEFT JOIN customer_keys k ON k.customer_id = c.id \
         WHERE o.delivered_ms IS NULL ORDER BY o.id LIMIT $1",
        &[sql::limit(limit)],
    )?;
    rows.into_iter().map(outbox_message).collect()
}

fn outbox_message(row: Row) -> Result<OutboxMessage> {
    let mut r = RowReader::new("notification_outbox", row);
    Ok(OutboxMessage {
        id: r.u64("outbox_id")?,
        channel: r.text("channel")?,
        attempts: r.u64("attempts")?,
        email: crate::codec::stored_email(&mut r)?,
        notification: notification(&mut r)?,
    })
}

/// Records a sender's attempt: delivered, or failed with `error` (tried again later).
pub(crate) fn outbox_attempt(
    conn: &mut dyn Conn,
    id: u64,
    outcome: std::result::Result<(), &str>,
    now_ms: u64,
) -> Result<()> {
    let outbox = id;
    let id = sql::int(id, "outbox id")?;
    let changed = match outcome {
        Ok(()) => conn.exec(
            "UPDATE notification_outbox SET attempts = attempts + 1, delivered_ms = $1, \
             last_error = NULL WHERE id = $2 AND delivered_ms IS NULL",
            &[sql::int(now_ms, "delivered_ms")?, id],
        )?,
        Err(error) => conn.exec(
            "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $1 \
             WHERE id = $2 AND delivered_ms IS NULL",
            &[sql::text(error), id],
        )?,
    };
    if changed == 0 {
        return Err(StoreError::UnknownOutboxMessage(outbox));
    }
    Ok(())
}

/// The bans still running at `now_ms`, for the server to enforce as it starts.
pub(crate) fn ip_bans(conn: &mut dyn Conn, now_ms: u64) -> Result<Vec<(String, u64)>> {
    let rows = conn.query(
        "SELECT ip, until_ms FROM ip_bans WHERE until_ms > $1 ORDER BY ip",
        &[sql::int(now_ms, "now_ms")?],
    )?;
    rows.into_iter()
        .map(|row| {
            let mut r = RowReader::new("ip_bans", row);
            Ok((r.text("ip")?, r.u64("until_ms")?))
        })
        .collect()
}

/// Every address every key was used from, for the detector to start with.
pub(crate) fn key_addresses(conn: &mut dyn Conn) -> Result<Vec<(ApiKeyId, String)>> {
    let rows = conn.query(
        "SELECT api_key_id, ip FROM key_addresses ORDER BY api_key_id, ip",
        &[],
    )?;
    rows.into_iter()
        .map(|row| {
            let mut r = RowReader::new("key_addresses", row);
            Ok((ApiKeyId(r.u64("api_key_id")?), r.text("ip")?))
        })
        .collect()
}
