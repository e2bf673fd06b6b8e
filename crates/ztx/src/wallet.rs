//! `ztx wallet`: the customer's side, with their own API key. `wallet proof` fetches
//! the customer's proof of liabilities over the signed API, checks it offline against
//! the root the server publishes for that epoch, and keeps it; the root it printed is
//! the one to look for among the publications in the audit log (`ztx audit
//! export`/`verify`), which is how a customer sees that everyone was shown that root.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use zeroize::Zeroizing;
use ztx_por::{Proof, ZkCap, verify_proof};

use crate::fetch::Client;
use crate::site::now_ms;

#[derive(Debug, clap::Args)]
pub struct WalletArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: String,
    /// The API key (as `ztx admin api-key create` printed it).
    #[arg(long)]
    api_key: String,
    /// A file holding the key's HMAC secret (never given on the command line).
    #[arg(long)]
    secret_file: PathBuf,
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WalletCommand {
    /// Fetch my proof of liabilities of the latest (or the given) epoch, check it
    /// against the epoch's published root, and write it to a file; exit 0 only if it
    /// verifies, printing the balances it proves.
    Proof {
        /// My customer number: the proof must be mine.
        #[arg(long)]
        customer: Option<u64>,
        #[arg(long)]
        epoch: Option<u64>,
        /// The state file `ztx audit checkpoint` keeps: the root must then be the one
        /// the audit log's publication entry shows everyone, proven included under the
        /// pinned checkpoint.
        #[arg(long)]
        audit_state: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: WalletArgs) -> Result<()> {
    let secret = read_secret(&args.secret_file)?;
    let client = Client::new(&args.server)?;
    match args.command {
        WalletCommand::Proof {
            customer,
            epoch,
            audit_state,
            out,
            json,
        } => {
            let query = epoch.map(|e| format!("epoch={e}")).unwrap_or_default();
            let answer = signed_get(&client, "/ztx/v1/por/proof", &query, &args.api_key, &secret)?;
            let bytes = hex::decode(field(&answer, "proof")?.as_str().unwrap_or_default())
                .context("the server's proof is not hex")?;
            let proof = Proof::decode(&bytes).context("the server's proof is unreadable")?;
            if let Some(mine) = customer
                && proof.customer() != mine
            {
                bail!(
                    "the server's proof is customer {}'s, not mine ({mine})",
                    proof.customer()
                );
            }
            if let Some(asked) = epoch
                && proof.epoch() != asked
            {
                bail!(
                    "the server's proof is of epoch {}, not {asked}",
                    proof.epoch()
                );
            }
            // The root of the proof's own epoch, as published to everyone.
            let roots = Client::new(&args.server)?.with_max_body(crate::fetch::POR_MAX_BODY);
            let root_answer = roots.get(&format!("/ztx/v1/por/root?epoch={}", proof.epoch()))?;
            let root_answer: Value =
                serde_json::from_str(&root_answer).context("the server's root is not JSON")?;
            let mut root = [0u8; 32];
            hex::decode_to_slice(
                field(&root_answer, "root")?.as_str().unwrap_or_default(),
                &mut root,
            )
            .map_err(|e| anyhow!("the server's root is not a 64-digit hex hash: {e}"))?;
            let root_hex = hex::encode(root);
            // A capped epoch's cap, checked against the root with the proof.
            let cap = match root_answer.get("cap") {
                None | Some(Value::Null) => None,
                Some(cap) => Some(
                    hex::decode(cap.as_str().unwrap_or_default())
                        .map_err(|e| anyhow!("the server's cap is not hex: {e}"))
                        .and_then(|bytes| {
                            ZkCap::decode(&bytes)
                                .map_err(|e| anyhow!("the server's cap is unreadable: {e}"))
                        })?,
                ),
            };
            let proven = verify_proof(&proof, &root, cap.as_ref())
                .map_err(|e| anyhow!("the server's proof does not verify: {e}"))?;
            let published = Claims::of_root(&root_answer)?;
            published.agree(&proven, "the server's root")?;
            let logged = match &audit_state {
                Some(state) => Some(in_the_log(
                    &client,
                    state,
                    &root_answer,
                    &root_hex,
                    &proven,
                )?),
                None => None,
            };
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let cap_file = cap
                .as_ref()
                .map(|cap| crate::por::write_cap_beside(&out, cap))
                .transpose()?
                .map(|path| path.display().to_string());
            if json {
                println!(
                    "{}",
                    json!({ "valid": true, "variant": proven.variant.name(),
                            "epoch": proven.epoch, "customer": proven.customer,
                            "root": root_hex, "balances": crate::por::balances_json(&proven), "log_index": logged,
                            "file": out.display().to_string(), "cap_file": cap_file })
                );
            } else {
                println!(
                    "valid: customer {}'s balances in epoch {} are counted in root {root_hex} \
                     ({}); proof kept in {}",
                    proven.customer,
                    proven.epoch,
                    proven.variant.name(),
                    out.display()
                );
                for (asset, amount) in &proven.balances {
                    println!("  {asset}: {amount} (smallest units)");
                }
                if let Some(path) = &cap_file {
                    println!("the epoch's cap, which the proof is checked under, kept in {path}");
                }
                match logged {
                    Some(index) => println!(
                        "the root is the audit log's entry {index}, proven under the pinned checkpoint"
                    ),
                    None => println!(
                        "check that this root is the epoch's publication in the audit log \
                         (--audit-state, or ztx audit export and verify)"
                    ),
                }
            }
            Ok(())
        }
    }
}

/// What a publication says of its epoch, from the server's root or the log's entry:
/// the variant, epoch, assets and, for the plain variant, the totals.
#[derive(Debug, PartialEq, Eq)]
struct Claims {
    variant: String,
    epoch: String,
    assets: String,
    totals: Option<String>,
}

impl Claims {
    fn of_root(root: &Value) -> Result<Claims> {
        let text = |name: &str| -> Result<String> {
            let v = field(root, name)?;
            Ok(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        let list = |name: &str| {
            root.get(name).and_then(Value::as_array).map(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(",")
            })
        };
        Ok(Claims {
            variant: text("variant")?,
            epoch: text("epoch")?,
            assets: list("assets").ok_or_else(|| anyhow!("the server's root names no assets"))?,
            totals: list("totals"),
        })
    }

    fn of_entry(entry: &ztx_audit::Entry) -> Claims {
        let said =
            |name: &str| ztx_api::reserves::publication_param(entry, name).unwrap_or_default();
        Claims {
            variant: said("variant"),
            epoch: said("epoch"),
            assets: said("assets"),
            totals: ztx_api::reserves::publication_param(entry, "totals"),
        }
    }

    /// Refuses a proof that proves another variant, epoch, assets or totals than
    /// `whose` publication says.
    fn agree(&self, proven: &ztx_por::Proven, whose: &str) -> Result<()> {
        let mine = Claims {
            variant: proven.variant.name().to_owned(),
            epoch: proven.epoch.to_string(),
            assets: proven
                .balances
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            totals: proven
                .totals
                .as_ref()
                .map(|t| t.iter().map(u128::to_string).collect::<Vec<_>>().join(",")),
        };
        if *self != mine {
            bail!("{whose} says {self:?}, the proof proves {mine:?}");
        }
        Ok(())
    }
}

/// Checks that `root_hex` is what the audit log published for the proof's epoch: the
/// entry the server points to decodes as that publication (root, epoch, variant,
/// assets, and totals where published), and is proven included under the checkpoint
/// pinned in `state`. Answers the entry's index.
fn in_the_log(
    client: &Client,
    state: &std::path::Path,
    root_answer: &Value,
    root_hex: &str,
    proven: &ztx_por::Proven,
) -> Result<u64> {
    let witness = crate::audit::online::load(state)?.ok_or_else(|| {
        anyhow!(
            "no state at {}: run `ztx audit checkpoint` first",
            state.display()
        )
    })?;
    let log =
        field(root_answer, "log").context("the server does not say where the root was logged")?;
    let index = field(log, "index")?
        .as_u64()
        .ok_or_else(|| anyhow!("the publication's index is not a number"))?;
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        field(log, "entry")?.as_str().unwrap_or_default(),
    )
    .context("the publication entry is not base64")?;
    let entry = ztx_audit::Entry::decode(&bytes)
        .map_err(|e| anyhow!("the publication entry is unreadable: {e}"))?;
    if entry.kind != ztx_audit::Kind::Publication
        || ztx_api::reserves::publication_param(&entry, "root").as_deref() != Some(root_hex)
    {
        bail!(
            "the log's entry {index} is not the publication of root {root_hex} for epoch {}",
            proven.epoch
        );
    }
    Claims::of_entry(&entry).agree(proven, &format!("the log's entry {index}"))?;
    crate::audit::online::included(client, &witness, index, Some(ztx_audit::Hash::leaf(&bytes)))
        .context("the root's publication is not proven in the audit log")?;
    Ok(index)
}

/// A GET signed as Binance signs: HMAC-SHA256 of the query with a timestamp.
fn signed_get(
    client: &Client,
    path: &str,
    query: &str,
    api_key: &str,
    secret: &[u8],
) -> Result<Value> {
    let mut q = query.to_owned();
    if !q.is_empty() {
        q.push('&');
    }
    q.push_str(&format!("timestamp={}", now_ms()));
    let signature = ztx_api::HmacSecret::new(secret.to_vec()).sign_hex(q.as_bytes());
    let text = client.get_with(
        &format!("{path}?{q}&signature={signature}"),
        &[("x-mbx-apikey", api_key)],
    )?;
    serde_json::from_str(&text).with_context(|| format!("the answer of {path} is not JSON"))
}

fn field<'a>(answer: &'a Value, name: &str) -> Result<&'a Value> {
    answer
        .get(name)
        .ok_or_else(|| anyhow!("the server's answer has no {name:?}"))
}

/// The secret from its file, without the line's end; refused if empty.
fn read_secret(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>> {
    let mut text = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    while text.last().is_some_and(u8::is_ascii_whitespace) {
        text.pop();
    }
    if text.is_empty() {
        bail!("{} holds no secret", path.display());
    }
    Ok(text)
}
