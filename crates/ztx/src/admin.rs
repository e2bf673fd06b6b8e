//! `ztx admin`: create customers and API keys, and (in development mode only) credit test
//! funds through the faucet. Customers and keys are written to the store directly; the
//! faucet goes through the store's inbox, which the running server drains, because only the
//! exchange may change balances.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use rand::RngCore as _;
use serde_json::json;
use zeroize::Zeroizing;
use ztx_api::state::{Permissions, secret_aad};
use ztx_core::{Amount, AssetCode, CustomerId, TransferId};
use ztx_store::{ApiKeyCredential, Mode, NewApiKey};

use crate::Location;
use crate::site::{Site, now_ms};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Customers.
    Customer {
        #[command(subcommand)]
        command: CustomerCommand,
    },
    /// API keys for trading bots and wallets.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Security events (OCSF JSON, one per line) from the running server, from a cursor.
    Events {
        /// The index of the first entry to read.
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// The most events per request (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Keep reading as new events arrive.
        #[arg(long)]
        follow: bool,
    },
    /// DEVELOPMENT ONLY: credit test funds to a customer (refused in production mode).
    Faucet {
        #[arg(long)]
        customer: u64,
        #[arg(long)]
        asset: String,
        /// A decimal amount in whole units, e.g. 1000.5.
        #[arg(long)]
        amount: String,
        /// How long to wait for the running server to apply it.
        #[arg(long, default_value_t = 10)]
        wait_s: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum CustomerCommand {
    /// Create a customer; prints its id.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; prints the key and, for HMAC keys, the secret (only this once).
    Create {
        #[arg(long)]
        customer: u64,
        /// Comma-separated: read, trade.
        #[arg(long)]
        permissions: String,
        /// Comma-separated IP addresses the key may be used from (default: any).
        #[arg(long, value_delimiter = ',')]
        ip: Vec<String>,
        /// Register an Ed25519 key (PEM public key file) instead of an HMAC secret.
        #[arg(long)]
        ed25519_public_key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AdminArgs) -> Result<()> {
    let site = Site::open(&args.location, false)?;
    match args.command {
        AdminCommand::Customer {
            command: CustomerCommand::Create { email, json },
        } => create_customer(&site, &email, json),
        AdminCommand::ApiKey {
            command:
                ApiKeyCommand::Create {
                    customer,
                    permissions,
                    ip,
                    ed25519_public_key,
                    json,
                },
        } => create_api_key(&site, customer, &permissions, &ip, ed25519_public_key, json),
        AdminCommand::Faucet {
            customer,
            asset,
            amount,
            wait_s,
            json,
        } => faucet(&site, customer, &asset, &amount, wait_s, json),
        AdminCommand::Events {
            cursor,
            limit,
            follow,
        } => events(&site, cursor, limit, follow),
    }
}

/// Prints the events from `cursor` on, one JSON line each; the next cursor goes to
/// stderr, to resume from.
fn events(site: &Site, mut cursor: u64, limit: u32, follow: bool) -> Result<()> {
    use std::io::Write as _;
    let addr = site.admin_address()?;
    let token = site.admin_token()?;
    let bearer = zeroize::Zeroizing::new(format!("Bearer {}", token.as_str()));
    // A page of 1,000 events is about a megabyte.
    let client = crate::fetch::Client::new(&format!("http://{addr}"))?.with_max_body(16 << 20);
    let mut out = std::io::stdout().lock();
    loop {
        let path = format!("/ztx/admin/v1/events?cursor={cursor}&limit={limit}");
        let body = client.get_with(&path, &[("authorization", bearer.as_str())])?;
        let page: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| anyhow!("the server's answer is not JSON: {e}"))?;
        let events = page
            .get("events")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for event in events {
            writeln!(out, "{event}")?;
        }
        out.flush()?;
        cursor = page
            .get("next_cursor")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| anyhow!("the server's answer has no next_cursor"))?;
        if !follow {
            eprintln!("next cursor: {cursor}");
            return Ok(());
        }
        if events.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        bail!("{email:?} is not an e-mail address");
    }
    Ok(())
}

fn create_customer(site: &Site, email: &str, json: bool) -> Result<()> {
    // One customer per address, whatever its case.
    let email = email.trim().to_ascii_lowercase();
    let email = email.as_str();
    check_email(email)?;
    let mut store = site.store()?;
    let id = store.create_customer(email, now_ms())?;
    if json {
        println!("{}", json!({ "customer_id": id.0, "email": email }));
    } else {
        println!("customer {} created for {email}", id.0);
    }
    Ok(())
}

