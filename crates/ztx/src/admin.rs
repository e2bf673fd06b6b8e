//! `ztx admin`: create customers and API keys, read the security events, and (in
//! development mode only) credit test funds through the faucet. Each command is an audit
//! entry no later than its effect: while a server runs on the data
//! directory the command goes to its admin API, and otherwise this process runs an
//! engine of its own, under the data directory's lock, to append to the log
//! ([`ztx_api::operate`]). The faucet's credit is the exchange's own command, logged in
//! the commit that makes it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::json;
use zeroize::Zeroizing;
use ztx_api::StorePool;
use ztx_api::operate::{self, CommandError, Credited, DepositRequest, KeyRequest, Operator};
use ztx_engine::{AuditConfig, Engine, EngineHandle};
use ztx_vault::MasterKey;

use crate::Location;
use crate::site::{Site, now_ms};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    location: Location,
    /// Talk to the running server as this operator (a certificate from `ztx pki issue
    /// --operator`) instead of the data directory's bootstrap operator.
    #[arg(long, global = true, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The key of `--cert`.
    #[arg(long, global = true, requires = "cert")]
    key: Option<std::path::PathBuf>,
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
    let mut site = Site::open(&args.location, false)?;
    site.operator = args.cert.zip(args.key);
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
            json,
        } => faucet(
            &site,
            DepositRequest {
                customer,
                asset,
                amount,
            },
            json,
        ),
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
    // A page of 1,000 events is about a megabyte.
    let client = admin_client(site)?.with_max_body(16 << 20);
    let mut out = std::io::stdout().lock();
    loop {
        let path = format!("/ztx/admin/v1/events?cursor={cursor}&limit={limit}");
        let body = client.get(&path)?;
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

/// Where an operator command runs.
pub(crate) enum Route {
    /// The running server, through its admin API (mTLS, as the operator).
    Server(crate::fetch::Client),
    /// No server runs: an engine of our own logs the command, while this process holds
    /// the data directory's lock so that no server starts meanwhile.
    Local(std::fs::File),
}

pub(crate) fn route(site: &Site) -> Result<Route> {
    if let Some(lock) = site.try_lock()? {
        return Ok(Route::Local(lock));
    }
    Ok(Route::Server(admin_client(site)?))
}

/// A client of the running server's admin API: mutual TLS, presenting the data
/// directory's bootstrap operator certificate.
fn admin_client(site: &Site) -> Result<crate::fetch::Client> {
    let addr = site.admin_address()?;
    let operator = site
        .operator
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    let config = crate::tls::admin_client(site, operator)?;
    crate::fetch::Client::mtls(addr, config)
}

/// Runs `command` beside an engine of our own, which appends its entries to the audit
/// log (and signs a checkpoint of them as it stops).
pub(crate) fn locally<T>(
    site: &Site,
    command: impl AsyncFnOnce(
        &EngineHandle,
        &StorePool,
        &MasterKey,
        &Operator,
    ) -> Result<T, CommandError>,
) -> Result<T> {
    locally_with(site, &site.config(None)?, command)
}

/// [`locally`], the engine's markets from `config`.
pub(crate) fn locally_with<T>(
    site: &Site,
    config: &crate::config::Config,
    command: impl AsyncFnOnce(
        &EngineHandle,
        &StorePool,
        &MasterKey,
        &Operator,
    ) -> Result<T, CommandError>,
) -> Result<T> {
    let master = site.master_key()?;
    let key = site.audit_key(&master)?;
    let clock: ztx_engine::Clock = Arc::new(now_ms);
    let (engine, handle) = Engine::start_with(
        site.store_factory(),
        config.markets.clone(),
        clock,
        Some(AuditConfig {
            key,
            checkpoint_every: Duration::from_secs(1),
            feed: None,
        }),
    )
    .context("cannot open the exchange to log the command")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let pool = StorePool::new(site.store_factory()).accounting(true);
    let who = Operator {
        name: local_operator(),
        ip: None,
    };
    // The command's store calls are logged like the admin API's, as the operator's.
    let accessor = ztx_engine::Accessor {
        service: ztx_api::accounting::SERVICE_ADMIN,
        principal: ztx_engine::Principal::Operator(who.name.clone()),
        request_id: 0,
        api_key: None,
        client_ip: None,
    };
    let result = runtime
        .block_on(ztx_api::accounting::accounted(
            &handle,
            accessor,
            now_ms,
            command(&handle, &pool, &master, &who),
        ))
        .map_err(|e| {
            CommandError::Unavailable(format!("cannot log the command's store calls: {e}"))
        })
        .and_then(|r| r);
    drop(handle);
    engine.join();
    result.map_err(|e| anyhow!(e))
}

/// Who the log names for a command run on the data directory itself: the system user.
fn local_operator() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@data-dir")
}

/// POSTs a command to the running server; its JSON answer.
pub(crate) fn ask_server(
    client: &crate::fetch::Client,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    ask_server_within(client, path, body, crate::fetch::TIMEOUT)
}

