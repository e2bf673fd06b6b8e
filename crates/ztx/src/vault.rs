//! `ztx vault`: what customers' contact data is sealed under, and the rotation of the
//! key-encryption key. Rotation runs online, beside a serving `ztx serve`: it adds a
//! KEK version to the key file (the server picks it up before its next sealing), then
//! re-wraps every data key under it, a batch at a time, each key only if nobody
//! re-wrapped it meanwhile. The data the keys seal is not touched. Addresses stored in
//! the clear by an older release are sealed on the way.

use anyhow::{Context, Result};
use serde_json::json;

use crate::Location;
use crate::site::Site;

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
            let done = ztx_api::contacts::rotate(&mut *store, &keys)
                .context("the rotation stopped (run it again to finish)")?;
            if json {
                println!(
                    "{}",
                    json!({ "addedVersion": added, "currentVersion": done.current_version,
                            "rewrapped": done.rewrapped, "sealedAddresses": done.sealed_addresses })
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
            }
            Ok(())
        }
    }
}
