//! The server's and `ztx admin`'s side of the platform's PKI. On its first start `ztx
//! serve` creates the certificate authority in `<data-dir>/pki` (`ztx pki init` does the
//! same by hand, with a trust domain of the operator's choosing) and a bootstrap operator
//! certificate, `pki/operator-bootstrap.pem` and `.key`, which `ztx admin --data-dir`
//! presents. The admin listener is mTLS-only: the server's certificate
//! (`spiffe://<td>/admin`, never written to disk) is renewed at half its life, the
//! bootstrap operator's likewise, and the revocation list is re-read every few seconds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ztx_pki::verify::{
    Crl, SpiffeClientVerifier, SpiffeServerVerifier, TrustBundle, client_config, server_config,
};
use ztx_pki::{Allow, Authority, Lifetimes, Request, RotatingIdentity, Subject};

use crate::site::{Site, now_ms};

/// The trust domain `ztx serve` gives an authority it creates itself.
const DEFAULT_TRUST_DOMAIN: &str = "ztx.local";
/// The admin listener's service name: `spiffe://<td>/admin`.
const ADMIN_SERVICE: &str = "admin";
const BOOTSTRAP_OPERATOR: &str = "bootstrap";
const HOUR_MS: u64 = 3_600_000;
/// Certificates `ztx serve` issues itself live this long (renewed at half).
const LIFETIME_MS: u64 = 12 * HOUR_MS;
/// How often the server looks at its certificates and the revocation list.
const UPKEEP_EVERY: Duration = Duration::from_secs(2);

pub fn pki_dir(site: &Site) -> PathBuf {
    site.dir.join("pki")
}

fn bootstrap_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("operator-{BOOTSTRAP_OPERATOR}.pem")),
        dir.join(format!("operator-{BOOTSTRAP_OPERATOR}.key")),
    )
}

/// The admin listener's TLS: its configuration and what keeps it current.
#[derive(Debug)]
pub struct AdminTls {
    pub config: Arc<rustls::ServerConfig>,
    /// Revoked serials, for the requests of connections opened before a revocation.
    pub revocations: ztx_api::admin_tls::Revocations,
    dir: PathBuf,
    identity: Arc<RotatingIdentity>,
    verifier: Arc<SpiffeClientVerifier>,
    request: Request,
    /// The list last taken, to notice a new one (whatever its number).
    crl_der: Vec<u8>,
    /// The intermediate that issued the certificates in use.
    intermediate: String,
}

impl AdminTls {
    /// Opens (or on first start creates) the authority and issues the listener's
    /// certificate for the addresses operators dial.
    pub fn start(site: &Site, listen: SocketAddr) -> Result<AdminTls> {
        let dir = pki_dir(site);
        let now = now_ms();
        let authority = match Authority::open(&dir, Lifetimes::default()) {
            Ok(authority) => authority,
            Err(ztx_pki::PkiError::NotInitialized(_)) => {
                Authority::init(&dir, DEFAULT_TRUST_DOMAIN, Lifetimes::default(), now)
                    .context("cannot create the certificate authority")?
            }
            Err(e) => return Err(e).context("cannot open the certificate authority"),
        };
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        if !listen.ip().is_unspecified() && !ips.contains(&listen.ip()) {
            ips.push(listen.ip());
        }
        let request = Request {
            subject: Subject::Workload {
                service: ADMIN_SERVICE.into(),
                dns: vec!["localhost".into()],
                ips,
            },
            lifetime_ms: LIFETIME_MS,
        };
        let identity = Arc::new(RotatingIdentity::from_issued(
            &authority.issue(&request, now)?,
        )?);
        ensure_bootstrap(&authority, &dir, now)?;
        let bundle = TrustBundle::load(&authority.root_path(), now)?;
        let allow = Allow::new(
            authority.trust_domain(),
            &[&format!("spiffe://{}/operator/*", authority.trust_domain())],
        )?;
        let crl = Crl::load(&authority.crl_path())?;
        let verifier = SpiffeClientVerifier::new(bundle, allow, &crl)?;
        let config = Arc::new(server_config(verifier.clone(), identity.clone())?);
        let intermediate = std::fs::read_to_string(dir.join("intermediate.pem"))
            .context("cannot read the intermediate certificate")?;
        let revocations = ztx_api::admin_tls::Revocations::default();
        revocations.replace(crl.revoked.iter().map(|(serial, _)| serial.clone()));
        Ok(AdminTls {
            config,
            revocations,
            dir,
            identity,
            verifier,
            request,
            crl_der: crl.der.to_vec(),
            intermediate,
        })
    }