/// As [`ask_server`], waiting up to `timeout` for the answer.
pub(crate) fn ask_server_within(
    client: &crate::fetch::Client,
    path: &str,
    body: &serde_json::Value,
    timeout: std::time::Duration,
) -> Result<serde_json::Value> {
    let answer = client.post_json_within(path, &[], &body.to_string(), timeout)?;
    serde_json::from_str(&answer).map_err(|e| anyhow!("the server's answer is not JSON: {e}"))
}

/// A text field of the server's answer.
fn text_of(answer: &serde_json::Value, name: &str) -> Option<String> {
    answer
        .get(name)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

fn create_customer(site: &Site, email: &str, json: bool) -> Result<()> {
    let (id, email) = match route(site)? {
        Route::Local(_lock) => locally(site, async |engine, pool, _, who| {
            let contacts = site
                .contact_keys()
                .map_err(|e| CommandError::Unavailable(format!("{e:#}")))?;
            // As `ztx serve` does at start: addresses an older release left in the clear
            // are sealed first, so the duplicate check (by blind index) sees them.
            let sealing = contacts.clone();
            pool.with(move |store| Ok(ztx_api::contacts::seal_plain(store, &sealing)))
                .await
                .map_err(|e| CommandError::Unavailable(e.to_string()))?
                .map_err(|e| CommandError::Unavailable(e.to_string()))?;
            operate::create_customer(Some(engine), pool, contacts, who, email, now_ms()).await
        })
        .map(|(id, email)| (id.0, email))?,
        Route::Server(client) => {
            let answer = ask_server(
                &client,
                "/ztx/admin/v1/customers",
                &json!({ "email": email }),
            )?;
            let id = answer
                .get("customer_id")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| anyhow!("the server's answer has no customer_id"))?;
            let email = text_of(&answer, "email").unwrap_or_else(|| email.to_owned());
            (id, email)
        }
    };
    if json {
        println!("{}", json!({ "customer_id": id, "email": email }));
    } else {
        println!("customer {id} created for {email}");
    }
    Ok(())
}

/// A created key as printed.
struct Printed {
    api_key: String,
    secret: Option<Zeroizing<String>>,
    customer: u64,
    permissions: String,
}

fn create_api_key(
    site: &Site,
    customer: u64,
    permissions: &str,
    ips: &[String],
    ed25519_public_key: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let pem = match &ed25519_public_key {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the public key file {}", path.display()))?,
        ),
        None => None,
    };
    let request = KeyRequest {
        customer,
        permissions: permissions.to_owned(),
        ips: ips.to_vec(),
        ed25519_public_key_pem: pem,
    };
    let key = match route(site)? {
        Route::Local(_lock) => {
            let key = locally(site, async |engine, pool, _, who| {
                let keys = site
                    .contact_keys()
                    .map_err(|e| CommandError::Unavailable(format!("{e:#}")))?;
                operate::create_api_key(Some(engine), pool, &keys, who, request, now_ms()).await
            })?;
            Printed {
                api_key: key.api_key,
                secret: key.secret,
                customer: key.customer,
                permissions: key.permissions,
            }
        }
        Route::Server(client) => {
            let answer = ask_server(
                &client,
                "/ztx/admin/v1/api-keys",
                &json!({
                    "customer": request.customer,
                    "permissions": request.permissions,
                    "ip": request.ips,
                    "ed25519_public_key_pem": request.ed25519_public_key_pem,
                }),
            )?;
            let text = |name: &str| text_of(&answer, name);
            Printed {
                api_key: text("api_key")
                    .ok_or_else(|| anyhow!("the server's answer has no api_key"))?,
                secret: text("secret").map(Zeroizing::new),
                customer,
                permissions: text("permissions").unwrap_or_default(),
            }
        }
    };
    if json {
        println!(
            "{}",
            json!({ "api_key": key.api_key, "secret": key.secret.as_ref().map(|s| s.as_str()), "customer_id": key.customer, "permissions": key.permissions })
        );
    } else {
        println!("api key: {}", key.api_key);
        match &key.secret {
            Some(s) => println!(
                "secret:  {}\n(the secret is shown only this once)",
                s.as_str()
            ),
            None => println!("(Ed25519 key: sign requests with your private key)"),
        }
    }
    Ok(())
}

fn faucet(site: &Site, request: DepositRequest, json: bool) -> Result<()> {
    let credited = match route(site)? {
        Route::Local(_lock) => locally(site, async |engine, pool, _, who| {
            operate::deposit(engine, true, pool, who, request, now_ms()).await
        })?,
        Route::Server(client) => {
            let answer = ask_server(
                &client,
                "/ztx/admin/v1/deposits",
                &json!({
                    "customer": request.customer,
                    "asset": request.asset,
                    "amount": request.amount,
                }),
            )?;
            let text = |name: &str| {
                text_of(&answer, name).ok_or_else(|| anyhow!("the server's answer has no {name}"))
            };
            Credited {
                customer: request.customer,
                asset: text("asset")?,
                amount: text("amount")?,
                available: text("available")?,
            }
        }
    };
    let Credited {
        customer,
        asset,
        amount,
        available,
    } = credited;
    if json {
        println!(
            "{}",
            json!({ "status": "credited", "customer_id": customer, "asset": asset, "amount": amount, "available": available })
        );
    } else {
        println!(
            "development deposit: credited {amount} {asset} to customer {customer} (available {available})"
        );
    }
    Ok(())
}
