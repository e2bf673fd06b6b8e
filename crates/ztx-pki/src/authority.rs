//! The certificate authority on disk.
//!
//! ```text
//! <dir>/root.pem           the root certificate: the trust bundle every verifier loads
//! <dir>/root.key           its key; needed only to sign a new intermediate — keep it offline
//! <dir>/intermediate.pem   the issuing CA, signed by the root
//! <dir>/intermediate.key   its key
//! <dir>/crl.pem            the revocation list, signed by the intermediate
//! <dir>/root-crl.pem       the root's own (empty) list, for whole-chain checkers
//! <dir>/.lock              held while a list or the intermediate is rewritten
//! ```
//!
//! Keys are written owner-only (0600). In memory, the PEM texts this crate hands out
//! are zeroized on drop; rcgen's own key objects are not.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SanType, SerialNumber,
};
use zeroize::Zeroizing;

use crate::verify::CertInfo;
use crate::{PkiError, SpiffeId, instant};

const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root.key";
const INTERMEDIATE_CERT: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key";
const CRL: &str = "crl.pem";
/// The root's own (empty) list, for verifiers that check every link of the chain
/// (OpenSSL's `X509_V_FLAG_CRL_CHECK_ALL`, which PostgreSQL sets): signed when the root's
/// key is at hand — at `init` and `renew_intermediate` — and valid as long as the
/// intermediate is.
const ROOT_CRL: &str = "root-crl.pem";
/// Held (an advisory lock) while the list or the intermediate is rewritten, so that two
/// operators revoking at once do not lose one of the revocations.
const LOCK: &str = ".lock";

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Certificates start this long before they are issued, so that a peer whose clock is a
/// little behind does not refuse a fresh one.
const BACKDATE_MS: u64 = 60_000;

/// How long what the authority signs is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub root_ms: u64,
    pub intermediate_ms: u64,
    /// A revocation list's `nextUpdate`: it is re-signed (with a higher number) before.
    pub crl_ms: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            root_ms: 10 * 365 * DAY_MS,
            intermediate_ms: 365 * DAY_MS,
            crl_ms: 7 * DAY_MS,
        }
    }
}

/// Whom a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A service: `spiffe://<td>/<service>`, usable as a TLS client and server; `dns` and
    /// `ips` are the names clients reach it by (checked by their verify-full).
    Workload {
        service: String,
        dns: Vec<String>,
        ips: Vec<IpAddr>,
    },
    /// A person: `spiffe://<td>/operator/<name>`, a TLS client only.
    Operator { name: String },
}

/// A certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub subject: Subject,
    /// Hours, normally: certificates are short-lived and rotated at half-life.
    pub lifetime_ms: u64,
}

/// A freshly issued certificate and its key.
pub struct Issued {
    pub id: SpiffeId,
    /// The serial number in hex, as `ztx pki revoke` takes it.
    pub serial: String,
    /// The certificate followed by the intermediate's: what a TLS peer presents.
    pub chain_pem: String,
    pub key_pem: Zeroizing<String>,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("id", &self.id)
            .field("serial", &self.serial)
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

/// A certificate issued for a key its owner keeps ([`Authority::sign_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub id: SpiffeId,
    pub serial: String,
    /// The certificate followed by the intermediate's.
    pub chain_pem: String,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

impl Signed {
    /// Writes `<dir>/<name>.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf, PkiError> {
        check_name(name)?;
        let cert = dir.join(format!("{name}.pem"));
        write_file(&cert, self.chain_pem.as_bytes(), false)?;
        Ok(cert)
    }
}

/// A new key and a signing request for it, made where the key is to stay: the request
/// goes to whoever runs the authority, the key nowhere.
pub fn make_request() -> Result<(String, Zeroizing<String>), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    Ok((csr.pem()?, Zeroizing::new(key.serialize_pem())))
}

/// Writes a key made by [`make_request`] (owner-only) and its request.
pub fn write_request(
    dir: &Path,
    name: &str,
    csr_pem: &str,
    key_pem: &str,
) -> Result<(PathBuf, PathBuf), PkiError> {
    check_name(name)?;
    let csr = dir.join(format!("{name}.csr"));
    let key = dir.join(format!("{name}.key"));
    write_file(&key, key_pem.as_bytes(), true)?;
    write_file(&csr, csr_pem.as_bytes(), false)?;
    Ok((csr, key))
}

