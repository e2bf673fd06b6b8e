//! `ztx audit checkpoint` and `ztx audit inclusion`: a customer's check of a running
//! server's log. The first run pins the log's key and checkpoint in a state file; every
//! later run takes the server's newest checkpoint only if a consistency proof shows it
//! extends the pinned one, and otherwise exits non-zero with the state file untouched.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ztx_audit::{Hash, VerifierKey, Witness, answers};

use crate::fetch::Client;

const KEY: &str = "/ztx/v1/audit/key";
const CHECKPOINT: &str = "/ztx/v1/audit/checkpoint";

#[derive(Debug, clap::Args)]
pub struct CheckpointArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: String,
    /// The file that keeps the log's key and the last checkpoint accepted.
    #[arg(long)]
    state: PathBuf,
    /// The log's public key (as `ztx audit public-key` prints it), or a file holding it:
    /// pinned on first use, and it must be the pinned key on later runs.
    #[arg(long)]
    public_key: Option<String>,
    /// On first use without --public-key, pin whatever key the server publishes.
    #[arg(long, conflicts_with = "public_key")]
    trust_on_first_use: bool,
}

#[derive(Debug, clap::Args)]
pub struct InclusionArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: String,
    /// The state file `ztx audit checkpoint` keeps; the proof is checked against its
    /// checkpoint.
    #[arg(long)]
    state: PathBuf,
    /// The entry's index in the log.
    #[arg(long)]
    index: u64,
    /// The entry's leaf hash (hex) if known; the proof must then be for this leaf.
    #[arg(long)]
    leaf: Option<String>,
}

pub fn checkpoint(args: &CheckpointArgs) -> Result<()> {
    let client = Client::new(&args.server)?;
    match load(&args.state)? {
        None => pin(&client, args),
        Some(witness) => advance(&client, args, witness),
    }
}

/// First use: pin the key (given, or the server's if asked to) and the checkpoint.
fn pin(client: &Client, args: &CheckpointArgs) -> Result<()> {
    let key = match (&args.public_key, args.trust_on_first_use) {
        (Some(key), _) => super::read_public_key(key)?,
        (None, true) => {
            let text = client.get(KEY)?;
            VerifierKey::parse(text.trim()).context("the key the server publishes is not valid")?
        }
        (None, false) => bail!(
            "no state at {} yet: give the log's public key with --public-key, or pin the \
             server's own with --trust-on-first-use",
            args.state.display()
        ),
    };
    let note = client.get(CHECKPOINT)?;
    let witness = Witness::new(key, &note).context("refused the server's checkpoint")?;
    write_atomically(&args.state, &witness.to_state())?;
    let latest = witness.latest();
    println!(
        "pinned log {} (key {}) at its checkpoint of {} entries, root {}",
        latest.origin,
        witness.key(),
        latest.size,
        latest.root
    );
    Ok(())
}

/// A later run: accept the server's checkpoint only as a proven extension.
fn advance(client: &Client, args: &CheckpointArgs, mut witness: Witness) -> Result<()> {
    let unchanged = || format!("refused; {} is unchanged", args.state.display());
    if let Some(given) = &args.public_key {
        let given = super::read_public_key(given)?;
        if given != *witness.key() {
            bail!(
                "{} pins key {}, not the given {given}; a log's key does not change \
                 (if it really did, start a new state file)",
                args.state.display(),
                witness.key()
            );
        }
    }
    let before = witness.latest().clone();
    let note = client.get(CHECKPOINT).with_context(unchanged)?;
    let next = witness.open(&note).with_context(unchanged)?;
    let proof = match witness.proof_needed(&next) {
        None => Vec::new(),
        Some((from, to)) => {
            let text = client
                .get(&format!("/ztx/v1/audit/consistency?from={from}&to={to}"))
                .with_context(unchanged)?;
            answers::consistency(&text, from, to)
                .context("the server's consistency proof is unreadable")
                .with_context(unchanged)?
        }
    };
    let accepted = witness.accept(&note, &proof).with_context(unchanged)?;
    if accepted.size == before.size {
        println!(
            "ok: the log still has {} entries, root {}",
            accepted.size, accepted.root
        );
        return Ok(());
    }
    write_atomically(&args.state, &witness.to_state())?;
    println!(
        "ok: the log grew from {} to {} entries, proven an extension; now trusting root {}",
        before.size, accepted.size, accepted.root
    );
    Ok(())
}

pub fn inclusion(args: &InclusionArgs) -> Result<()> {
    let witness = load(&args.state)?.ok_or_else(|| {
        anyhow!(
            "no state at {}: run `ztx audit checkpoint` first",
            args.state.display()
        )
    })?;
    let want = match &args.leaf {
        Some(text) => Some(
            Hash::from_hex(text.trim())
                .ok_or_else(|| anyhow!("--leaf is not a hex SHA-256 hash"))?,
        ),
        None => None,
    };
    let size = witness.latest().size;
    let index = args.index;
    let client = Client::new(&args.server)?;
    let leaf = included(&client, &witness, index, want)?;
    println!(
        "ok: entry {index} (leaf {leaf}) is in the log of {size} entries the pinned checkpoint signed"
    );
    Ok(())
}

/// Checks with the server's inclusion proof that entry `index` (leaf `want`, if known)
/// is in the log of the witness's pinned checkpoint; answers the entry's leaf.
pub(crate) fn included(
    client: &Client,
    witness: &Witness,
    index: u64,
    want: Option<Hash>,
) -> Result<Hash> {
    let size = witness.latest().size;
    if index >= size {
        bail!(
            "entry {index} is not under the pinned checkpoint of {size} entries; \
             `ztx audit checkpoint` moves it forward"
        );
    }
    let text = client.get(&format!(
        "/ztx/v1/audit/inclusion?index={index}&size={size}"
    ))?;
    let answer = answers::inclusion(&text, index, size)
        .context("the server's inclusion proof is unreadable")?;
    if let Some(want) = want
        && want != answer.leaf
    {
        bail!(
            "the server says entry {index} is leaf {}, not {want}",
            answer.leaf
        );
    }
    witness
        .check_inclusion(index, &answer.leaf, &answer.proof)
        .context("refused the server's inclusion proof")?;
    Ok(answer.leaf)
}

/// The witness kept at `path`, or none if there is no file yet.
pub(crate) fn load(path: &Path) -> Result<Option<Witness>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Witness::from_state(&text)
        .map(Some)
        .with_context(|| format!("{} is not a witness state", path.display()))
}

/// Replaces `path` with `text` so that a crash leaves the old file or the new, never a
/// mix: a new file beside it, synced, then renamed over it.
pub(super) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| -> std::io::Result<()> {
        let mut file = File::options().write(true).create_new(true).open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    // The rename is durable once the directory is; not every system lets one sync it.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
