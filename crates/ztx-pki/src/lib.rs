//! ztx's internal public-key infrastructure: nothing is trusted for being inside the
//! network, so every connection between ztx's services, and every operator's, is mutual
//! TLS with a short-lived certificate from the platform's own certificate authority.
//!
//! - [`Authority`]: the CA on disk — a root (whose key can be taken offline once it has
//!   signed the intermediate), an intermediate that issues, and the revocation list.
//! - [`SpiffeId`]: the identity a certificate carries, `spiffe://<trust-domain>/<path>`,
//!   as its only URI SAN (the X.509-SVID convention); workloads are
//!   `spiffe://<td>/<service>`, people `spiffe://<td>/operator/<name>`.
//! - [`verify`]: rustls verifiers that trust the platform's root alone (never the public
//!   web's), check revocation against a reloadable CRL, and admit only the SPIFFE ids an
//!   endpoint allows.
//! - [`RotatingIdentity`]: a certificate that is replaced at half its life without a
//!   restart; connections already open keep theirs.
//!
//! Keys are ECDSA P-256 (what PostgreSQL's and every TLS stack's certificate
//! authentication accepts); the cryptography is `ring`'s, through rcgen and rustls.

mod authority;
mod rotate;
mod spiffe;
pub mod verify;

pub use authority::{
    Authority, Issued, Lifetimes, Request, Signed, Subject, make_request, write_request,
};
pub use rotate::RotatingIdentity;
pub use spiffe::{Allow, SpiffeId, SpiffeIdError};

use std::path::PathBuf;

/// Why a PKI operation failed. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that should hold a certificate, key or CRL does not hold a usable one.
    #[error("{path}: {problem}")]
    Malformed { path: PathBuf, problem: String },
    #[error("{path}: the certificate is not valid before {not_before} (it is now {now})")]
    NotYetValid {
        path: PathBuf,
        not_before: String,
        now: String,
    },
    #[error("{path}: the certificate expired at {not_after} (it is now {now})")]
    Expired {
        path: PathBuf,
        not_after: String,
        now: String,
    },
    #[error("{0}")]
    Spiffe(#[from] SpiffeIdError),
    #[error("a certificate authority already exists in {0}")]
    AlreadyInitialized(PathBuf),
    #[error("no certificate authority in {0} (run `ztx pki init`)")]
    NotInitialized(PathBuf),
    /// The root's key is needed (to sign a new intermediate) but was taken offline.
    #[error("the root key {0} is not here: bring it back from offline storage to do this")]
    RootOffline(PathBuf),
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Sign(e.to_string())
    }
}

/// The last instant X.509 can write (9999-12-31T23:59:59Z, RFC 5280's "no expiry").
const LAST_SECOND: i64 = 253_402_300_799;

/// Milliseconds since the Unix epoch as a `time` instant, saturating at the end of 9999.
pub(crate) fn instant(ms: u64) -> time::OffsetDateTime {
    let seconds = i64::try_from(ms / 1000)
        .unwrap_or(i64::MAX)
        .min(LAST_SECOND);
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// An instant (ms since the Unix epoch) in RFC 3339, for messages.
pub fn rfc3339(ms: u64) -> String {
    instant(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{ms} ms after the epoch"))
}