fn check_name(name: &str) -> Result<(), PkiError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
    if !plain || RESERVED.contains(&name) {
        return Err(PkiError::Invalid(format!(
            "{name:?} cannot name a certificate's files: use letters, digits, '.', '-' and '_', and none of {RESERVED:?}"
        )));
    }
    Ok(())
}

/// Names `Issued::write` refuses: the authority's own files, should `dir` be its
/// directory.
const RESERVED: [&str; 3] = ["root", "intermediate", "crl"];

impl Issued {
    /// Writes `<dir>/<name>.pem` (the chain) and `<dir>/<name>.key` (owner-only). `name`
    /// is one plain file name (letters, digits, `.`, `-`, `_`; not the authority's own).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        check_name(name)?;
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        write_file(&key, self.key_pem.as_bytes(), true)?;
        write_file(&cert, self.chain_pem.as_bytes(), false)?;
        Ok((cert, key))
    }
}

/// The issuing side of the platform's CA.
pub struct Authority {
    dir: PathBuf,
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    intermediate_pem: String,
    /// Nothing it issues outlives it.
    intermediate_not_after_ms: u64,
    lifetimes: Lifetimes,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file whole, owner-only when `secret`: into a new temporary file of a random
/// name beside it (created afresh, so no file planted or left there is reused, and its
/// mode set before a byte is written), synced, then renamed over `path`.
pub(crate) fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), PkiError> {
    use rand::RngCore as _;
    let mut nonce = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let tmp = path.with_extension(format!("tmp-{}", hex(&nonce)));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(io_error(path))
}

pub(crate) fn read_file(path: &Path) -> Result<Zeroizing<String>, PkiError> {
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(io_error(path))
}

fn read_key(path: &Path) -> Result<KeyPair, PkiError> {
    let pem = read_file(path)?;
    KeyPair::from_pem(&pem).map_err(|e| PkiError::Malformed {
        path: path.to_path_buf(),
        problem: format!("not a PEM private key: {e}"),
    })
}

/// A random positive serial number of 127 bits (RFC 5280: at most 20 bytes, positive;
/// CA/Browser Forum: at least 64 random bits).
fn serial() -> Result<SerialNumber, PkiError> {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(
    name: &str,
    trust_domain: &str,
    path_len: u8,
    now_ms: u64,
    lifetime_ms: u64,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{trust_domain}")
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Sign(e.to_string()))?,
    )];
    params.not_before = instant(now_ms.saturating_sub(BACKDATE_MS));
    params.not_after = instant(now_ms.saturating_add(lifetime_ms));
    params.serial_number = Some(serial()?);
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

impl Authority {
    /// Creates a root and an intermediate for `trust_domain` in `dir`, and an empty
    /// revocation list. Refuses to overwrite an existing authority.
    pub fn init(
        dir: &Path,
        trust_domain: &str,
        lifetimes: Lifetimes,
        now_ms: u64,
    ) -> Result<Authority, PkiError> {
        SpiffeId::check_trust_domain(trust_domain)?;
        if dir.join(INTERMEDIATE_CERT).exists() || dir.join(ROOT_CERT).exists() {
            return Err(PkiError::AlreadyInitialized(dir.to_path_buf()));
        }
        // Everything is made in a directory of its own and renamed into place whole, so
        // a crash leaves either no authority or a complete one.
        use rand::RngCore as _;
        let mut nonce = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let staging = dir.with_extension(format!("init-{}", hex(&nonce)));
        fs::create_dir_all(&staging).map_err(io_error(&staging))?;
        let made = Authority::make(&staging, trust_domain, lifetimes, now_ms);
        let placed = made.and_then(|()| match fs::remove_dir(dir) {
            // An empty directory (made for it, or left by a crashed attempt) gives way.
            Ok(()) => fs::rename(&staging, dir).map_err(io_error(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::rename(&staging, dir).map_err(io_error(dir))
            }
            Err(e) => Err(PkiError::Io {
                path: dir.to_path_buf(),
                source: e,
            }),
        });
        if placed.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        placed?;
        Authority::open(dir, lifetimes)
    }

    fn make(
        dir: &Path,
        trust_domain: &str,
        lifetimes: Lifetimes,
        now_ms: u64,
    ) -> Result<(), PkiError> {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let root_params = ca_params(
            &format!("{trust_domain} root CA"),
            trust_domain,
            1,
            now_ms,
            lifetimes.root_ms,
        )?;
        let root = root_params.self_signed(&root_key)?;
        write_file(
            &dir.join(ROOT_KEY),
            root_key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&dir.join(ROOT_CERT), root.pem().as_bytes(), false)?;
        let root_issuer = Issuer::new(root_params, root_key);
        Authority::sign_intermediate(dir, trust_domain, &root_issuer, lifetimes, now_ms)?;
        sign_root_crl(dir, &root_issuer, lifetimes.intermediate_ms, now_ms)?;
        let authority = Authority::open(dir, lifetimes)?;
        authority.write_crl(&[], 1, now_ms)
    }

    fn sign_intermediate(
        dir: &Path,
        trust_domain: &str,
        root: &Issuer<'_, KeyPair>,
        lifetimes: Lifetimes,
        now_ms: u64,
    ) -> Result<(), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(
            &format!("{trust_domain} issuing CA"),
            trust_domain,
            0,
            now_ms,
            lifetimes.intermediate_ms,
        )?;
        let cert = params.signed_by(&key, root)?;
        write_file(
            &dir.join(INTERMEDIATE_KEY),
            key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&dir.join(INTERMEDIATE_CERT), cert.pem().as_bytes(), false)
    }

