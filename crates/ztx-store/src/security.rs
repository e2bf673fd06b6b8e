//! What security monitoring keeps: keys frozen by detection, the addresses each key was
//! used from, customers' notifications, their webhooks, and the outbox their senders
//! deliver from. Every
//! change here is a [`SecurityEffect`] carried by the same commit as the audit entry
//! that records it ([`crate::AuditAppend::effects`]): a response is never visible before
//! it is in the log.

use ztx_core::CustomerId;

use crate::error::{Result, StoreError};
use crate::model::{ApiKeyId, StoredEmail, StoredWebhook, WrappedDataKey};
use crate::sql::{self, Conn, Param, RowReader};
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
    /// Registers (replacing any) the customer's webhook, or with `None` removes it; the
    /// messages still waiting for the webhook it replaces are given up either way.
    SetWebhook {
        customer: CustomerId,
        webhook: Option<StoredWebhook>,
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

/// The ways a notification goes out: by e-mail always, by webhook when its customer
/// registered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// Where an outbox message goes, sealed (the sender opens it with
/// `ztx_vault::contact`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The customer's e-mail address.
    Email(StoredEmail),
    /// The customer's webhook (the one registered when the message was made: a change
    /// gives up the messages waiting for the webhook it replaces).
    Webhook(StoredWebhook),
}

/// A message waiting in the outbox for a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: u64,
    pub to: Destination,
    /// Deliveries tried so far, each failed.
    pub attempts: u64,
    pub notification: Notification,
}

impl OutboxMessage {
    pub fn channel(&self) -> Channel {
        match self.to {
            Destination::Email(_) => Channel::Email,
            Destination::Webhook(_) => Channel::Webhook,
        }
    }
}

/// How many deliveries a message gets before it is given up: with
/// [`outbox_retry_after_ms`], they span about 21 hours, so a relay or receiver down for
/// most of a day still gets every message.
pub const OUTBOX_MAX_ATTEMPTS: u64 = 30;
/// The most messages of one customer a look at the outbox returns.
pub const OUTBOX_PER_CUSTOMER: u32 = 4;

/// How long after its `attempts`-th failed delivery a message is tried again: ten
/// seconds, doubling, at most an hour (the tries of [`OUTBOX_MAX_ATTEMPTS`] span
/// 5,110 s for the first ten, then an hour each).
pub fn outbox_retry_after_ms(attempts: u64) -> u64 {
    const FIRST_MS: u64 = 10_000;
    const MOST_MS: u64 = 3_600_000;
    // 10 s doubled nine times is past the hour already: no bits are shifted out below.
    let doublings = attempts.saturating_sub(1).min(20);
    let doublings = u32::try_from(doublings).unwrap_or(20);
    (FIRST_MS << doublings).min(MOST_MS)
}

const FREEZE: &str = "UPDATE api_keys SET frozen_ms = $1 WHERE id = $2 AND frozen_ms IS NULL";
const UNFREEZE: &str = "UPDATE api_keys SET frozen_ms = NULL WHERE id = $1";
const INSERT_NOTIFICATION: &str = "INSERT INTO notifications \
     (id, customer_id, created_ms, finding, message) VALUES ($1, $2, $3, $4, $5)";
const INSERT_EMAIL: &str = "INSERT INTO notification_outbox \
     (id, notification_id, channel, created_ms, attempts) VALUES ($1, $2, 'email', $3, 0)";
/// A webhook message, only if the customer has a webhook.
const INSERT_WEBHOOK: &str = "INSERT INTO notification_outbox \
     (id, notification_id, channel, created_ms, attempts) \
     SELECT $1, $2, 'webhook', $3, 0 WHERE EXISTS \
     (SELECT 1 FROM webhooks WHERE customer_id = $4)";
const SET_WEBHOOK: &str = "INSERT INTO webhooks \
     (customer_id, url_sealed, secret_sealed, kek_version, data_key, created_ms) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (customer_id) DO UPDATE SET \
     url_sealed = excluded.url_sealed, secret_sealed = excluded.secret_sealed, \
     kek_version = excluded.kek_version, data_key = excluded.data_key, \
     created_ms = excluded.created_ms";
