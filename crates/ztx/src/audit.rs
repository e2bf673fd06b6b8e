//! `ztx audit`: the log's public key, an export of the log with its checkpoints, and the
//! offline check of an export that anyone can run with only the public key; and
//! (`online`) the check of a running server's checkpoints and proofs.

pub(crate) mod online;

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ztx_audit::export::{self, ExportWriter};
use ztx_audit::{Checkpoint, VerifierKey};

use crate::Location;
use crate::site::Site;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Print the key the log's checkpoints are signed with.
    PublicKey {
        #[command(flatten)]
        location: Location,
    },
    /// Write the whole log, with every checkpoint, to a file.
    Export {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an export offline: exit 0 only if it is intact, signed by KEY, and extends
    /// the trusted checkpoint; otherwise name the first bad entry.
    Verify {
        file: PathBuf,
        /// The log's public key (as `ztx audit public-key` prints it), or a file holding it.
        #[arg(long)]
        public_key: String,
        /// A checkpoint seen before (a signed note); the export must extend it.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// After a successful check, remember the export's newest checkpoint in the
        /// trusted-checkpoint file.
        #[arg(long, requires = "trusted_checkpoint")]
        update: bool,
    },
    /// Fetch a server's newest checkpoint; pin it on first use, and later accept it only
    /// if the server proves it extends the one pinned (a fork or rollback exits non-zero
    /// and leaves the state file as it was).
    Checkpoint(online::CheckpointArgs),
    /// Fetch and check an entry's inclusion proof against the pinned checkpoint.
    Inclusion(online::InclusionArgs),
}

pub fn run(args: AuditArgs) -> Result<()> {
    match args.command {
        AuditCommand::PublicKey { location } => {
            let site = Site::open(&location, false)?;
            let key = site.audit_key(&*site.master_key()?)?;
            println!("{}", key.verifier());
            Ok(())
        }
        AuditCommand::Export { location, out } => export_log(&location, &out),
        AuditCommand::Verify {
            file,
            public_key,
            trusted_checkpoint,
            update,
        } => verify(&file, &public_key, trusted_checkpoint.as_deref(), update),
        AuditCommand::Checkpoint(args) => online::checkpoint(&args),
        AuditCommand::Inclusion(args) => online::inclusion(&args),
    }
}

/// How many rows one read takes.
const PAGE: u32 = 10_000;

