//! `ztx serve`: opens the store, resumes the exchange, and serves the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ztx_api::{AppState, StorePool};
use ztx_engine::Engine;

use crate::Location;
use crate::site::{Site, now_ms};

/// How many commits' audit rows wait for the monitor before the writer drops them.
const FEED_COMMITS: usize = 1024;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    location: Location,
    /// The address to listen on (default: the configuration's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A configuration file (default: config.toml in the data directory, written from the
    /// built-in default on first start).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Threads serving HTTP (default: one fewer than the cores, at least one).
    #[arg(long)]
    http_threads: Option<usize>,
    /// Keep no audit log: only for measuring what the log costs (BENCHMARKS.md). A server
    /// run so breaks the promise that every access is recorded, and says so at start: in
    /// its output, and as the last entry in the log before the gap.
    #[arg(long, hide = true)]
    unaudited_benchmark_only: bool,
}

/// One fewer HTTP thread than cores: the engine and its writer, which every order passes
/// through, keep a core of their own. On two cores this took the p99 of `ztx-load` at
/// ~10,000 orders/s from 5–6 ms to 4.5 ms (BENCHMARKS.md).
fn default_http_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

pub fn run(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let site = Site::open(&args.location, true)?;
    // Held until the server exits.
    let _lock = site.try_lock()?.ok_or_else(|| {
        anyhow::anyhow!(
            "another ztx serve is running on the data directory {}",
            site.dir.display()
        )
    })?;
    let config = site.config(args.config.as_deref())?;
    let master = site.master_key()?;
    let contacts = site.contact_keys()?;
    let mut store = site.store()?;
    // What start reads and changes (legacy addresses and secrets sealed) is logged as the
    // platform's, once the engine keeps the log.
    store.account(true);
    store
        .init_mode(config.mode)
        .context("the data was created in another mode")?;
    // Customer ids start at 1: without customer 1 there are none yet.
    // Addresses an older release stored in the clear are sealed before anything else
    // runs (and before a customer could be created beside one of them unseen).
    let sealed = ztx_api::contacts::seal_plain(&mut *store, &contacts)
        .context("cannot seal the addresses an older release stored in the clear")?;
    if sealed > 0 {
        tracing::info!(sealed, "sealed customers' addresses stored in the clear");
    }
    // API secrets an older release sealed under the master key move under data keys of
    // their own (and a rotation that stopped half-way is finished).
    let (rewrapped, resealed) = ztx_api::contacts::rotate_secrets(&mut *store, &contacts, &master)
        .context("cannot re-seal the API keys' secrets")?;
    if rewrapped + resealed > 0 {
        tracing::info!(
            rewrapped,
            resealed,
            "API keys' secrets moved under the current key version"
        );
    }
    let first_start = !store
        .customer_exists(ztx_core::CustomerId(1))
        .context("cannot read customers")?;
    let listen = args.listen.unwrap_or(config.listen);

    // The engine and its store connections live on their own threads, outside the async
    // runtime (the PostgreSQL client is synchronous).
    let (started, dropped) = store.take_accesses();
    drop(store);
    let clock: ztx_engine::Clock = Arc::new(now_ms);
    let log_key = site.audit_key(&master)?;
    let verifier = log_key.verifier();
    let product = ztx_monitor::Product {
        name: "ztx".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        log_name: log_key.name().to_owned(),
    };
    // The admin API is served over mutual TLS only, so the token that admits requests
    // without TLS is one nobody holds.
    let admin_token = ztx_api::admin::token_digest(&hex::encode(rand::random::<[u8; 32]>()));
    let admin_tls = crate::tls::AdminTls::start(&site, config.admin_listen)
        .context("cannot set up the admin API's TLS")?;
    let audited = !args.unaudited_benchmark_only;
    // The writer hands each commit's audit rows to the monitor (a commit's worth per
    // slot; when the monitor falls this far behind it reads the store instead).
    let (feed, followed) = tokio::sync::mpsc::channel(FEED_COMMITS);
    let audit = audited.then_some(ztx_engine::AuditConfig {
        key: log_key,
        checkpoint_every: std::time::Duration::from_secs(1),
        feed: Some(feed),
    });
    let (started, dropped) = if audited {
        (started, dropped)
    } else {
        // The log cannot record what this run does, but it records that it ran so, after
        // the store calls its start made.
        let accesses = ztx_engine::Accessor::platform().entries(started, dropped, now_ms());
        crate::admin::locally_with(&site, &config, async |engine, _, _, who| {
            engine.record_all(accesses).await.map_err(|e| {
                ztx_api::operate::CommandError::Unavailable(format!(
                    "cannot log the store calls made at start: {e}"
                ))
            })?;
            ztx_api::operate::record_operator_tool(
                Some(engine),
                who,
                ztx_api::operate::SERVE_UNAUDITED,
                now_ms(),
            )
            .await
        })
        .context("cannot log that the server runs without the audit log")?;
        tracing::warn!("running WITHOUT the audit log: for benchmarks only");
        (Vec::new(), 0)
    };
    let (engine, handle) = Engine::start_with(
        site.store_factory(),
        config.markets.clone(),
        clock.clone(),
        audit,
    )
    .context("cannot start the exchange")?;
    let http_threads = args
        .http_threads
        .unwrap_or_else(default_http_threads)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(http_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if audited {
            let entries = ztx_engine::Accessor::platform().entries(started, dropped, now_ms());
            handle
                .record_all(entries)
                .await
                .context("cannot log the store calls made at start")?;
        }
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                bail!("cannot listen on {listen}: the port is taken (is another ztx running? use --listen)")
            }
            Err(e) => bail!("cannot listen on {listen}: {e}"),
        };
        let admin_listener = match tokio::net::TcpListener::bind(config.admin_listen).await {
            Ok(l) => l,
            Err(e) => bail!("cannot listen on {} (admin_listen): {e}", config.admin_listen),
        };
        let reserves = Arc::new(ztx_api::reserves::Reserves::new(
            &site.dir,
            master.clone(),
            ztx_por::TreeConfig::default(),
        ));
        let state = AppState::new(
            handle,
            StorePool::new(site.store_factory()),
            master,
            contacts,
            config.rate_limits,
            clock,
        )
        .audited(audited)
        .with_webhook_policy(ztx_api::webhooks::WebhookPolicy {
            allow_insecure: config.webhooks.allow_insecure,
        })
        .with_log_key(&verifier)
        .with_reserves(reserves.clone());
        // The latest epoch's tree, rebuilt from its snapshot now rather than on the
        // first customer's request.
        let warm = reserves.clone();
        tokio::task::spawn_blocking(move || match warm.tree(None) {
            Ok(_) | Err(ztx_api::operate::CommandError::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, "cannot rebuild the latest proof-of-liabilities epoch"),
        });
        if audited {
            tokio::spawn(publish_reserves_hourly(state.clone(), reserves));
        }
        let local = listener.local_addr().unwrap_or(listen);
        let admin_local = admin_listener.local_addr().unwrap_or(config.admin_listen);
        site.write_admin_address(admin_local)?;
        let (stop_monitor, monitor_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut monitor_thread = None;
        if audited {
            let monitor = ztx_api::monitor::Monitor::start(
                state.clone(),
                ztx_api::monitor::MonitorConfig {
                    detection: config.detection.clone(),
                    file: config.events.enabled.then(|| ztx_api::monitor::FileSink {
                        dir: config.events.dir.clone().unwrap_or_else(|| site.dir.join("events")),
                        max_bytes: config.events.max_bytes,
                        keep: config.events.keep,
                    }),
                    product: product.clone(),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the security monitor: {e}"))?
            .following(followed);
            // Its own thread and runtime: following the log never holds up a request.
            let thread = std::thread::Builder::new()
                .name("ztx-monitor".into())
                .spawn(move || {
                    // It follows the log after the fact: requests come first.
                    ztx_engine::yield_to_requests("security monitor");
                    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(runtime) => runtime.block_on(monitor.run(async {
                            let _ = monitor_stopped.await;
                        })),
                        Err(e) => tracing::error!(error = %e, "cannot start the security monitor"),
                    }
                })
                .context("cannot start the security monitor")?;
            monitor_thread = Some(thread);
        }
        let (stop_webhooks, webhooks_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut webhooks = None;
        if config.webhooks.deliver {
            let sender = ztx_api::webhooks::Sender::new(state.clone());
            webhooks = Some(tokio::spawn(sender.run(async {
                let _ = webhooks_stopped.await;
            })));
        }
        let (stop_email, email_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut email = None;
        if let Some(relay) = &config.email {
            use std::env::VarError::NotPresent;
            let credentials = match (
                std::env::var("ZTX_SMTP_USER"),
                std::env::var("ZTX_SMTP_PASSWORD"),
            ) {
                (Ok(user), Ok(password)) => Some((user, zeroize::Zeroizing::new(password))),
                (Err(NotPresent), Err(NotPresent)) => None,
                _ => anyhow::bail!(
                    "the relay's login needs both ZTX_SMTP_USER and ZTX_SMTP_PASSWORD (UTF-8), \
                     or neither"
                ),
            };
            let sender = ztx_api::email::Sender::smtp(state.clone(), &relay.for_api(credentials))
                .map_err(|e| anyhow::anyhow!("cannot start the e-mail sender: email.{e}"))?;
            email = Some(tokio::spawn(sender.run(async {
                let _ = email_stopped.await;
            })));
            tracing::info!(relay = %relay.smtp, "e-mail notifications go out through the relay");
        }
        let admin_app = ztx_api::admin::admin_router(state.clone(), admin_token, product)
            .into_make_service_with_connect_info::<ztx_api::admin::AdminPeer>();
        let refusals = state.clone();
        let refused: ztx_api::admin_tls::Refused = Arc::new(move |addr, why| {
            let app = refusals.clone();
            tokio::spawn(async move {
                ztx_api::admin::record_refused_handshake(&app, addr, why).await;
            });
        });
        let admin_listener = ztx_api::admin_tls::TlsAdminListener::new(
            admin_listener,
            admin_tls.config.clone(),
            admin_tls.revocations.clone(),
            refused,
        )
        .context("cannot start the admin listener")?;
        admin_tls.spawn_upkeep();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(admin_listener, admin_app).await {
                tracing::error!(error = %e, "the admin listener failed");
            }
        });
        tracing::info!(%admin_local, "admin API (mutual TLS, operator certificates from pki/)");
        tracing::info!(%local, mode = config.mode.as_str(), data_dir = %site.dir.display(), "ztx is serving");
        say(&format!("ztx is serving the Binance-compatible API on http://{local}"));
        if first_start {
            print_welcome(&site);
        }
        let app = ztx_api::router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("the server failed")?;
        tracing::info!("stopped accepting requests; finishing the engine");
        let _ = stop_webhooks.send(());
        if let Some(webhooks) = webhooks {
            let _ = webhooks.await;
        }
        let _ = stop_email.send(());
        if let Some(email) = email {
            let _ = email.await;
        }
        // The monitor catches up once more, then lets go of the engine.
        let _ = stop_monitor.send(());
        if let Some(thread) = monitor_thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        Ok(())
    })?;
    // The runtime's tasks, and with them the last handles to the engine, are gone: the
    // engine finishes what it accepted and the writer signs the log's last checkpoint.
    drop(runtime);
    engine.join();
    Ok(())
}

