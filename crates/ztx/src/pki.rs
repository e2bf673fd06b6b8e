//! `ztx pki`: the operator's side of the platform's certificate authority
//! ([`ztx_pki::Authority`]) — create it, issue workload and operator certificates, revoke
//! them, keep the revocation list fresh, and inspect any certificate file.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ztx_pki::verify::{CertInfo, Crl};
use ztx_pki::{Authority, Lifetimes, Request, Subject, rfc3339};

use crate::site::now_ms;

const HOUR_MS: u64 = 3_600_000;

#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    /// The data directory; the authority lives in its `pki` directory.
    #[arg(long, default_value = "ztx-data", global = true)]
    data_dir: PathBuf,
    /// The authority's directory, if not `<data-dir>/pki`.
    #[arg(long, global = true)]
    pki_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PkiCommand {
    /// Create the root and the issuing intermediate, and an empty revocation list. Move
    /// `root.key` to offline storage afterwards: only a new intermediate needs it.
    Init {
        /// The SPIFFE trust domain every identity is under, e.g. ztx.example.com.
        #[arg(long, default_value = "ztx.local")]
        trust_domain: String,
    },
    /// Issue a certificate: `--service NAME` for a workload (TLS client and server),
    /// `--operator NAME` for a person (TLS client only).
    Issue {
        #[arg(
            long,
            conflicts_with = "operator",
            required_unless_present = "operator"
        )]
        service: Option<String>,
        #[arg(long)]
        operator: Option<String>,
        /// A DNS name clients reach the service by (repeatable).
        #[arg(long, requires = "service")]
        dns: Vec<String>,
        /// An IP address clients reach the service at (repeatable).
        #[arg(long, requires = "service")]
        ip: Vec<IpAddr>,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 12)]
        hours: u64,
        /// A signing request made with `ztx pki request` where the key is to stay: the
        /// certificate is for its key, and no key is written here. (Its own subject and
        /// names are ignored; the identity is `--service`'s or `--operator`'s.)
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Where to write `<name>.pem` (the chain) and, without `--csr`, `<name>.key`
        /// (owner-only).
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Make a key and a certificate signing request for it, on the machine where the key
    /// is to stay; hand `<name>.csr` to whoever runs `ztx pki issue --csr`.
    Request {
        #[arg(long)]
        name: String,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Revoke a certificate by its serial (hex) or its file, and sign the list anew.
    /// Servers take the new list when they reload it.
    Revoke {
        #[arg(conflicts_with = "cert", required_unless_present = "cert")]
        serial: Option<String>,
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Print the revocation list; `--refresh` signs it again with a new next-update time.
    Crl {
        #[arg(long)]
        refresh: bool,
    },
    /// Sign a new issuing intermediate with the root (whose key must be back online).
    RenewIntermediate,
    /// What a certificate file says: identity, serial, validity. Exits non-zero when it is
    /// expired or not yet valid.
    Show { file: PathBuf },
}

pub fn run(args: PkiArgs) -> Result<()> {
    let dir = args.pki_dir.unwrap_or_else(|| args.data_dir.join("pki"));
    let now = now_ms();
    match args.command {
        PkiCommand::Init { trust_domain } => {
            let authority = Authority::init(&dir, &trust_domain, Lifetimes::default(), now)?;
            println!("trust domain: {}", authority.trust_domain());
            println!("root: {}", authority.root_path().display());
            println!("revocation list: {}", authority.crl_path().display());
            println!(
                "keep {} offline: it is needed only to sign a new intermediate",
                dir.join("root.key").display()
            );
        }
        PkiCommand::Issue {
            service,
            operator,
            dns,
            ip,
            hours,
            csr,
            out_dir,
        } => {
            if hours == 0 {
                bail!("--hours must be at least 1");
            }
            let authority = Authority::open(&dir, Lifetimes::default())?;
            let (subject, name) = match (service, operator) {
                (Some(service), None) => {
                    let name = service.replace('/', "-");
                    (
                        Subject::Workload {
                            service,
                            dns,
                            ips: ip,
                        },
                        name,
                    )
                }
                (None, Some(operator)) => (
                    Subject::Operator {
                        name: operator.clone(),
                    },
                    format!("operator-{operator}"),
                ),
                _ => bail!("give exactly one of --service and --operator"),
            };
            let request = Request {
                subject,
                lifetime_ms: hours.saturating_mul(HOUR_MS),
            };
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("cannot create {}", out_dir.display()))?;
            match csr {
                None => {
                    let issued = authority.issue(&request, now)?;
                    let (cert, key) = issued.write(&out_dir, &name)?;
                    println!("identity: {}", issued.id);
                    println!("serial: {}", issued.serial);
                    println!("not after: {}", rfc3339(issued.not_after_ms));
                    println!("certificate: {}", cert.display());
                    println!("key: {}", key.display());
                }
                Some(path) => {
                    let pem = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let signed = authority.sign_request(&request, &pem, &path, now)?;
                    let cert = signed.write(&out_dir, &name)?;
                    println!("identity: {}", signed.id);
                    println!("serial: {}", signed.serial);
                    println!("not after: {}", rfc3339(signed.not_after_ms));
                    println!("certificate: {}", cert.display());
                }
            }
        }
        PkiCommand::Request { name, out_dir } => {
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("cannot create {}", out_dir.display()))?;
            let (csr_pem, key_pem) = ztx_pki::make_request()?;
            let (csr, key) = ztx_pki::write_request(&out_dir, &name, &csr_pem, &key_pem)?;
            println!("request: {}", csr.display());
            println!("key: {} (keep it here)", key.display());
        }
        PkiCommand::Revoke { serial, cert } => {
            let authority = Authority::open(&dir, Lifetimes::default())?;
            let serial = match (serial, cert) {
                (Some(serial), None) => serial,
                (None, Some(path)) => {
                    let pem = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    CertInfo::from_pem_file(&path, &pem)?.serial
                }
                _ => bail!("give a serial or --cert, not both"),
            };
            if authority.revoke(&serial, now)? {
                println!("revoked {serial}; servers refuse it once they reload the list");
            } else {
                println!("{serial} was already revoked");
            }
        }
        PkiCommand::Crl { refresh } => {
            let authority = Authority::open(&dir, Lifetimes::default())?;
            if refresh {
                authority.refresh_crl(now)?;
            }
            let crl = Crl::load(&authority.crl_path())?;
            println!("number: {}", crl.number);
            println!("this update: {}", rfc3339(crl.this_update_ms));
            for (serial, at) in &crl.revoked {
                println!("revoked: {serial} at {}", rfc3339(*at));
            }
        }
        PkiCommand::RenewIntermediate => {
            let mut authority = Authority::open(&dir, Lifetimes::default())?;
            authority.renew_intermediate(now)?;
            println!("a new intermediate issues from now on; the revocation list is re-signed");
        }
        PkiCommand::Show { file } => {
            let pem = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let info = CertInfo::from_pem_file(&file, &pem)?;
            println!("subject: {}", info.subject);
            println!("serial: {}", info.serial);
            match (&info.spiffe, &info.trust_domain, info.is_ca) {
                (_, Some(td), true) => println!("certificate authority of: {td}"),
                (Some(id), _, false) => println!("identity: {id}"),
                _ => println!("identity: none (URI SANs: {:?})", info.uris),
            }
            println!("not before: {}", rfc3339(info.not_before_ms));
            println!("not after: {}", rfc3339(info.not_after_ms));
            info.check_current(&file, now)?;
            println!("valid now");
        }
    }
    Ok(())
}
