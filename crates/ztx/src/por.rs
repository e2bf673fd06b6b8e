//! `ztx por`: proof of liabilities. `publish` builds the next epoch from a snapshot of
//! the ledger and logs its root (through the running server's admin API, or beside an
//! engine of our own when none runs); `proof` writes a customer's inclusion proof from
//! the epoch kept in the data directory; `verify` checks a proof file against a
//! published root, offline, trusting nothing of the platform's.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use serde_json::json;
use ztx_api::reserves::{Reserves, published_json};
use ztx_por::{Proof, TreeConfig, Variant, ZkCap};

use crate::Location;
use crate::admin::{Route, ask_server_within, locally, route};
use crate::site::{Site, now_ms};

/// How long `ztx por publish` waits for the server to build and publish an epoch: about
/// half a minute for a million customers, minutes for tens of millions.
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

#[derive(Debug, clap::Args)]
pub struct PorArgs {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    command: PorCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PorCommand {
    /// Builds the next epoch from a snapshot of the ledger (trading goes on), logs its
    /// root in the audit log, and prints the epoch and the root.
    Publish {
        #[arg(long)]
        json: bool,
        /// Publish sums in the clear (totals, and the sums beside each path) instead of
        /// the zero-knowledge default.
        #[arg(long)]
        plain: bool,
    },
    /// Writes a customer's inclusion proof of the latest (or the given) epoch, and,
    /// when the epoch publishes a cap, the cap beside it (`<out>.cap`).
    Proof {
        #[arg(long)]
        customer: u64,
        #[arg(long)]
        epoch: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Checks a proof file against a published root (hex); exit status 0 only when it
    /// is valid, printing the balances it proves.
    Verify {
        file: PathBuf,
        #[arg(long)]
        root: String,
        /// The epoch's cap (its canonical bytes, as `ztx por proof` and `ztx wallet`
        /// write them beside the proof): needed for a capped proof (versions 3 and 4), and
        /// itself checked against the root. Default: `<file>.cap`, when there is one.
        #[arg(long)]
        cap: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: PorArgs) -> Result<()> {
    match args.command {
        PorCommand::Verify {
            file,
            root,
            cap,
            json,
        } => verify(&file, &root, cap.as_deref(), json),
        PorCommand::Publish { json, plain } => {
            let variant = if plain {
                Variant::Plain
            } else {
                Variant::ZeroKnowledge
            };
            let site = Site::open(&args.location, false)?;
            let answer = match route(&site)? {
                Route::Local(_lock) => locally(&site, async |engine, pool, master, who| {
                    let reserves = Reserves::new(
                        &site.dir,
                        std::sync::Arc::new(master.clone()),
                        TreeConfig::default(),
                    )
                    .with_progress(progress_bar);
                    let published = reserves
                        .publish(Some(engine), pool, who, now_ms(), variant)
                        .await?;
                    Ok(published_json(&published))
                })?,
                Route::Server(client) => ask_server_within(
                    &client.with_max_body(crate::fetch::POR_MAX_BODY),
                    "/ztx/admin/v1/por/publish",
                    &json!({ "plain": plain }),
                    PUBLISH_TIMEOUT,
                )?,
            };
            if json {
                println!("{answer}");
            } else {
                let field = |name| answer.get(name).cloned().unwrap_or_default();
                println!(
                    "epoch {} root {}",
                    field("epoch"),
                    field("root").as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        PorCommand::Proof {
            customer,
            epoch,
            out,
        } => {
            let site = Site::open(&args.location, false)?;
            let reserves = Reserves::new(&site.dir, site.master_key()?, TreeConfig::default());
            let proof = reserves
                .proof(customer, epoch)
                .map_err(|e| anyhow!("{e}"))?;
            let bytes = proof.encode().map_err(|e| anyhow!("{e}"))?;
            std::fs::write(&out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "wrote customer {customer}'s proof of epoch {} to {}",
                proof.epoch(),
                out.display()
            );
            let root = reserves
                .tree(Some(proof.epoch()))
                .map_err(|e| anyhow!("{e}"))?
                .root();
            if let Some(cap) = root.cap() {
                let path = write_cap_beside(&out, cap)?;
                println!("wrote the epoch's cap to {}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes the epoch's cap beside a proof written to `proof`, as `<proof>.cap`.
pub(crate) fn write_cap_beside(proof: &std::path::Path, cap: &ZkCap) -> Result<PathBuf> {
    let path = cap_path(proof);
    let bytes = cap.encode().map_err(|e| anyhow!("{e}"))?;
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Where a proof's epoch cap is kept beside it: `<proof>.cap`.
fn cap_path(proof: &std::path::Path) -> PathBuf {
    let mut path = proof.as_os_str().to_owned();
    path.push(".cap");
    PathBuf::from(path)
}

fn verify(
    file: &std::path::Path,
    root: &str,
    cap: Option<&std::path::Path>,
    as_json: bool,
) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let proof =
        Proof::decode(&bytes).map_err(|e| anyhow!("{} is not a proof: {e}", file.display()))?;
    let mut published = [0u8; 32];
    hex::decode_to_slice(root.trim(), &mut published)
        .map_err(|e| anyhow!("--root is not a 64-digit hex root: {e}"))?;
    let beside = cap_path(file);
    let cap = match cap.or_else(|| beside.exists().then_some(beside.as_path())) {
        None => None,
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                ZkCap::decode(&bytes)
                    .map_err(|e| anyhow!("{} is not a cap: {e}", path.display()))?,
            )
        }
    };
    let proven = ztx_por::verify_proof(&proof, &published, cap.as_ref())
        .map_err(|e| anyhow!("the proof is invalid: {e}"))?;
    if as_json {
        println!(
            "{}",
            json!({ "valid": true, "variant": proven.variant.name(), "epoch": proven.epoch,
                    "customer": proven.customer, "balances": balances_json(&proven) })
        );
    } else {
        println!(
            "valid: customer {}'s balances in epoch {} are counted in root {} ({})",
            proven.customer,
            proven.epoch,
            root.trim(),
            proven.variant.name()
        );
        for (asset, amount) in &proven.balances {
            println!("  {asset}: {amount} (smallest units)");
        }
    }
    Ok(())
}

/// A progress bar on standard error while a tree is built, when a person watches it.
fn progress_bar(done: u8, of: u8) {
    use std::io::{IsTerminal as _, Write as _};
    let mut err = std::io::stderr();
    if !err.is_terminal() || of == 0 {
        return;
    }
    const WIDTH: usize = 30;
    let filled = WIDTH * usize::from(done) / usize::from(of);
    let _ = write!(
        err,
        "\rbuilding the tree [{}{}] level {done}/{of}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    );
    if done == of {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

/// A proof's balances as JSON: asset to amount in smallest units, as a string.
pub(crate) fn balances_json(
    proven: &ztx_por::Proven,
) -> serde_json::Map<String, serde_json::Value> {
    proven
        .balances
        .iter()
        .map(|(asset, amount)| (asset.clone(), json!(amount.to_string())))
        .collect()
}
