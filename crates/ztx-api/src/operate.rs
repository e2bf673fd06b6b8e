//! Operator commands: creating a customer, creating an API key and, in development mode,
//! crediting test funds from the faucet. The admin API serves them to `ztx admin` while
//! the server runs; with no server running, `ztx admin` runs them itself beside an
//! engine of its own. In
//! both cases the command is an audit entry, durable before its effect is made: an
//! operator cannot add an account or a key the log does not show. When the effect then
//! fails (the address was taken meanwhile), a second entry records the failure. A
//! deposit is the exchange's own command, so its entry commits with the credit itself.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use rand::RngCore as _;
use zeroize::Zeroizing;
use ztx_audit::{Entry, Hash, Kind, Outcome};
use ztx_core::{Amount, Command, CustomerId, Deposit, Reply, TransferId};
use ztx_engine::{Audit, EngineError, EngineHandle};
use ztx_store::{ApiKeyCredential, ApiKeyId, NewApiKey, StoreError};
use ztx_vault::contact::ContactKeys;

use crate::auth::Ed25519Key;
use crate::state::{Permissions, StorePool};

/// Who gives a command, as the log names them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    /// Where the command came from (none when run on the data directory itself).
    pub ip: Option<IpAddr>,
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command itself is wrong; the message names what.
    #[error("{0}")]
    Invalid(String),
    /// It is not allowed here (the faucet of a production exchange).
    #[error("{0}")]
    Forbidden(String),
    /// It names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It would create what already exists.
    #[error("{0}")]
    Conflict(String),
    /// The audit log or the store failed; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
}

/// A new API key, as asked for.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    pub customer: u64,
    /// Comma-separated: read, trade.
    pub permissions: String,
    /// The addresses the key may be used from (none: any).
    pub ips: Vec<String>,
    /// An Ed25519 public key (PEM) to register instead of an HMAC secret.
    pub ed25519_public_key_pem: Option<String>,
}

/// A created key: the secret (HMAC keys only) exists nowhere else in clear.
#[derive(Debug)]
pub struct CreatedKey {
    pub id: ApiKeyId,
    pub api_key: String,
    pub secret: Option<Zeroizing<String>>,
    pub customer: u64,
    pub permissions: String,
}

/// A development deposit, as asked for.
#[derive(Debug, Clone, Default)]
pub struct DepositRequest {
    pub customer: u64,
    /// The asset's code, e.g. `USDT`.
    pub asset: String,
    /// A decimal amount in whole units, e.g. `1000.5`.
    pub amount: String,
}

/// A credited deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credited {
    pub customer: u64,
    pub asset: String,
    /// The amount credited, in whole units.
    pub amount: String,
    /// The customer's available balance of the asset afterwards.
    pub available: String,
}

/// DEVELOPMENT ONLY: credits test funds to a customer, refused when the data was created
/// in production mode. `audited`: whether `engine` keeps an audit log (only a benchmark
/// server does not).
pub async fn deposit(
    engine: &EngineHandle,
    audited: bool,
    pool: &StorePool,
    who: &Operator,
    request: DepositRequest,
    now_ms: u64,
) -> Result<Credited, CommandError> {
    const ACTION: &str = "admin faucet deposit";
    let log = audited.then_some(engine);
    let params = vec![
        ("customer".to_owned(), request.customer.to_string()),
        ("asset".to_owned(), request.asset.clone()),
        ("amount".to_owned(), request.amount.clone()),
    ];
    let customer = request.customer;
    let (mode, exists) = pool
        .with(move |s| Ok((s.mode()?, s.customer_exists(CustomerId(customer))?)))
        .await
        .map_err(|e| unavailable(&e))?;
    let checked = if mode != Some(ztx_store::Mode::Development) {
        Err(CommandError::Forbidden(
            "the faucet is for development only, and this data was created in production mode"
                .into(),
        ))
    } else if !exists {
        Err(CommandError::NotFound(format!(
            "customer {customer} does not exist"
        )))
    } else {
        deposit_of(engine, &request)
    };
    let (deposit, decimals) = match checked {
        Ok(checked) => checked,
        Err(e) => return Err(refuse(log, who, ACTION, params, now_ms, e).await),
    };
    let asset = deposit.asset;
    let amount = deposit.amount.to_decimal(decimals);
    let command = Command::Deposit(deposit);
    let result = if audited {
        let audit = Audit {
            entry: entry(who, ACTION, params, Outcome::Success, now_ms),
            code_of: |e| crate::trade::engine_error(EngineError::Refused(e.clone())).code(),
            accessed: crate::accounting::take_for_commit(now_ms),
        };
        let accessed = audit.accessed.clone();
        let result = engine.execute_audited(command, audit).await;
        if matches!(result, Err(EngineError::Busy | EngineError::Unavailable)) {
            // Not written: logged after the command, with the rest.
            crate::accounting::put_back(accessed);
        }
        result
    } else {
        engine.execute(command).await
    };
    match result {
        Ok(Reply::Deposited { balance, .. }) => Ok(Credited {
            customer,
            asset: asset.as_str().to_owned(),
            amount,
            available: balance.available().to_decimal(decimals),
        }),
        Ok(other) => Err(CommandError::Unavailable(format!(
            "the exchange answered a deposit with {other:?}"
        ))),
        // Logged as failed, with the code, in the same commit that did not credit.
        Err(EngineError::Refused(e)) => Err(CommandError::Invalid(e.to_string())),
        // Neither the entry nor the credit was written.
        Err(e) => Err(CommandError::Unavailable(format!(
            "nothing was credited: {e}"
        ))),
    }
}