    /// Opens the authority in `dir` to issue and revoke (the root's key is not read).
    pub fn open(dir: &Path, lifetimes: Lifetimes) -> Result<Authority, PkiError> {
        let cert_path = dir.join(INTERMEDIATE_CERT);
        if !cert_path.exists() {
            return Err(PkiError::NotInitialized(dir.to_path_buf()));
        }
        let intermediate_pem = read_file(&cert_path)?.to_string();
        let info = CertInfo::from_pem_file(&cert_path, &intermediate_pem)?;
        let trust_domain = info
            .trust_domain
            .clone()
            .ok_or_else(|| PkiError::Malformed {
                path: cert_path.clone(),
                problem: "the CA certificate names no spiffe://<trust-domain> URI".into(),
            })?;
        let key_path = dir.join(INTERMEDIATE_KEY);
        let key = read_key(&key_path)?;
        // A crash between writing a new key and its certificate must not leave an
        // authority that signs what nobody can verify.
        if key.public_key_raw()
            != crate::verify::public_key_of(&cert_path, &intermediate_pem)?.as_slice()
        {
            return Err(PkiError::Malformed {
                path: key_path,
                problem: format!("not the key of {}", cert_path.display()),
            });
        }
        let issuer =
            Issuer::from_ca_cert_pem(&intermediate_pem, key).map_err(|e| PkiError::Malformed {
                path: cert_path.clone(),
                problem: format!("not a usable CA certificate: {e}"),
            })?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            trust_domain,
            issuer,
            intermediate_pem,
            intermediate_not_after_ms: info.not_after_ms,
            lifetimes,
        })
    }

    /// Signs a new intermediate with the root's key (which must be present for this),
    /// e.g. before the old one expires. The revocation list is signed anew by the new
    /// intermediate, and verifiers take a list from the issuer of the certificate they
    /// check: so certificates the old intermediate issued are refused from then on and
    /// must be issued again (`ztx serve` re-issues its own at its next upkeep). They are
    /// hours long; carrying the old intermediate's list along is not done yet.
    pub fn renew_intermediate(&mut self, now_ms: u64) -> Result<(), PkiError> {
        let key_path = self.dir.join(ROOT_KEY);
        if !key_path.exists() {
            return Err(PkiError::RootOffline(key_path));
        }
        let root_key = read_key(&key_path)?;
        let root_pem = read_file(&self.dir.join(ROOT_CERT))?;
        let root =
            Issuer::from_ca_cert_pem(&root_pem, root_key).map_err(|e| PkiError::Malformed {
                path: self.dir.join(ROOT_CERT),
                problem: format!("not a usable CA certificate: {e}"),
            })?;
        let renewed = self.locked(|| {
            let (revoked, number) = self.revoked()?;
            Authority::sign_intermediate(
                &self.dir,
                &self.trust_domain,
                &root,
                self.lifetimes,
                now_ms,
            )?;
            sign_root_crl(&self.dir, &root, self.lifetimes.intermediate_ms, now_ms)?;
            let renewed = Authority::open(&self.dir, self.lifetimes)?;
            // The list must be signed by the key that now issues.
            renewed.write_crl(&revoked, number.saturating_add(1), now_ms)?;
            Ok(renewed)
        })?;
        *self = renewed;
        Ok(())
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Runs `f` holding the authority's lock (waiting for another process's).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, PkiError>) -> Result<T, PkiError> {
        let path = self.dir.join(LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.lock().map_err(io_error(&path))?;
        let result = f();
        drop(file);
        result
    }

    pub fn root_path(&self) -> PathBuf {
        self.dir.join(ROOT_CERT)
    }

    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL)
    }

    /// Both revocation lists, the intermediate's and the root's, in one PEM file's text:
    /// what an OpenSSL-based server (PostgreSQL's `ssl_crl_file`) needs.
    pub fn crl_bundle(&self) -> Result<String, PkiError> {
        let mut bundle = read_file(&self.crl_path())?.to_string();
        bundle.push_str(&read_file(&self.dir.join(ROOT_CRL))?);
        Ok(bundle)
    }

    /// Issues a certificate with a key made here (handed over in [`Issued::key_pem`]).
    pub fn issue(&self, request: &Request, now_ms: u64) -> Result<Issued, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let signed = self.certify(request, &key, now_ms)?;
        Ok(Issued {
            id: signed.id,
            serial: signed.serial,
            chain_pem: signed.chain_pem,
            key_pem: Zeroizing::new(key.serialize_pem()),
            not_before_ms: signed.not_before_ms,
            not_after_ms: signed.not_after_ms,
        })
    }

    /// Issues a certificate for the key of a signing request made elsewhere (`ztx pki
    /// request`), so that the key never leaves its owner's machine. The request proves
    /// possession of the key (its signature is checked); what it asks for (subject,
    /// names) is ignored: the identity is `request`'s, decided here.
    pub fn sign_request(
        &self,
        request: &Request,
        csr_pem: &str,
        origin: &Path,
        now_ms: u64,
    ) -> Result<Signed, PkiError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            PkiError::Malformed {
                path: origin.to_path_buf(),
                problem: format!("not a usable certificate signing request: {e}"),
            }
        })?;
        // rcgen names the key's algorithm after the request's signature; only an
        // uncompressed P-256 point is certain to be what that name says.
        let key = rcgen::PublicKeyData::der_bytes(&csr.public_key);
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256
            || key.len() != 65
            || key.first() != Some(&4)
        {
            return Err(PkiError::Malformed {
                path: origin.to_path_buf(),
                problem: "the request's key is not an ECDSA P-256 key (the only kind issued)"
                    .into(),
            });
        }
        self.certify(request, &csr.public_key, now_ms)
    }

    fn certify(
        &self,
        request: &Request,
        public_key: &impl rcgen::PublicKeyData,
        now_ms: u64,
    ) -> Result<Signed, PkiError> {
        if request.lifetime_ms == 0 {
            return Err(PkiError::Invalid(
                "a certificate's lifetime must be positive".into(),
            ));
        }
        let mut params = CertificateParams::default();
        let (id, sans) = match &request.subject {
            Subject::Workload { service, dns, ips } => {
                // A certificate's common name is its path, and PostgreSQL's `cert`
                // authentication logs a client in as the role of that name: a workload
                // must never be named after the superuser or a built-in role.
                if service == "postgres" || service.starts_with("pg_") {
                    return Err(PkiError::Invalid(format!(
                        "{service:?} is a PostgreSQL role's name, and a certificate of that name logs in as it: name the service otherwise (e.g. database)"
                    )));
                }
                if service.starts_with("operator/") || service == "operator" {
                    return Err(PkiError::Invalid(format!(
                        "{service:?}: the operator/ path is for people (issue an operator certificate)"
                    )));
                }
                let id = SpiffeId::new(&self.trust_domain, service)?;
                let mut sans = Vec::new();
                for name in dns {
                    sans.push(SanType::DnsName(name.as_str().try_into().map_err(
                        |e: rcgen::Error| PkiError::Invalid(format!("DNS name {name:?}: {e}")),
                    )?));
                }
                sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                (id, sans)
            }
            Subject::Operator { name } => {
                let id = SpiffeId::new(&self.trust_domain, &format!("operator/{name}"))?;
                if name.contains('/') {
                    return Err(PkiError::Invalid(format!(
                        "operator name {name:?} must be one path segment"
                    )));
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                (id, Vec::new())
            }
        };
        let uri = id
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Sign(e.to_string()))?;
        params.subject_alt_names = std::iter::once(SanType::URI(uri)).chain(sans).collect();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.trust_domain.as_str());
        dn.push(DnType::CommonName, id.path());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_before_ms = now_ms.saturating_sub(BACKDATE_MS);
        let not_after_ms = now_ms
            .saturating_add(request.lifetime_ms)
            .min(self.intermediate_not_after_ms);
        if not_after_ms <= now_ms {
            return Err(PkiError::Invalid(format!(
                "the issuing intermediate expired at {}: run `ztx pki renew-intermediate`",
                crate::rfc3339(self.intermediate_not_after_ms)
            )));
        }
        params.not_before = instant(not_before_ms);
        params.not_after = instant(not_after_ms);
        let serial = serial()?;
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(Signed {
            id,
            serial: serial_hex,
            chain_pem: format!("{}{}", cert.pem(), self.intermediate_pem),
            not_before_ms,
            not_after_ms,
        })
    }

    /// The revoked serials (hex) with their revocation times, and the list's number.
    pub fn revoked(&self) -> Result<(Vec<(String, u64)>, u64), PkiError> {
        let path = self.crl_path();
        let pem = read_file(&path)?;
        let crl = crate::verify::Crl::parse(&path, pem.as_bytes())?;
        Ok((crl.revoked, crl.number))
    }

    /// Adds a serial (hex, colons allowed) to the revocation list and signs it anew.
    /// Returns false when it was already revoked (the list is left as it was).
    pub fn revoke(&self, serial: &str, now_ms: u64) -> Result<bool, PkiError> {
        let serial = normalize_serial(serial)?;
        self.locked(|| {
            let (mut revoked, number) = self.revoked()?;
            if revoked.iter().any(|(s, _)| *s == serial) {
                return Ok(false);
            }
            revoked.push((serial, now_ms));
            self.write_crl(&revoked, number.saturating_add(1), now_ms)?;
            Ok(true)
        })
    }

    /// Signs the current list again with a fresh `nextUpdate` (and a higher number).
    pub fn refresh_crl(&self, now_ms: u64) -> Result<(), PkiError> {
        self.locked(|| {
            let (revoked, number) = self.revoked()?;
            self.write_crl(&revoked, number.saturating_add(1), now_ms)
        })
    }

    fn write_crl(
        &self,
        revoked: &[(String, u64)],
        number: u64,
        now_ms: u64,
    ) -> Result<(), PkiError> {
        let mut certs = Vec::with_capacity(revoked.len());
        for (serial, at_ms) in revoked {
            certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&unhex(serial)?),
                revocation_time: instant(*at_ms),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: instant(now_ms),
            next_update: instant(now_ms.saturating_add(self.lifetimes.crl_ms)),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        write_file(&self.crl_path(), crl.pem()?.as_bytes(), false)
    }
}

/// Signs the root's list of revoked intermediates (none: a compromised intermediate is
/// replaced with its root).
fn sign_root_crl(
    dir: &Path,
    root: &Issuer<'_, KeyPair>,
    lifetime_ms: u64,
    now_ms: u64,
) -> Result<(), PkiError> {
    let params = CertificateRevocationListParams {
        this_update: instant(now_ms),
        next_update: instant(now_ms.saturating_add(lifetime_ms)),
        crl_number: SerialNumber::from_slice(&now_ms.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(root)?;
    write_file(&dir.join(ROOT_CRL), crl.pem()?.as_bytes(), false)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let trimmed = match bytes.iter().position(|b| *b != 0) {
        Some(first) => bytes.get(first..).unwrap_or_default(),
        None => &[0],
    };
    trimmed.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn normalize_serial(text: &str) -> Result<String, PkiError> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    Ok(hex(&unhex(&digits)?))
}

fn unhex(text: &str) -> Result<Vec<u8>, PkiError> {
    let bad = || PkiError::Invalid(format!("{text:?} is not a serial number in hex"));
    if text.is_empty() || text.len() > 40 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if text.len() % 2 == 1 {
        format!("0{text}")
    } else {
        text.to_owned()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| {
            padded
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}
