//! `ztx vault`: what customers' contact data is sealed under, and the rotation of the
//! key-encryption key. Rotation runs online, beside a serving `ztx serve`: it adds a
//! KEK version to the key file (the server picks it up before its next sealing), then
//! re-wraps every data key under it, a batch at a time, each key only if nobody
//! re-wrapped it meanwhile. The data the keys seal is not touched. Addresses stored in
//! the clear by an older release are sealed on the way.

use anyhow::{Context, Result};
use serde_json::json;
use ztx_core::CustomerId;
use ztx_store::SealedEmailRow;

use crate::Location;
use crate::site::Site;

/// Data keys read per batch.
const BATCH: u32 = 1_000;

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
                .filter(|(v, _)| *v != current)
                .map(|(_, n)| n)
                .sum();
            if json {
                let by_version: serde_json::Map<_, _> = status
                    .data_keys
                    .iter()
                    .map(|(v, n)| (v.to_string(), json!(n)))
                    .collect();
                println!(
                    "{}",
                    json!({
                        "kekVersions": keys.keks().versions(),
                        "currentVersion": current,
                        "dataKeysByVersion": by_version,
                        "underOldVersions": stale,
                        "plainEmails": status.plain_emails,
                    })
                );
            } else {
                println!(
                    "key-encryption-key versions held: {:?} (current {current})",
                    keys.keks().versions()
                );
                for (version, n) in &status.data_keys {
                    println!("  version {version}: {n} data keys");
                }
                println!("data keys under an older version: {stale}");
                println!("addresses not yet sealed: {}", status.plain_emails);
            }
            Ok(())
        }
        VaultCommand::Rotate { json } => {
            let added = if keys.has_key_file() {
                Some(keys.add_kek_version().context("cannot add a key version")?)
            } else {
                None
            };
            let current = keys.keks().versions().last().copied().unwrap_or(0);
            let mut rewrapped = 0u64;
            let mut after = CustomerId(0);
            loop {
                let batch = store
                    .customer_keys(after, current, BATCH)
                    .context("cannot read data keys")?;
                let Some(last) = batch.last() else { break };
                after = last.customer;
                for row in &batch {
                    let wrapped = ztx_vault::envelope::WrappedKey {
                        kek_version: row.kek_version,
                        sealed: row.data_key.clone(),
                    };
                    let Some(new) = keys.rewrap(row.customer.0, &wrapped).with_context(|| {
                        format!("cannot unwrap customer {}'s data key", row.customer.0)
                    })?
                    else {
                        continue;
                    };
                    if store
                        .rewrap_customer_key(
                            row.customer,
                            row.kek_version,
                            new.kek_version,
                            &new.sealed,
                        )
                        .context("cannot store a re-wrapped key")?
                    {
                        rewrapped += 1;
                    }
                }
            }
            let mut sealed = 0u64;
            loop {
                let plain = store.plain_emails(BATCH).context("cannot read addresses")?;
                if plain.is_empty() {
                    break;
                }
                for (customer, email) in plain {
                    let row = keys
                        .seal_email(customer.0, &email)
                        .context("cannot seal an address")?;
                    let row = SealedEmailRow {
                        sealed: row.sealed,
                        kek_version: row.key.kek_version,
                        data_key: row.key.sealed,
                    };
                    if store
                        .seal_plain_email(customer, &keys.email_index(&email), &row)
                        .context("cannot store a sealed address")?
                    {
                        sealed += 1;
                    }
                }
            }
            if json {
                println!(
                    "{}",
                    json!({ "addedVersion": added, "currentVersion": current,
                            "rewrapped": rewrapped, "sealedAddresses": sealed })
                );
            } else {
                match added {
                    Some(v) => println!("added key-encryption-key version {v}"),
                    None => println!("versions come from the environment; none added"),
                }
                println!("re-wrapped {rewrapped} data keys under version {current}");
                println!("sealed {sealed} addresses stored in the clear");
            }
            Ok(())
        }
    }
}