/// The deposit a request asks for, under a fresh transfer id, and its asset's decimals.
fn deposit_of(
    engine: &EngineHandle,
    request: &DepositRequest,
) -> Result<(Deposit, u8), CommandError> {
    let asset = engine
        .markets()
        .iter()
        .flat_map(|m| [m.base(), m.quote()])
        .find(|a| a.code().as_str() == request.asset)
        .ok_or_else(|| CommandError::Invalid(format!("unknown asset {:?}", request.asset)))?;
    let amount = Amount::parse_decimal(&request.amount, asset.decimals())
        .map_err(|e| CommandError::Invalid(format!("amount {:?}: {e}", request.amount)))?;
    if amount.is_zero() {
        return Err(CommandError::Invalid("the amount must be positive".into()));
    }
    // A random id whose top byte is zero (the exchange derives its own ids above that).
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id[1..]);
    let deposit = Deposit {
        transfer_id: TransferId(u128::from_be_bytes(id)),
        customer: CustomerId(request.customer),
        asset: asset.code(),
        amount,
    };
    Ok((deposit, asset.decimals()))
}

/// Logs a command whose body could not be read as failed, naming why; returns the error.
pub async fn malformed(
    engine: Option<&EngineHandle>,
    who: &Operator,
    action: &str,
    why: String,
    now_ms: u64,
) -> CommandError {
    refuse(
        engine,
        who,
        action,
        Vec::new(),
        now_ms,
        CommandError::Invalid(why),
    )
    .await
}

