//! PostgreSQL over mutual TLS, with the platform's own CA as the only trust anchor.
//!
//! The URL takes libpq's parameters: `sslmode=verify-full` (the only mode accepted: the
//! server's certificate must chain to `sslrootcert` and name the host dialled),
//! `sslrootcert` (the platform's root, `pki/root.pem`), `sslcert` and `sslkey` (this
//! service's certificate, whose common name is its database role, for `cert`
//! authentication). They are read at every connection, so renewed files are picked up by
//! the next one. The adapter to `tokio-postgres`'s TLS traits is written here rather than
//! taken from `tokio-postgres-rustls`, which builds in the public web's and the system's
//! roots: nothing in this path should be able to trust anyone but the platform.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Result, StoreError};

/// The TLS files a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    root: PathBuf,
    client: Option<(PathBuf, PathBuf)>,
    /// libpq's `sslcrl`: revocation lists the server's certificate is checked against.
    crl: Option<PathBuf>,
}

/// Refuses plain text to anything but a Unix socket or a loopback address: a database
/// elsewhere is reached with `sslmode=verify-full` or not at all.
pub(crate) fn check_local(config: &tokio_postgres::Config) -> Result<()> {
    use tokio_postgres::config::Host;
    let local = |host: &Host| match host {
        #[cfg(unix)]
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    let hosts = config.get_hosts();
    if hosts.is_empty() || !hosts.iter().all(local) {
        return Err(tls_error(
            "a database that is not on this machine is reached over TLS only: add \
             sslmode=verify-full&sslrootcert=…&sslcert=…&sslkey=… to the URL",
        ));
    }
    if config.get_hostaddrs().iter().any(|ip| !ip.is_loopback()) {
        return Err(tls_error("hostaddr must be a loopback address without TLS"));
    }
    Ok(())
}

fn tls_error(message: impl Into<String>) -> StoreError {
    StoreError::Tls(message.into())
}

/// Splits libpq's TLS parameters off `url`: the URL as `tokio-postgres` reads it (with
/// `sslmode=require`, so that it never falls back to plain text) and the files, or the
/// URL unchanged when it asks for no TLS.
pub(crate) fn split(url: &str) -> Result<(String, Option<TlsFiles>)> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(tls_error(
            "the database is given as a postgres:// URL (libpq's key=value form is not taken)",
        ));
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let (mut mode, mut root, mut cert, mut key, mut crl) = (None, None, None, None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            "sslcert" => &mut cert,
            "sslkey" => &mut key,
            "sslcrl" => &mut crl,
            _ => {
                rest.push(pair);
                continue;
            }
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(tls_error(format!(
                "{name} is given twice in the database URL"
            )));
        }
    }
    let tls_asked = root.is_some() || cert.is_some() || key.is_some() || crl.is_some();
    match mode.as_deref() {
        None if !tls_asked => return Ok((url.to_owned(), None)),
        Some("verify-full") => {}
        Some("disable") if !tls_asked => {
            rest.push("sslmode=disable");
            return Ok((join(base, &rest), None));
        }
        other => {
            return Err(tls_error(format!(
                "sslmode={} is not accepted: use sslmode=verify-full with sslrootcert (and \
                 sslcert and sslkey for certificate authentication)",
                other.unwrap_or("(missing)")
            )));
        }
    }
    let root = root.ok_or_else(|| tls_error("sslmode=verify-full needs sslrootcert"))?;
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        _ => return Err(tls_error("sslcert and sslkey go together")),
    };
    rest.push("sslmode=require");
    Ok((
        join(base, &rest),
        Some(TlsFiles {
            root: PathBuf::from(root),
            client,
            crl: crl.map(PathBuf::from),
        }),
    ))
}

