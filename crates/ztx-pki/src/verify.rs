//! Reading certificates, keys and revocation lists with errors that name the file and the
//! problem, and the rustls verifiers every ztx endpoint and client uses: the platform's
//! root alone as trust anchor, revocation from a CRL the server reloads, and the peer's
//! SPIFFE id checked against the endpoint's allow-list.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use zeroize::Zeroizing;

use crate::authority::{hex, read_file};
use crate::rotate::RotatingIdentity;
use crate::{Allow, PkiError, SpiffeId, rfc3339};

/// The crypto provider of every ztx TLS connection (ring's).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn malformed(path: &Path, problem: impl Into<String>) -> PkiError {
    PkiError::Malformed {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// The PEM blocks of `bytes` as (label, DER), stopping at the first malformed one.
fn pem_blocks(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, PkiError> {
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        match block {
            Ok(pem) => blocks.push((pem.label, pem.contents)),
            Err(x509_parser::error::PEMError::MissingHeader) if !blocks.is_empty() => break,
            Err(e) => return Err(malformed(path, format!("not PEM: {e}"))),
        }
    }
    if blocks.is_empty() {
        return Err(malformed(path, "no PEM block in the file"));
    }
    Ok(blocks)
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    /// In hex, as `ztx pki revoke` takes it.
    pub serial: String,
    /// Its URI SANs as written.
    pub uris: Vec<String>,
    /// The workload or operator id, when the only URI SAN is one.
    pub spiffe: Option<SpiffeId>,
    /// The trust domain a CA certificate's `spiffe://<td>` URI names.
    pub trust_domain: Option<String>,
    pub is_ca: bool,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

fn seconds_to_ms(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0).saturating_mul(1000)
}

impl CertInfo {
    pub fn from_der(path: &Path, der: &[u8]) -> Result<CertInfo, PkiError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| malformed(path, format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(malformed(path, "bytes after the certificate"));
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| malformed(path, format!("unreadable subject alternative names: {e}")))?;
        let uris: Vec<String> = san
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (spiffe, trust_domain) = match uris.as_slice() {
            [only] => (
                SpiffeId::parse(only).ok(),
                SpiffeId::parse_trust_domain(only).ok().or_else(|| {
                    SpiffeId::parse(only)
                        .ok()
                        .map(|id| id.trust_domain().to_owned())
                }),
            ),
            _ => (None, None),
        };
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            serial: hex(cert.raw_serial()),
            uris,
            spiffe,
            trust_domain,
            is_ca: cert.is_ca(),
            not_before_ms: seconds_to_ms(cert.validity().not_before.timestamp()),
            not_after_ms: seconds_to_ms(cert.validity().not_after.timestamp()),
        })
    }

    /// The first certificate of a PEM file (the leaf of a chain).
    pub fn from_pem_file(path: &Path, pem: &str) -> Result<CertInfo, PkiError> {
        let chain = certificates(path, pem.as_bytes())?;
        let leaf = chain
            .first()
            .ok_or_else(|| malformed(path, "no certificate"))?;
        CertInfo::from_der(path, leaf)
    }

    /// Refuses a certificate that is not yet valid or has expired, saying which and when.
    pub fn check_current(&self, path: &Path, now_ms: u64) -> Result<(), PkiError> {
        if now_ms < self.not_before_ms {
            return Err(PkiError::NotYetValid {
                path: path.to_path_buf(),
                not_before: rfc3339(self.not_before_ms),
                now: rfc3339(now_ms),
            });
        }
        if now_ms > self.not_after_ms {
            return Err(PkiError::Expired {
                path: path.to_path_buf(),
                not_after: rfc3339(self.not_after_ms),
                now: rfc3339(now_ms),
            });
        }
        Ok(())
    }
}

/// The public key (the bits of its SubjectPublicKeyInfo: for ECDSA, the point) of the
/// first certificate of `pem`.
pub(crate) fn public_key_of(path: &Path, pem: &str) -> Result<Vec<u8>, PkiError> {
    let chain = certificates(path, pem.as_bytes())?;
    let leaf = chain
        .first()
        .ok_or_else(|| malformed(path, "no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| malformed(path, format!("not an X.509 certificate: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// The certificates of a PEM file, in order; anything else in it is an error.
pub fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    pem_blocks(path, bytes)?
        .into_iter()
        .map(|(label, der)| match label.as_str() {
            "CERTIFICATE" => Ok(CertificateDer::from(der)),
            other => Err(malformed(
                path,
                format!("a {other} block where a CERTIFICATE belongs"),
            )),
        })
        .collect()
}

/// Reads a certificate chain, refusing one whose leaf is not valid now.
pub fn load_chain(path: &Path, now_ms: u64) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read_file(path)?;
    let chain = certificates(path, pem.as_bytes())?;
    for der in &chain {
        CertInfo::from_der(path, der)?.check_current(path, now_ms)?;
    }
    Ok(chain)
}

/// Reads a PKCS#8 private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let pem = read_file(path)?;
    key_from_pem(path, &pem)
}