/// Creates a customer for `email` (compared without case).
pub async fn create_customer(
    engine: Option<&EngineHandle>,
    pool: &StorePool,
    contacts: Arc<ContactKeys>,
    who: &Operator,
    email: &str,
    now_ms: u64,
) -> Result<(CustomerId, String), CommandError> {
    const ACTION: &str = "admin customer create";
    let email = email.trim().to_ascii_lowercase();
    // The address is personal data: the log holds the customer number, not the address.
    let params = Vec::new();
    if let Err(e) = check_email(&email) {
        return Err(refuse(engine, who, ACTION, params, now_ms, e).await);
    }
    log(
        engine,
        who,
        ACTION,
        params.clone(),
        Outcome::Success,
        now_ms,
    )
    .await?;
    // The store holds the address sealed by the customer's own data key, and finds it
    // by its blind index only.
    let stored = email.clone();
    let index = contacts.email_index(&email);
    let created = pool
        .with(move |s| {
            Ok(s.create_customer(
                &index,
                &mut |id| {
                    contacts
                        .seal_email(id.0, &stored)
                        .map(crate::contacts::stored)
                        .map_err(|e| e.to_string())
                },
                now_ms,
            ))
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let error = match created {
        Ok(id) => return Ok((id, email)),
        Err(StoreError::DuplicateEmail) => {
            // Not the address: the message goes into the append-only log.
            CommandError::Conflict("a customer with this e-mail address exists already".into())
        }
        Err(e) => CommandError::Unavailable(e.to_string()),
    };
    Err(refuse(engine, who, ACTION, params, now_ms, error).await)
}

/// Creates an API key for a customer.
pub async fn create_api_key(
    engine: Option<&EngineHandle>,
    pool: &StorePool,
    keys: &ContactKeys,
    who: &Operator,
    request: KeyRequest,
    now_ms: u64,
) -> Result<CreatedKey, CommandError> {
    const ACTION: &str = "admin api-key create";
    let params = vec![
        ("customer".to_owned(), request.customer.to_string()),
        ("permissions".to_owned(), request.permissions.clone()),
        ("allow_list".to_owned(), request.ips.join(",")),
        (
            "credential".to_owned(),
            if request.ed25519_public_key_pem.is_some() {
                "ed25519"
            } else {
                "hmac"
            }
            .to_owned(),
        ),
    ];
    let (key, secret, permissions) = match new_key(keys, &request, now_ms) {
        Ok(made) => made,
        Err(e) => return Err(refuse(engine, who, ACTION, params, now_ms, e).await),
    };
    let customer = request.customer;
    let exists = pool
        .with(move |s| s.customer_exists(CustomerId(customer)))
        .await
        .map_err(|e| unavailable(&e))?;
    if !exists {
        let error = CommandError::NotFound(format!("customer {customer} does not exist"));
        return Err(refuse(engine, who, ACTION, params, now_ms, error).await);
    }
    log(
        engine,
        who,
        ACTION,
        params.clone(),
        Outcome::Success,
        now_ms,
    )
    .await?;
    let api_key = key.api_key.clone();
    let created = pool
        .with(move |s| Ok(s.create_api_key(&key)))
        .await
        .map_err(|e| unavailable(&e))?;
    let error = match created {
        Ok(id) => {
            return Ok(CreatedKey {
                id,
                api_key,
                secret,
                customer,
                permissions,
            });
        }
        Err(StoreError::UnknownCustomer(_)) => {
            CommandError::NotFound(format!("customer {customer} does not exist"))
        }
        Err(e) => CommandError::Unavailable(e.to_string()),
    };
    Err(refuse(engine, who, ACTION, params, now_ms, error).await)
}

/// The key to store (its HMAC secret sealed under a data key of its own), the secret in
/// clear for the customer, and the permissions as stored.
fn new_key(
    keys: &ContactKeys,
    request: &KeyRequest,
    now_ms: u64,
) -> Result<(NewApiKey, Option<Zeroizing<String>>, String), CommandError> {
    let perms = Permissions::parse(&request.permissions).ok_or_else(|| {
        CommandError::Invalid("permissions must be a comma-separated list of read, trade".into())
    })?;
    if perms.withdraw {
        return Err(CommandError::Invalid(
            "the withdraw permission cannot be granted: withdrawals are not available yet".into(),
        ));
    }
    if !perms.read && !perms.trade {
        return Err(CommandError::Invalid(
            "give the key at least one permission (read, trade)".into(),
        ));
    }
    for ip in &request.ips {
        ip.parse::<IpAddr>()
            .map_err(|_| CommandError::Invalid(format!("{ip:?} is not an IP address")))?;
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let api_key = hex::encode(raw);
    let (credential, secret) = match &request.ed25519_public_key_pem {
        Some(pem) => {
            let key = Ed25519Key::from_public_key_pem(pem)
                .map_err(|e| CommandError::Invalid(format!("the Ed25519 public key: {e}")))?;
            let public_key = key.to_bytes();
            (ApiKeyCredential::Ed25519 { public_key }, None)
        }
        None => {
            // Both the random bytes and their text are wiped when they go out of scope.
            let mut raw_secret = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(raw_secret.as_mut());
            let secret = Zeroizing::new(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(raw_secret.as_ref())
                    .replace(['-', '_'], "x"),
            );
            let sealed = keys
                .seal_secret(&api_key, secret.as_bytes())
                .map_err(|e| CommandError::Unavailable(format!("cannot seal the secret: {e}")))?;
            (
                ApiKeyCredential::Hmac {
                    secret_sealed: sealed.sealed,
                    data_key: Some(crate::contacts::stored_key(sealed.key)),
                },
                Some(secret),
            )
        }
    };
    let permissions = [("read", perms.read), ("trade", perms.trade)]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",");
    let key = NewApiKey {
        api_key,
        customer: CustomerId(request.customer),
        credential,
        permissions: permissions.clone(),
        ip_allowlist: request.ips.join(","),
        enabled: true,
        created_ms: now_ms,
    };
    Ok((key, secret, permissions))
}

/// Whether `email` looks like an e-mail address.
pub fn check_email(email: &str) -> Result<(), CommandError> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        // And an address as mail is sent to it: `Name <a@b.c>` would be delivered to
        // another address than the one stored (and indexed for uniqueness).
        && email.parse::<lettre::Address>().is_ok_and(|a| AsRef::<str>::as_ref(&a) == email);
    if ok {
        Ok(())
    } else {
        // Not echoed: the message goes into the append-only log.
        Err(CommandError::Invalid(
            "not an e-mail address: it needs a local part, @ and a dotted domain, and nothing \
             around them (no spaces, no name in <>)"
                .into(),
        ))
    }
}

/// A store connection that could not be had.
fn unavailable(e: &crate::error::ApiError) -> CommandError {
    CommandError::Unavailable(e.detail().unwrap_or(e.msg()).to_owned())
}

/// Logs the command as failed, with why; the error to answer (the log's own, if it
/// could not be written).
async fn refuse(
    engine: Option<&EngineHandle>,
    who: &Operator,
    action: &str,
    mut params: Vec<(String, String)>,
    now_ms: u64,
    error: CommandError,
) -> CommandError {
    params.push(("error".to_owned(), error.to_string()));
    match log(engine, who, action, params, Outcome::Failure, now_ms).await {
        Ok(()) => error,
        Err(unlogged) => unlogged,
    }
}

/// An operator tool that changes the platform's data beside the server, rather than
/// through it: the key-encryption key's rotation (`ztx vault rotate`), which re-wraps
/// every customer's data key. Its entry is durable before the tool starts.
pub const VAULT_ROTATE: &str = "admin vault rotate";
/// A server started without the audit log (for benchmarks only): the last entry before
/// the gap its run leaves, so that the gap is on the record.
pub const SERVE_UNAUDITED: &str = "admin serve unaudited";

/// Logs that the operator is about to run `action` ([`VAULT_ROTATE`],
/// [`SERVE_UNAUDITED`]); it runs only once this returns.
pub async fn record_operator_tool(
    engine: Option<&EngineHandle>,
    who: &Operator,
    action: &'static str,
    now_ms: u64,
) -> Result<(), CommandError> {
    log(engine, who, action, Vec::new(), Outcome::Success, now_ms).await
}

/// Appends the command's entry; returns once it is durable. Without a log (`None`: a
/// server run unaudited, for benchmarks only) there is nothing to append to.
async fn log(
    engine: Option<&EngineHandle>,
    who: &Operator,
    action: &str,
    params: Vec<(String, String)>,
    outcome: Outcome,
    now_ms: u64,
) -> Result<(), CommandError> {
    let Some(engine) = engine else {
        return Ok(());
    };
    engine
        .record(entry(who, action, params, outcome, now_ms))
        .await
        .map_err(|e| {
            CommandError::Unavailable(format!(
                "the audit log is unavailable, so nothing was changed: {e}"
            ))
        })
}

/// An operator command's entry.
fn entry(
    who: &Operator,
    action: &str,
    params: Vec<(String, String)>,
    outcome: Outcome,
    now_ms: u64,
) -> Entry {
    Entry {
        prev: Hash::ZERO,
        time_ms: now_ms,
        kind: Kind::Admin,
        request_id: 0,
        customer: None,
        api_key: None,
        operator: Some(who.name.as_str().into()),
        client_ip: who.ip,
        action: action.into(),
        params: ztx_audit::entry::params(params),
        outcome,
        denial: None,
        code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_stored_only_as_mail_would_be_sent_to_it() {
        for good in ["a@example.com", "first.last+tag@mail.example.org"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        // `Foo<a@b.c>` would be mailed to a@b.c while stored (and indexed) as itself.
        for bad in [
            "Foo<a@example.com>",
            "Foo <a@example.com>",
            "<a@example.com>",
            "a@example.com>",
            "a b@example.com",
            "a@example",
            "@example.com",
            "a@",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
