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