pub(crate) fn key_from_pem(path: &Path, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    let blocks = pem_blocks(path, pem.as_bytes())?;
    let mut keys = blocks
        .into_iter()
        .filter(|(label, _)| label == "PRIVATE KEY");
    let (_, der) = keys
        .next()
        .ok_or_else(|| malformed(path, "no PKCS#8 PRIVATE KEY block"))?;
    let der = Zeroizing::new(der);
    Ok(PrivateKeyDer::Pkcs8(der.to_vec().into()))
}

/// A parsed revocation list.
#[derive(Debug, Clone)]
pub struct Crl {
    /// Revoked serials in hex, with the time of revocation.
    pub revoked: Vec<(String, u64)>,
    pub number: u64,
    pub this_update_ms: u64,
    pub der: CertificateRevocationListDer<'static>,
}

impl Crl {
    pub fn parse(path: &Path, pem: &[u8]) -> Result<Crl, PkiError> {
        let blocks = pem_blocks(path, pem)?;
        let [(label, der)] = blocks.as_slice() else {
            return Err(malformed(
                path,
                "a revocation list file holds exactly one X509 CRL",
            ));
        };
        if label != "X509 CRL" {
            return Err(malformed(
                path,
                format!("a {label} block where an X509 CRL belongs"),
            ));
        }
        let (rest, crl) = x509_parser::parse_x509_crl(der)
            .map_err(|e| malformed(path, format!("not a revocation list: {e}")))?;
        if !rest.is_empty() {
            return Err(malformed(path, "bytes after the revocation list"));
        }
        let number = crl
            .crl_number()
            .map(|n| {
                n.to_bytes_be().iter().fold(0u64, |acc, b| {
                    acc.saturating_mul(256).saturating_add(u64::from(*b))
                })
            })
            .unwrap_or(0);
        Ok(Crl {
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| {
                    (
                        hex(r.raw_serial()),
                        seconds_to_ms(r.revocation_date.timestamp()),
                    )
                })
                .collect(),
            number,
            this_update_ms: seconds_to_ms(crl.last_update().timestamp()),
            der: CertificateRevocationListDer::from(der.clone()),
        })
    }

    pub fn load(path: &Path) -> Result<Crl, PkiError> {
        let pem = read_file(path)?;
        Crl::parse(path, pem.as_bytes())
    }
}

/// Every revocation list of a PEM file (e.g. `crl_bundle`'s), for a verifier.
pub fn crls(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    pem_blocks(path, pem)?
        .into_iter()
        .map(|(label, der)| {
            if label != "X509 CRL" {
                return Err(malformed(
                    path,
                    format!("a {label} block where an X509 CRL belongs"),
                ));
            }
            x509_parser::parse_x509_crl(&der)
                .map_err(|e| malformed(path, format!("not a revocation list: {e}")))?;
            Ok(CertificateRevocationListDer::from(der))
        })
        .collect()
}

/// The platform's root: the only trust anchor of every ztx connection.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    roots: Arc<RootCertStore>,
    trust_domain: String,
    path: PathBuf,
}

impl TrustBundle {
    pub fn load(path: &Path, now_ms: u64) -> Result<TrustBundle, PkiError> {
        let chain = load_chain(path, now_ms)?;
        let mut roots = RootCertStore::empty();
        let mut trust_domain = None;
        for der in chain {
            let info = CertInfo::from_der(path, &der)?;
            if !info.is_ca {
                return Err(malformed(
                    path,
                    format!("{} is not a CA certificate", info.subject),
                ));
            }
            let td = info
                .trust_domain
                .ok_or_else(|| malformed(path, "the root names no spiffe://<trust-domain> URI"))?;
            if trust_domain.get_or_insert_with(|| td.clone()) != &td {
                return Err(malformed(path, "roots of two trust domains in one bundle"));
            }
            roots
                .add(der)
                .map_err(|e| malformed(path, format!("not a usable trust anchor: {e}")))?;
        }
        Ok(TrustBundle {
            roots: Arc::new(roots),
            trust_domain: trust_domain.ok_or_else(|| malformed(path, "no certificate"))?,
            path: path.to_path_buf(),
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }
}

fn refused(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        PkiError::Invalid(why),
    ))))
}

