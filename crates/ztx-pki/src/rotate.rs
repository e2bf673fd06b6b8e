//! A certificate that is replaced while the process runs. rustls asks the resolver for
//! the certificate at every handshake, so installing a new one affects the connections
//! made from then on; those already open keep the one they were made with.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::verify::{CertInfo, certificates, key_from_pem};
use crate::{Authority, Issued, PkiError, Request};

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// This process's own certificate, rotated at half its life.
#[derive(Debug)]
pub struct RotatingIdentity {
    current: RwLock<Current>,
}

fn load(chain_pem: &str, key_pem: &str, origin: &Path) -> Result<Current, PkiError> {
    let chain = certificates(origin, chain_pem.as_bytes())?;
    let leaf = chain.first().ok_or_else(|| PkiError::Malformed {
        path: origin.to_path_buf(),
        problem: "no certificate".into(),
    })?;
    let info = CertInfo::from_der(origin, leaf)?;
    let key = key_from_pem(origin, key_pem)?;
    let signing =
        rustls::crypto::ring::sign::any_ecdsa_type(&key).map_err(|e| PkiError::Malformed {
            path: origin.to_path_buf(),
            problem: format!("not an ECDSA key rustls can sign with: {e}"),
        })?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|e| PkiError::Malformed {
        path: origin.to_path_buf(),
        problem: format!("the key is not the certificate's: {e}"),
    })?;
    Ok(Current {
        key: Arc::new(key),
        info,
    })
}

impl RotatingIdentity {
    /// From a chain and its key in PEM; `origin` names them in errors.
    pub fn from_pem(chain_pem: &str, key_pem: &str, origin: &Path) -> Result<Self, PkiError> {
        Ok(RotatingIdentity {
            current: RwLock::new(load(chain_pem, key_pem, origin)?),
        })
    }

    pub fn from_issued(issued: &Issued) -> Result<Self, PkiError> {
        RotatingIdentity::from_pem(&issued.chain_pem, &issued.key_pem, Path::new("issued"))
    }

    /// Installs a new certificate for the handshakes from now on.
    pub fn install(&self, chain_pem: &str, key_pem: &str, origin: &Path) -> Result<(), PkiError> {
        let next = load(chain_pem, key_pem, origin)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// What the current certificate says about itself.
    pub fn info(&self) -> CertInfo {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .info
            .clone()
    }

    /// Whether half of the current certificate's life has passed.
    pub fn renewal_due(&self, now_ms: u64) -> bool {
        let info = self.info();
        let half = info.not_after_ms.saturating_sub(info.not_before_ms) / 2;
        now_ms >= info.not_before_ms.saturating_add(half)
    }

    /// With an authority in the same process: issues and installs a successor once the
    /// current certificate is half-way through its life. Returns whether it did.
    pub fn renew_if_due(
        &self,
        authority: &Authority,
        request: &Request,
        now_ms: u64,
    ) -> Result<bool, PkiError> {
        if !self.renewal_due(now_ms) {
            return Ok(false);
        }
        let issued = authority.issue(request, now_ms)?;
        self.install(&issued.chain_pem, &issued.key_pem, Path::new("renewed"))?;
        Ok(true)
    }

    fn key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .key
            .clone()
    }
}

impl ResolvesServerCert for RotatingIdentity {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

impl ResolvesClientCert for RotatingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