fn create_api_key(
    site: &Site,
    customer: u64,
    permissions: &str,
    ips: &[String],
    ed25519_public_key: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let perms = Permissions::parse(permissions)
        .ok_or_else(|| anyhow!("permissions must be a comma-separated list of read, trade"))?;
    if perms.withdraw {
        bail!("the withdraw permission cannot be granted: withdrawals are not available yet");
    }
    if !perms.read && !perms.trade {
        bail!("give the key at least one permission (read, trade)");
    }
    for ip in ips {
        ip.parse::<IpAddr>()
            .map_err(|_| anyhow!("--ip: {ip:?} is not an IP address"))?;
    }
    let mut store = site.store()?;
    if store.customer(CustomerId(customer))?.is_none() {
        bail!("customer {customer} does not exist");
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let api_key = hex::encode(raw);
    let (credential, secret) = match &ed25519_public_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the public key file {}", path.display()))?;
            let key = ztx_api::Ed25519Key::from_public_key_pem(&pem)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            (
                ApiKeyCredential::Ed25519 {
                    public_key: key.to_bytes(),
                },
                None,
            )
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
            let master = site.master_key()?;
            let sealed = master.seal(secret.as_bytes(), &secret_aad(&api_key));
            (
                ApiKeyCredential::Hmac {
                    secret_sealed: sealed,
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
    store.create_api_key(&NewApiKey {
        api_key: api_key.clone(),
        customer: CustomerId(customer),
        credential,
        permissions: permissions.clone(),
        ip_allowlist: ips.join(","),
        enabled: true,
        created_ms: now_ms(),
    })?;
    if json {
        println!(
            "{}",
            json!({ "api_key": api_key, "secret": secret.as_ref().map(|s| s.as_str()), "customer_id": customer, "permissions": permissions })
        );
    } else {
        println!("api key: {api_key}");
        match secret {
            Some(s) => println!(
                "secret:  {}\n(the secret is shown only this once)",
                s.as_str()
            ),
            None => println!("(Ed25519 key: sign requests with your private key)"),
        }
    }
    Ok(())
}

fn faucet(
    site: &Site,
    customer: u64,
    asset: &str,
    amount: &str,
    wait_s: u64,
    json: bool,
) -> Result<()> {
    let mut store = site.store()?;
    if store.mode()? != Some(Mode::Development) {
        bail!("the faucet is for development only, and this data was created in production mode");
    }
    let config = site.config(None)?;
    let asset = config
        .asset(asset)
        .ok_or_else(|| anyhow!("unknown asset {asset:?}"))?;
    let amount = Amount::parse_decimal(amount, asset.decimals())
        .map_err(|e| anyhow!("--amount {amount:?}: {e}"))?;
    if amount.is_zero() {
        bail!("--amount must be positive");
    }
    if store.customer(CustomerId(customer))?.is_none() {
        bail!("customer {customer} does not exist");
    }
    // A random id whose top byte is zero, so that a retried request credits once.
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id[1..]);
    let transfer_id = TransferId(u128::from_be_bytes(id));
    let code: AssetCode = asset.code();
    let item = store.enqueue_deposit(transfer_id, CustomerId(customer), code, amount, now_ms())?;
    let deadline = Instant::now() + Duration::from_secs(wait_s);
    let outcome = loop {
        if let Some(done) = store
            .inbox_item(item)?
            .and_then(|i| i.completion)
            .map(|c| c.result)
        {
            break Some(done);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let amount_text = amount.to_decimal(asset.decimals());
    match outcome {
        Some(result) if result.starts_with("ok") => {
            if json {
                println!(
                    "{}",
                    json!({ "status": "credited", "customer_id": customer, "asset": code.as_str(), "amount": amount_text })
                );
            } else {
                println!(
                    "development deposit: credited {amount_text} {code} to customer {customer}"
                );
            }
            Ok(())
        }
        Some(result) => bail!("the server refused the deposit: {result}"),
        None => {
            if json {
                println!(
                    "{}",
                    json!({ "status": "queued", "customer_id": customer, "asset": code.as_str(), "amount": amount_text })
                );
            } else {
                println!("development deposit queued: the server applies it when it runs");
            }
            Ok(())
        }
    }
}
