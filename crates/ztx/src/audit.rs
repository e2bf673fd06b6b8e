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
    /// Write the log, or a range of it, with its checkpoints, to a file: every entry up
    /// to the newest checkpoint (entries no checkpoint signs yet prove nothing; the log
    /// signs them within a second).
    Export {
        #[command(flatten)]
        location: Location,
        #[arg(long)]
        out: PathBuf,
        /// The first entry to export; the tree of those before it goes in the export as
        /// its peaks, which the checkpoints' roots prove.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Export up to the first checkpoint that signs at least this many entries
        /// (default: the newest).
        #[arg(long)]
        to: Option<u64>,
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
        AuditCommand::Export {
            location,
            out,
            from,
            to,
        } => export_log(&location, &out, from, to),
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

fn export_log(location: &Location, out: &Path, from: u64, to: Option<u64>) -> Result<()> {
    let site = Site::open(location, false)?;
    let key = site.audit_key(&*site.master_key()?)?;
    let mut store = site.store()?;
    let newest = store
        .latest_checkpoint()
        .context("cannot read the audit log's checkpoints")?
        .map_or(0, |c| c.size);
    let end = match to {
        None => newest,
        Some(to) => first_checkpoint_from(&mut *store, to)?.with_context(|| {
            format!("no checkpoint signs {to} entries yet: the newest signs {newest}")
        })?,
    };
    // Read after the checkpoints: a checkpoint signed since then covers entries that are
    // already stored. (A checkpoint past the entries is the evidence of a cut log.)
    let size = store.audit_size().context("cannot read the audit log")?;
    if from > end {
        bail!(
            "--from {from} is past the end of the export, entry {end} (the checkpoint it ends at)"
        );
    }
    let before = if from == 0 {
        ztx_audit::Frontier::new()
    } else {
        store
            .audit_frontier(from)
            .with_context(|| format!("cannot read the tree of the log's first {from} entries"))?
    };
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = ExportWriter::range(BufWriter::new(file), key.name(), &before, end)?;
    // Those of sizes `from` to `end`, a page at a time.
    let mut after = from.saturating_sub(1);
    'pages: loop {
        let page = store.audit_checkpoints(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.size;
        for c in &page {
            if c.size > end {
                break 'pages;
            }
            if c.size >= from {
                writer.checkpoint(&c.note)?;
            }
        }
    }
    let stop = end.min(size);
    let mut next = from;
    while next < stop {
        let rows = store.audit_entries(next, PAGE)?;
        if rows.is_empty() {
            bail!("the audit log ends at entry {next}, before its size {size}");
        }
        for row in rows.iter().take_while(|r| r.index < stop) {
            writer.entry(row.index, &row.leaf, &row.entry)?;
            next = row.index + 1;
        }
    }
    writer
        .finish()
        .with_context(|| format!("cannot write {}", out.display()))?;
    let written = next - from;
    if from == 0 {
        println!("exported {written} entries to {}", out.display());
    } else {
        println!(
            "exported {written} entries, {from} to {next} (not included), to {}",
            out.display()
        );
    }
    if next < end {
        println!(
            "the log holds {size} entries, fewer than its checkpoint of {end} signs: \
             the check of this export will say it was cut"
        );
    }
    if to.is_none() && size > end {
        println!(
            "left out the newest {} entries: no checkpoint signs them yet",
            size - end
        );
    }
    Ok(())
}

/// The size of the first checkpoint that signs at least `entries` entries.
fn first_checkpoint_from(store: &mut dyn ztx_store::Store, entries: u64) -> Result<Option<u64>> {
    let mut after = entries.saturating_sub(1);
    loop {
        let page = store.audit_checkpoints(after, PAGE)?;
        if let Some(size) = page.iter().map(|c| c.size).find(|&size| size >= entries) {
            return Ok(Some(size));
        }
        match page.last() {
            Some(last) => after = last.size,
            None => return Ok(None),
        }
    }
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
#[derive(Debug, Default)]
struct Publications {
    /// Each epoch's first publication: its entry and root.
    seen: std::collections::HashMap<String, (u64, String)>,
}

impl Publications {
    fn check(&mut self, index: u64, entry: &ztx_audit::Entry) -> Result<(), String> {
        if entry.kind != ztx_audit::Kind::Publication {
            return Ok(());
        }
        let param = |name| ztx_api::reserves::publication_param(entry, name);
        let (Some(epoch), Some(root)) = (param("epoch"), param("root")) else {
            return Err(format!(
                "entry {index} is a publication without one epoch and one root"
            ));
        };
        if let Some((first, earlier)) = self.seen.get(&epoch)
            && *earlier != root
        {
            return Err(format!(
                "entries {first} and {index} publish two roots for proof-of-liabilities \
                 epoch {epoch}: {earlier} and {root}"
            ));
        }
        self.seen.entry(epoch).or_insert((index, root));
        Ok(())
    }
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
    let mut publications = Publications::default();
    let verified = match export::verify_with(reader, &key, trusted_checkpoint.as_ref(), |i, e| {
        publications.check(i, e)
    }) {
        Ok(verified) => verified,
        // Intact, and what it holds is the platform's fault.
        Err(export::ExportError::Refused(why)) => {
            bail!("{}: the log is intact, but {why}", file.display())
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("{} is not an intact log", file.display()))
            );
        }
    };
    let what = if verified.start == 0 {
        format!("{} entries", verified.size)
    } else {
        format!(
            "entries {} to {} of {}",
            verified.start,
            verified.size.saturating_sub(1),
            verified.size
        )
    };
    println!(
        "ok: {what}, root {}, {} checkpoints verified",
        verified.root, verified.checkpoints
    );
    if let (Some(path), true, Some((latest, note))) = (trusted, update, &verified.latest) {
        // Never back: an older checkpoint in place of a newer one would let the entries
        // between them be rewritten unseen (an export whose newest checkpoints were
        // deleted still verifies against the trusted one).
        match &trusted_checkpoint {
            Some(kept) if kept.size >= latest.size => println!(
                "still trusting the checkpoint at size {}: the export's newest is at size {}",
                kept.size, latest.size
            ),
            _ => {
                online::write_atomically(path, note)?;
                println!("now trusting the checkpoint at size {}", latest.size);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test")]

    use super::*;

    fn publication(epoch: u64, root: &str) -> ztx_audit::Entry {
        ztx_audit::Entry {
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
        }
    }

    /// The platform shows two customers two roots of one epoch, both logged: the
    /// offline check of the log names the two entries.
    #[test]
    fn two_roots_published_for_one_epoch_are_caught() {
        let check = |roots: &[(u64, &str)]| {
            let mut publications = Publications::default();
            roots.iter().zip(0u64..).try_for_each(|((epoch, root), i)| {
                publications.check(i, &publication(*epoch, root))
            })
        };
        check(&[(1, "aa"), (2, "bb"), (1, "aa")]).unwrap();
        let refused = check(&[(1, "aa"), (2, "bb"), (1, "cc")]).unwrap_err();
        assert!(
            refused.contains("entries 0 and 2 publish two roots"),
            "{refused}"
        );
    }
}
