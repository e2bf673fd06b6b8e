//! `ztx vault`: what customers' contact data is sealed under, and the rotation of the
//! key-encryption key. Rotation runs online, beside a serving `ztx serve`: it adds a
//! KEK version to the key file (the server picks it up before its next sealing), then
//! re-wraps every data key under it, a batch at a time, each key only if nobody
//! re-wrapped it meanwhile. The data the keys seal is not touched. Addresses stored in
//! the clear by an older release are sealed on the way.

use anyhow::{Context, Result};
use serde_json::json;

use ztx_api::operate;

use crate::Location;
use crate::admin::Route;
use crate::site::{Site, now_ms};

#[derive(Debug, clap::Args)]
pub struct VaultArgs {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    command: VaultCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VaultCommand {
    /// The KEK versions held, how many data keys each wraps, and how many addresses
    /// are still in the clear (exit status 0 either way).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Adds a KEK version (unless the versions come from the environment, where the
    /// operator adds it) and re-wraps every data key under the newest version.
    Rotate {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: VaultArgs) -> Result<()> {
    let site = Site::open(&args.location, false)?;
    let keys = site.contact_keys()?;
    let mut store = site.store()?;
    match args.command {
        VaultCommand::Status { json } => {
            let status = store.key_status().context("cannot read the key status")?;
            let current = keys.keks().versions().last().copied().unwrap_or(0);
            let stale: u64 = status
                .data_keys
                .iter()
                .chain(&status.secret_keys)
                .chain(&status.webhook_keys)
                .filter(|(v, _)| *v != current)
                .map(|(_, n)| n)
                .sum();
            if json {
                let by_version = |keys: &[(u32, u64)]| -> serde_json::Map<_, _> {
                    keys.iter()
                        .map(|(v, n)| (v.to_string(), json!(n)))
                        .collect()
                };
                println!(
                    "{}",
                    json!({
                        "kekVersions": keys.keks().versions(),
                        "currentVersion": current,
                        "dataKeysByVersion": by_version(&status.data_keys),
                        "apiKeyDataKeysByVersion": by_version(&status.secret_keys),
                        "webhookDataKeysByVersion": by_version(&status.webhook_keys),
                        "underOldVersions": stale,
                        "plainEmails": status.plain_emails,
                        "masterSealedSecrets": status.master_sealed_secrets,
                    })
                );
            } else {
                println!(
                    "key-encryption-key versions held: {:?} (current {current})",
                    keys.keks().versions()
                );
                for (version, n) in &status.data_keys {
                    println!("  version {version}: {n} customers' data keys");
                }
                for (version, n) in &status.secret_keys {
                    println!("  version {version}: {n} API keys' data keys");
                }
                for (version, n) in &status.webhook_keys {
                    println!("  version {version}: {n} webhooks' data keys");
                }
                println!("data keys under an older version: {stale}");
                println!("addresses not yet sealed: {}", status.plain_emails);
                println!(
                    "API secrets still under the master key: {}",
                    status.master_sealed_secrets
                );
            }
            Ok(())
        }
        VaultCommand::Rotate { json } => {
            // The rotation rewrites every customer's data key: logged before it starts,
            // by the running server or, with none, an engine of our own (the data
            // directory's lock held until the rotation ends, so no server starts).
            let _lock = match crate::admin::route(&site)? {
                Route::Local(lock) => {
                    crate::admin::locally(&site, async |engine, _, _, who| {
                        operate::record_operator_tool(
                            Some(engine),
                            who,
                            operate::VAULT_ROTATE,
                            now_ms(),
                        )
                        .await
                    })?;
                    Some(lock)
                }
                Route::Server(client) => {
                    let answer =
                        crate::admin::ask_server(&client, "/ztx/admin/v1/vault/rotate", &json!({}))
                            .context("the server did not log the rotation, so it did not start")?;
                    if answer.get("logged") != Some(&json!(true)) {
                        eprintln!(
                            "the running server keeps no audit log (it was started \
                             --unaudited-benchmark-only): the rotation is not logged"
                        );
                    }
                    None
                }
            };
            let added = if keys.has_key_file() {
                Some(keys.add_kek_version().context("cannot add a key version")?)
            } else {
                None
            };
            let master = site.master_key()?;
            let done = ztx_api::contacts::rotate(&mut *store, &keys, &master)
                .context("the rotation stopped (run it again to finish)")?;
            if json {
                println!(
                    "{}",
                    json!({ "addedVersion": added, "currentVersion": done.current_version,
                            "rewrapped": done.rewrapped, "sealedAddresses": done.sealed_addresses,
                            "rewrappedApiKeys": done.rewrapped_secret_keys,
                            "resealedSecrets": done.resealed_secrets,
                            "rewrappedWebhooks": done.rewrapped_webhook_keys })
                );
            } else {
                match added {
                    Some(v) => println!("added key-encryption-key version {v}"),
                    None => println!("versions come from the environment; none added"),
                }
                println!(
                    "re-wrapped {} data keys under version {}",
                    done.rewrapped, done.current_version
                );
                println!(
                    "sealed {} addresses stored in the clear",
                    done.sealed_addresses
                );
                println!(
                    "re-wrapped {} API keys' data keys; moved {} secrets off the master key",
                    done.rewrapped_secret_keys, done.resealed_secrets
                );
                println!(
                    "re-wrapped {} webhooks' data keys",
                    done.rewrapped_webhook_keys
                );
            }
            Ok(())
        }
    }
}