fn export_log(location: &Location, out: &Path) -> Result<()> {
    let site = Site::open(location, false)?;
    let key = site.audit_key(&*site.master_key()?)?;
    let mut store = site.store()?;
    let size = store.audit_size().context("cannot read the audit log")?;
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = ExportWriter::new(BufWriter::new(file), key.name(), size)?;
    let mut after = 0;
    loop {
        let page = store.audit_checkpoints(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.size;
        // All of them: one past the entries is the evidence of a cut log.
        for c in &page {
            writer.checkpoint(&c.note)?;
        }
    }
    let mut next = 0;
    while next < size {
        let rows = store.audit_entries(next, PAGE)?;
        if rows.is_empty() {
            bail!("the audit log ends at entry {next}, before its size {size}");
        }
        for row in rows.iter().take_while(|r| r.index < size) {
            writer.entry(row.index, &row.leaf, &row.entry)?;
            next = row.index + 1;
        }
    }
    writer
        .finish()
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("exported {size} entries to {}", out.display());
    Ok(())
}

/// A public key given on the command line: the key itself, or a file holding it.
fn read_public_key(public_key: &str) -> Result<VerifierKey> {
    let key_text = match std::fs::read_to_string(public_key) {
        Ok(text) => text,
        Err(_) => public_key.to_string(),
    };
    VerifierKey::parse(key_text.trim()).context("the public key is not valid")
}

/// Refuses a log that publishes two proof-of-liabilities roots for one epoch: the
/// platform showing different customers different roots, each of them in the log.
fn one_root_per_epoch(file: &Path) -> Result<()> {
    use std::io::BufRead as _;
    let reader = BufReader::new(
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut seen: std::collections::HashMap<String, (u64, String)> =
        std::collections::HashMap::new();
    for line in reader.lines() {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let (Some(index), Some(entry)) = (
            value.get("index").and_then(serde_json::Value::as_u64),
            value.get("entry").and_then(serde_json::Value::as_str),
        ) else {
            continue;
        };
        // The export was verified just before: every entry decodes.
        let Some(entry) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, entry)
            .ok()
            .and_then(|bytes| ztx_audit::Entry::decode(&bytes).ok())
        else {
            continue;
        };
        if entry.kind != ztx_audit::Kind::Publication {
            continue;
        }
        let param = |name| ztx_api::reserves::publication_param(&entry, name);
        let (Some(epoch), Some(root)) = (param("epoch"), param("root")) else {
            bail!("entry {index} is a publication without one epoch and one root");
        };
        if let Some((first, earlier)) = seen.get(&epoch)
            && *earlier != root
        {
            bail!(
                "entries {first} and {index} publish two roots for proof-of-liabilities \
                 epoch {epoch}: {earlier} and {root}"
            );
        }
        seen.entry(epoch).or_insert((index, root));
    }
    Ok(())
}

fn verify(file: &Path, public_key: &str, trusted: Option<&Path>, update: bool) -> Result<()> {
    let key = read_public_key(public_key)?;
    let trusted_checkpoint = match trusted {
        Some(path) if path.exists() => {
            let note = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let c = Checkpoint::open(&note, &key).with_context(|| {
                format!("the trusted checkpoint {} is not valid", path.display())
            })?;
            Some(c)
        }
        // Nothing seen yet: trust on first use, if asked to remember.
        Some(path) if update => {
            eprintln!("no trusted checkpoint at {} yet", path.display());
            None
        }
        Some(path) => bail!("cannot read {}", path.display()),
        None => None,
    };
    let reader = BufReader::new(
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let verified = export::verify(reader, &key, trusted_checkpoint.as_ref())
        .with_context(|| format!("{} is not an intact log", file.display()))?;
    one_root_per_epoch(file)?;
    println!(
        "ok: {} entries, root {}, {} checkpoints verified",
        verified.size, verified.root, verified.checkpoints
    );
    if let (Some(path), true, Some((latest, note))) = (trusted, update, &verified.latest) {
        online::write_atomically(path, note)?;
        println!("now trusting the checkpoint at size {}", latest.size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test")]

    use super::*;

    fn publication(epoch: u64, root: &str) -> String {
        let entry = ztx_audit::Entry {
            prev: ztx_audit::Hash::ZERO,
            time_ms: 1,
            kind: ztx_audit::Kind::Publication,
            request_id: 0,
            customer: None,
            api_key: None,
            operator: Some("op".into()),
            client_ip: None,
            action: "por publish".into(),
            params: vec![
                ("epoch".into(), epoch.to_string().into()),
                ("root".into(), root.into()),
            ],
            outcome: ztx_audit::Outcome::Success,
            denial: None,
            code: None,
        };
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            entry.encode().unwrap(),
        )
    }

    /// The platform shows two customers two roots of one epoch, both logged: the
    /// offline check of the log names the two entries.
    #[test]
    fn two_roots_published_for_one_epoch_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("export.jsonl");
        let lines = |roots: &[(u64, &str)]| {
            roots
                .iter()
                .enumerate()
                .map(|(i, (epoch, root))| {
                    format!(
                        "{{\"index\":{i},\"leaf\":\"00\",\"entry\":\"{}\"}}\n",
                        publication(*epoch, root)
                    )
                })
                .collect::<String>()
        };
        std::fs::write(&file, lines(&[(1, "aa"), (2, "bb"), (1, "aa")])).unwrap();
        one_root_per_epoch(&file).unwrap();
        std::fs::write(&file, lines(&[(1, "aa"), (2, "bb"), (1, "cc")])).unwrap();
        let refused = one_root_per_epoch(&file).unwrap_err().to_string();
        assert!(
            refused.contains("entries 0 and 2 publish two roots"),
            "{refused}"
        );
    }
}