    /// Renews the certificates at half-life and takes a new revocation list, forever.
    pub fn spawn_upkeep(mut self) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_EVERY).await;
                if let Err(e) = self.upkeep(now_ms()) {
                    tracing::warn!(error = %e, "admin TLS upkeep failed; trying again");
                }
            }
        });
    }

    /// The revocation list and the renewals are independent: a damaged list must not
    /// stop the certificates from being renewed, nor the reverse.
    fn upkeep(&mut self, now: u64) -> Result<()> {
        let crl = self.take_crl();
        let renewed = self.renew(now);
        crl.and(renewed)
    }

    fn take_crl(&mut self) -> Result<()> {
        let crl = Crl::load(&self.dir.join("crl.pem"))?;
        if crl.der.as_ref() != self.crl_der.as_slice() {
            self.verifier.reload_crl(&crl)?;
            self.revocations
                .replace(crl.revoked.iter().map(|(serial, _)| serial.clone()));
            self.crl_der = crl.der.to_vec();
            tracing::info!(number = crl.number, "took a new revocation list");
        }
        Ok(())
    }

    /// At half-life, and at once after `ztx pki renew-intermediate` (whose revocation
    /// list no longer covers what the old intermediate issued).
    fn renew(&mut self, now: u64) -> Result<()> {
        let path = self.dir.join("intermediate.pem");
        let intermediate = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let new_ca = intermediate != self.intermediate;
        let due = new_ca || self.identity.renewal_due(now);
        let bootstrap = new_ca || bootstrap_due(&self.dir, now);
        if due || bootstrap {
            let authority = Authority::open(&self.dir, Lifetimes::default())?;
            if due {
                let issued = authority.issue(&self.request, now)?;
                self.identity
                    .install(&issued.chain_pem, &issued.key_pem, Path::new("renewed"))?;
                tracing::info!(serial = %issued.serial, "renewed the admin certificate");
            }
            if bootstrap {
                issue_bootstrap(&authority, &self.dir, now)?;
            }
            self.intermediate = intermediate;
        }
        Ok(())
    }
}

fn bootstrap_due(dir: &Path, now: u64) -> bool {
    let (cert, _) = bootstrap_paths(dir);
    let Ok(pem) = std::fs::read_to_string(&cert) else {
        return true;
    };
    match ztx_pki::verify::CertInfo::from_pem_file(&cert, &pem) {
        Ok(info) => {
            let half = info.not_after_ms.saturating_sub(info.not_before_ms) / 2;
            now >= info.not_before_ms.saturating_add(half)
        }
        Err(_) => true,
    }
}

/// Issues the bootstrap operator's certificate when it is missing or half-way through
/// its life.
fn ensure_bootstrap(authority: &Authority, dir: &Path, now: u64) -> Result<()> {
    if bootstrap_due(dir, now) {
        issue_bootstrap(authority, dir, now)?;
    }
    Ok(())
}

fn issue_bootstrap(authority: &Authority, dir: &Path, now: u64) -> Result<()> {
    let request = Request {
        subject: Subject::Operator {
            name: BOOTSTRAP_OPERATOR.into(),
        },
        lifetime_ms: LIFETIME_MS,
    };
    authority
        .issue(&request, now)?
        .write(dir, &format!("operator-{BOOTSTRAP_OPERATOR}"))?;
    Ok(())
}

/// `ztx admin`'s TLS: the data directory's root as the only anchor, the server must be
/// `spiffe://<td>/admin`, and the operator presents the bootstrap certificate (or
/// `cert`/`key` when given).
pub fn admin_client(
    site: &Site,
    operator: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let dir = pki_dir(site);
    let now = now_ms();
    let bundle = TrustBundle::load(&dir.join("root.pem"), now)
        .context("cannot read the platform's root certificate")?;
    let allow = Allow::new(
        bundle.trust_domain(),
        &[&format!(
            "spiffe://{}/{ADMIN_SERVICE}",
            bundle.trust_domain()
        )],
    )?;
    let (default_cert, default_key) = bootstrap_paths(&dir);
    let (cert, key) = operator.unwrap_or((&default_cert, &default_key));
    // Refuses an expired or not yet valid certificate, saying which and when.
    ztx_pki::verify::load_chain(cert, now).context("cannot use the operator certificate")?;
    let chain_pem =
        std::fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?,
    );
    let identity = Arc::new(RotatingIdentity::from_pem(&chain_pem, &key_pem, cert)?);
    let verifier = SpiffeServerVerifier::new(bundle, allow)?;
    Ok(Arc::new(client_config(verifier, identity)?))
}