fn join(base: &str, params: &[&str]) -> String {
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn pki(e: ztx_pki::PkiError) -> StoreError {
    tls_error(e.to_string())
}

/// The TLS connector for one connection: the files as they are now.
pub(crate) fn connector(files: &TlsFiles) -> Result<MakeTls> {
    let now = now_ms();
    let mut roots = rustls::RootCertStore::empty();
    for root in ztx_pki::verify::load_chain(&files.root, now).map_err(pki)? {
        roots
            .add(root)
            .map_err(|e| tls_error(format!("{}: {e}", files.root.display())))?;
    }
    let provider = ztx_pki::verify::provider();
    let mut verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    if let Some(path) = &files.crl {
        let pem = std::fs::read(path).map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
        let crls = ztx_pki::verify::crls(path, &pem).map_err(pki)?;
        verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = verifier
        .build()
        .map_err(|e| tls_error(format!("cannot check the server: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_webpki_verifier(verifier);
    let config = match &files.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = ztx_pki::verify::load_chain(cert, now).map_err(pki)?;
            let key_der = ztx_pki::verify::load_key(key).map_err(pki)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| tls_error(format!("{}: {e}", key_path(key))))?
        }
    };
    Ok(MakeTls(Arc::new(config)))
}

fn key_path(path: &Path) -> String {
    path.display().to_string()
}

/// `tokio-postgres`'s TLS factory over rustls.
#[derive(Clone)]
pub(crate) struct MakeTls(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Tls<S>;
    type TlsConnect = Connect;
    type Error = rustls::Error;

    fn make_tls_connect(&mut self, domain: &str) -> std::result::Result<Connect, rustls::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| rustls::Error::General(format!("{domain:?} is not a server name")))?;
        Ok(Connect {
            config: self.0.clone(),
            name,
        })
    }
}

/// One connection's handshake.
pub(crate) struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Tls<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Tls<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(Tls)
        })
    }
}

/// An established TLS connection to the server.
pub(crate) struct Tls<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tls<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tls<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Tls<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // Certificate authentication does not use SCRAM's channel binding.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn plain_text_is_for_this_machine_only() {
        for url in [
            "postgres://svc@127.0.0.1:5432/ztx",
            "postgres://svc@localhost/ztx",
            "postgres://svc@[::1]:5432/ztx",
            "postgres://svc@%2Frun%2Fpostgresql/ztx",
        ] {
            let config: tokio_postgres::Config = url.parse().unwrap();
            check_local(&config).unwrap();
        }
        for url in [
            "postgres://svc@db.example.com/ztx",
            "postgres://svc@10.0.0.5/ztx",
            "postgres://svc@127.0.0.1,db.example.com/ztx",
            "postgres://svc@localhost/ztx?hostaddr=10.0.0.5",
        ] {
            let config: tokio_postgres::Config = url.parse().unwrap();
            let err = check_local(&config).unwrap_err().to_string();
            assert!(
                err.contains("TLS") || err.contains("loopback"),
                "{url}: {err}"
            );
        }
        let err = split("host=db.example.com user=svc sslmode=prefer").unwrap_err();
        assert!(err.to_string().contains("postgres:// URL"), "{err}");
    }

    #[test]
    fn a_url_without_tls_parameters_is_left_alone() {
        let url = "postgres://svc@127.0.0.1:5432/ztx?connect_timeout=5";
        assert_eq!(split(url).unwrap(), (url.to_owned(), None));
    }

    #[test]
    fn verify_full_is_taken_apart_and_requires_tls() {
        let (url, files) = split(
            "postgres://exchange@localhost:5432/ztx?sslmode=verify-full&sslrootcert=/p/root.pem&sslcert=/p/x.pem&sslkey=/p/x.key&application_name=ztx",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://exchange@localhost:5432/ztx?application_name=ztx&sslmode=require"
        );
        let files = files.unwrap();
        assert_eq!(files.root, PathBuf::from("/p/root.pem"));
        assert_eq!(
            files.client,
            Some((PathBuf::from("/p/x.pem"), PathBuf::from("/p/x.key")))
        );
    }

    #[test]
    fn weaker_or_incomplete_settings_are_refused_by_name() {
        for (url, expected) in [
            (
                "postgres://h/d?sslmode=require&sslrootcert=r",
                "sslmode=require",
            ),
            ("postgres://h/d?sslmode=prefer", "sslmode=prefer"),
            ("postgres://h/d?sslrootcert=r", "sslmode=(missing)"),
            ("postgres://h/d?sslmode=verify-full", "needs sslrootcert"),
            (
                "postgres://h/d?sslmode=verify-full&sslrootcert=r&sslcert=c",
                "go together",
            ),
            (
                "postgres://h/d?sslmode=verify-full&sslmode=verify-full&sslrootcert=r",
                "twice",
            ),
        ] {
            let err = split(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}