/// How often the server publishes a proof-of-liabilities epoch on its own.
const PUBLISH_RESERVES_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Publishes an epoch every [`PUBLISH_RESERVES_EVERY`], from a snapshot that does not
/// stop trading; its store calls are the `por` service's, in the log like any other.
async fn publish_reserves_hourly(state: AppState, reserves: Arc<ztx_api::reserves::Reserves>) {
    let who = ztx_api::operate::Operator {
        name: "ztx-serve (schedule)".into(),
        ip: None,
    };
    let mut every = tokio::time::interval(PUBLISH_RESERVES_EVERY);
    // The first tick is immediate: the first epoch comes one period after start.
    every.tick().await;
    loop {
        every.tick().await;
        let accessor = ztx_engine::Accessor {
            service: "por",
            principal: ztx_engine::Principal::Platform,
            request_id: 0,
            api_key: None,
            client_ip: None,
        };
        let now = state.now_ms();
        let work = reserves.publish(
            Some(&state.engine),
            &state.reads,
            &who,
            now,
            ztx_por::Variant::default(),
        );
        let clock = state.clock.clone();
        match ztx_api::accounting::accounted(&state.engine, accessor, move || clock(), work).await {
            Ok(Ok(published)) => tracing::info!(
                epoch = published.root.epoch(),
                root = %published.root.hex(),
                "published a proof-of-liabilities epoch"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot publish a proof-of-liabilities epoch"),
            Err(e) => tracing::warn!(error = %e, "cannot log the publication's store calls"),
        }
    }
}

/// Writes a line to stdout for the operator. A closed stdout (`ztx serve | head -1`) must
/// not bring the server down, so write errors are ignored where `println!` would panic.
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn print_welcome(site: &Site) {
    let dir = site.dir.display();
    say(&format!(
        "\nNo customers yet. Create the first one and an API key for it:\n\
         \n  ztx admin --data-dir {dir} customer create --email you@example.com\
         \n  ztx admin --data-dir {dir} api-key create --customer 1 --permissions read,trade\
         \n  ztx admin --data-dir {dir} faucet --customer 1 --asset USDT --amount 10000   # development deposit\n"
    ));
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