const REMOVE_WEBHOOK: &str = "DELETE FROM webhooks WHERE customer_id = $1";
/// A webhook replaced or removed: what waited for it is not sent to another address.
const GIVE_UP_WEBHOOK_MESSAGES: &str = "UPDATE notification_outbox \
     SET given_up_ms = $1, last_error = 'the webhook was replaced or removed' \
     WHERE channel = 'webhook' AND delivered_ms IS NULL AND given_up_ms IS NULL \
     AND notification_id IN (SELECT id FROM notifications WHERE customer_id = $2)";
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
                let outbox = |tx: &mut dyn Conn| {
                    next_id(
                        tx,
                        "SELECT COALESCE(MAX(id), 0) FROM notification_outbox",
                        "notification_outbox",
                    )
                };
                let email = outbox(tx)?;
                tx.exec(
                    INSERT_EMAIL,
                    &[
                        sql::int(email, "outbox id")?,
                        sql::int(id, "notification id")?,
                        sql::int(*at_ms, "created_ms")?,
                    ],
                )?;
                let webhook = outbox(tx)?;
                tx.exec(
                    INSERT_WEBHOOK,
                    &[
                        sql::int(webhook, "outbox id")?,
                        sql::int(id, "notification id")?,
                        sql::int(*at_ms, "created_ms")?,
                        sql::int(customer.0, "customer id")?,
                    ],
                )?;
            }
            SecurityEffect::SetWebhook {
                customer,
                webhook: Some(webhook),
                at_ms,
            } => {
                if webhook.customer != *customer {
                    return Err(StoreError::corrupt(
                        "webhooks",
                        "customer_id",
                        format!(
                            "customer {}'s webhook set for customer {}",
                            webhook.customer.0, customer.0
                        ),
                    ));
                }
                tx.exec(
                    GIVE_UP_WEBHOOK_MESSAGES,
                    &[
                        sql::int(*at_ms, "given_up_ms")?,
                        sql::int(customer.0, "customer id")?,
                    ],
                )?;
                tx.exec(
                    SET_WEBHOOK,
                    &[
                        sql::int(customer.0, "customer id")?,
                        Param::Blob(webhook.url_sealed.clone()),
                        Param::Blob(webhook.secret_sealed.clone()),
                        Param::Int(i64::from(webhook.data_key.kek_version)),
                        Param::Blob(webhook.data_key.wrapped.clone()),
                        sql::int(webhook.created_ms, "created_ms")?,
                    ],
                )?;
            }
            SecurityEffect::SetWebhook {
                customer,
                webhook: None,
                at_ms,
            } => {
                let customer = sql::int(customer.0, "customer id")?;
                tx.exec(REMOVE_WEBHOOK, std::slice::from_ref(&customer))?;
                tx.exec(
                    GIVE_UP_WEBHOOK_MESSAGES,
                    &[sql::int(*at_ms, "given_up_ms")?, customer],
                )?;
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

/// Up to `limit` messages of `channel` due at `now_ms` (neither delivered nor given
/// up, and past their retry time), oldest first, at most [`OUTBOX_PER_CUSTOMER`] of
/// each customer's, each with where it goes.
pub(crate) fn pending_outbox(
    conn: &mut dyn Conn,
    channel: Channel,
    now_ms: u64,
    limit: u32,
) -> Result<Vec<OutboxMessage>> {
    // At most OUTBOX_PER_CUSTOMER of each customer's, oldest first: one customer's
    // backlog cannot fill a look.
    macro_rules! due {
        ($select:literal) => {
            concat!(
                "SELECT * FROM (",
                $select,
                " WHERE o.channel = $1 AND o.delivered_ms IS NULL AND o.given_up_ms IS NULL \
                 AND o.next_ms <= $2) due WHERE nth <= $3 ORDER BY outbox_id LIMIT $4"
            )
        };
    }
    let query = match channel {
        Channel::Email => due!(
            "SELECT o.id AS outbox_id, o.attempts, \
                    c.email_index, c.email_sealed, k.kek_version, k.data_key, \
                    n.id, n.customer_id, n.created_ms, n.finding, n.message, \
                    ROW_NUMBER() OVER (PARTITION BY n.customer_id ORDER BY o.id) AS nth \
             FROM notification_outbox o \
             JOIN notifications n ON n.id = o.notification_id \
             JOIN customers c ON c.id = n.customer_id \
             LEFT JOIN customer_keys k ON k.customer_id = c.id"
        ),
        Channel::Webhook => due!(
            "SELECT o.id AS outbox_id, o.attempts, \
                    w.url_sealed, w.secret_sealed, w.kek_version, w.data_key, \
                    w.created_ms AS webhook_created_ms, \
                    n.id, n.customer_id, n.created_ms, n.finding, n.message, \
                    ROW_NUMBER() OVER (PARTITION BY n.customer_id ORDER BY o.id) AS nth \
             FROM notification_outbox o \
             JOIN notifications n ON n.id = o.notification_id \
             JOIN webhooks w ON w.customer_id = n.customer_id"
        ),
    };
    let rows = conn.query(
        query,
        &[
            sql::text(channel.as_str()),
            sql::int(now_ms, "now_ms")?,
            sql::limit(OUTBOX_PER_CUSTOMER),
            sql::limit(limit),
        ],
    )?;
    rows.into_iter()
        .map(|row| {
            let mut r = RowReader::new("notification_outbox", row);
            let id = r.u64("outbox_id")?;
            let attempts = r.u64("attempts")?;
            let to = match channel {
                Channel::Email => Destination::Email(crate::codec::stored_email(&mut r)?),
                Channel::Webhook => Destination::Webhook(webhook_row(&mut r, None)?),
            };
            let notification = notification(&mut r)?;
            let to = match to {
                Destination::Webhook(mut webhook) => {
                    webhook.customer = notification.customer;
                    Destination::Webhook(webhook)
                }
                email => email,
            };
            Ok(OutboxMessage {
                id,
                to,
                attempts,
                notification,
            })
        })
        .collect()
}

/// A webhook's columns, `created_ms` under its own name or `webhook_created_ms`.
fn webhook_row(r: &mut RowReader, customer: Option<CustomerId>) -> Result<StoredWebhook> {
    let url_sealed = required_blob(r, "url_sealed")?;
    let secret_sealed = required_blob(r, "secret_sealed")?;
    let version = r.u64("kek_version")?;
    let kek_version =
        u32::try_from(version).map_err(|_| r.corrupt_here("kek_version", format!("{version}")))?;
    let wrapped = required_blob(r, "data_key")?;
    let created_ms = match customer {
        Some(_) => r.u64("created_ms")?,
        None => r.u64("webhook_created_ms")?,
    };
    Ok(StoredWebhook {
        customer: customer.unwrap_or(CustomerId(0)),
        url_sealed,
        secret_sealed,
        data_key: WrappedDataKey {
            kek_version,
            wrapped,
        },
        created_ms,
    })
}

fn required_blob(r: &mut RowReader, column: &'static str) -> Result<Vec<u8>> {
    r.opt_blob(column)?
        .ok_or_else(|| r.corrupt_here(column, "unexpected NULL"))
}

/// The customer's webhook, if they registered one.
pub(crate) fn webhook(conn: &mut dyn Conn, customer: CustomerId) -> Result<Option<StoredWebhook>> {
    let rows = conn.query(
        "SELECT url_sealed, secret_sealed, kek_version, data_key, created_ms FROM webhooks \
         WHERE customer_id = $1",
        &[sql::int(customer.0, "customer id")?],
    )?;
    sql::first(rows)
        .map(|row| webhook_row(&mut RowReader::new("webhooks", row), Some(customer)))
        .transpose()
}

/// Records a sender's attempt: delivered, or failed with `error` and tried again after
/// [`outbox_retry_after_ms`] — given up once it had [`OUTBOX_MAX_ATTEMPTS`].
pub(crate) fn outbox_attempt(
    conn: &mut dyn Conn,
    id: u64,
    outcome: std::result::Result<(), &str>,
    now_ms: u64,
) -> Result<()> {
    let outbox = id;
    let id = sql::int(id, "outbox id")?;
    let now = sql::int(now_ms, "now_ms")?;
    let changed = match outcome {
        Ok(()) => conn.exec(
            "UPDATE notification_outbox SET attempts = attempts + 1, delivered_ms = $1, \
             last_error = NULL WHERE id = $2 AND delivered_ms IS NULL AND given_up_ms IS NULL",
            &[now, id],
        )?,
        Err(error) => {
            let rows = conn.query(
                "SELECT attempts FROM notification_outbox \
                 WHERE id = $1 AND delivered_ms IS NULL AND given_up_ms IS NULL",
                std::slice::from_ref(&id),
            )?;
            let Some(row) = sql::first(rows) else {
                return Err(StoreError::UnknownOutboxMessage(outbox));
            };
            let before = RowReader::new("notification_outbox", row).u64("attempts")?;
            let attempts = before.saturating_add(1);
            let next_ms = now_ms.saturating_add(outbox_retry_after_ms(attempts));
            let given_up = if attempts >= OUTBOX_MAX_ATTEMPTS {
                now
            } else {
                Param::NullInt
            };
            // Only if no other sender recorded an attempt meanwhile.
            conn.exec(
                "UPDATE notification_outbox SET attempts = $1, last_error = $2, next_ms = $3, \
                 given_up_ms = $4 WHERE id = $5 AND attempts = $6 AND delivered_ms IS NULL \
                 AND given_up_ms IS NULL",
                &[
                    sql::int(attempts, "attempts")?,
                    sql::text(error),
                    sql::int(next_ms, "next_ms")?,
                    given_up,
                    id,
                    sql::int(before, "attempts")?,
                ],
            )?
        }
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