/// The peer's identity, if its certificate carries exactly one URI SAN, a SPIFFE id of
/// `trust_domain` that `allow` admits.
pub fn admitted_identity(
    end_entity: &CertificateDer<'_>,
    trust_domain: &str,
    allow: &Allow,
) -> Result<SpiffeId, rustls::Error> {
    let info = CertInfo::from_der(Path::new("peer certificate"), end_entity)
        .map_err(|e| refused(e.to_string()))?;
    let [uri] = info.uris.as_slice() else {
        return Err(refused(format!(
            "a certificate must carry exactly one URI SAN, its SPIFFE id; it has {}",
            info.uris.len()
        )));
    };
    let id = SpiffeId::parse(uri).map_err(|e| refused(e.to_string()))?;
    if id.trust_domain() != trust_domain {
        return Err(refused(format!(
            "{id} is not of the trust domain {trust_domain}"
        )));
    }
    if !allow.admits(&id) {
        return Err(refused(format!("{id} is not allowed at this endpoint")));
    }
    Ok(id)
}

/// The handshake-signature half of a verifier, the same for both of ours: the provider's
/// algorithms check the peer's signature with the key of the certificate just verified.
macro_rules! handshake_signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// Verifies clients: chain to the platform's root, not revoked by the current CRL (which
/// [`SpiffeClientVerifier::reload_crl`] replaces while the server runs), and a SPIFFE id
/// the endpoint allows. A client without a certificate is refused.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundle: TrustBundle,
    allow: Allow,
    provider: Arc<CryptoProvider>,
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl SpiffeClientVerifier {
    pub fn new(bundle: TrustBundle, allow: Allow, crl: &Crl) -> Result<Arc<Self>, PkiError> {
        let provider = provider();
        let inner = SpiffeClientVerifier::webpki(&bundle, &provider, crl)?;
        Ok(Arc::new(SpiffeClientVerifier {
            bundle,
            allow,
            provider,
            inner: RwLock::new(inner),
        }))
    }

    fn webpki(
        bundle: &TrustBundle,
        provider: &Arc<CryptoProvider>,
        crl: &Crl,
    ) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
        WebPkiClientVerifier::builder_with_provider(bundle.roots(), provider.clone())
            .with_crls([crl.der.clone()])
            // The intermediate's own status would need a list signed by the root, whose
            // key stays offline; a compromised intermediate is replaced, root and all.
            .only_check_end_entity_revocation()
            .build()
            .map_err(|e| PkiError::Invalid(format!("cannot build the client verifier: {e}")))
    }

    /// Takes a new revocation list; connections from then on are checked against it.
    pub fn reload_crl(&self, crl: &Crl) -> Result<(), PkiError> {
        let inner = SpiffeClientVerifier::webpki(&self.bundle, &self.provider, crl)?;
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = inner;
        Ok(())
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Optional in TLS 1.3; every client has exactly one identity to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)?;
        admitted_identity(end_entity, self.bundle.trust_domain(), &self.allow)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures_by_provider!();
}

/// Verifies servers from the client's side: chain to the platform's root, the name the
/// client dialled in the certificate (verify-full), and a SPIFFE id the client expects.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundle: TrustBundle,
    allow: Allow,
    provider: Arc<CryptoProvider>,
    inner: Arc<WebPkiServerVerifier>,
}

impl SpiffeServerVerifier {
    pub fn new(bundle: TrustBundle, allow: Allow) -> Result<Arc<Self>, PkiError> {
        let provider = provider();
        let inner = WebPkiServerVerifier::builder_with_provider(bundle.roots(), provider.clone())
            .build()
            .map_err(|e| PkiError::Invalid(format!("cannot build the server verifier: {e}")))?;
        Ok(Arc::new(SpiffeServerVerifier {
            bundle,
            allow,
            provider,
            inner,
        }))
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        admitted_identity(end_entity, self.bundle.trust_domain(), &self.allow)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures_by_provider!();
}

/// A TLS 1.3 server that requires a client certificate `verifier` admits and presents
/// `identity` (re-read at every handshake, so rotation needs no restart).
pub fn server_config(
    verifier: Arc<SpiffeClientVerifier>,
    identity: Arc<RotatingIdentity>,
) -> Result<ServerConfig, PkiError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity))
}

/// A TLS 1.3 client that presents `identity` and accepts only servers `verifier` admits.
pub fn client_config(
    verifier: Arc<SpiffeServerVerifier>,
    identity: Arc<RotatingIdentity>,
) -> Result<ClientConfig, PkiError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(identity))
}
