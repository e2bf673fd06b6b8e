//! The admin API's listener: mutual TLS with the platform's own CA ([`ztx_pki`]). Each
//! connection's handshake runs on a task of its own (bounded in time), so a client that
//! stalls holds up nobody; a refused handshake is reported to the caller (which logs it
//! in the audit log) and never reaches the router. What the router sees of an admitted
//! connection is an [`AdminPeer`] naming the operator's SPIFFE id.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use ztx_pki::verify::CertInfo;

use crate::admin::AdminPeer;

/// How long a client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Admitted connections waiting for the router.
const BACKLOG: usize = 64;

/// Called with the address and the reason of every refused handshake.
pub type Refused = Arc<dyn Fn(SocketAddr, String) + Send + Sync>;

/// A TCP listener whose connections are TLS, admitted by `config`'s client verifier.
#[derive(Debug)]
pub struct TlsAdminListener {
    admitted: mpsc::Receiver<(TlsStream<TcpStream>, AdminPeer)>,
    local: SocketAddr,
}

impl TlsAdminListener {
    /// Starts accepting on `tcp` (inside a tokio runtime).
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        refused: Refused,
    ) -> std::io::Result<TlsAdminListener> {
        let local = tcp.local_addr()?;
        let (tx, admitted) = mpsc::channel(BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let (stream, addr) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "admin listener cannot accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx, refused) = (acceptor.clone(), tx.clone(), refused.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let peer = AdminPeer {
                                addr,
                                operator: operator_of(&tls),
                            };
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => refused(addr, describe(&e)),
                        Err(_) => refused(addr, format!("no TLS handshake within {HANDSHAKE:?}")),
                    }
                });
            }
        });
        Ok(TlsAdminListener { admitted, local })
    }
}

/// Why a handshake failed, in words (rustls's own text for our verifiers' refusals is
/// their `Debug` form).
fn describe(e: &std::io::Error) -> String {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        _ => e.to_string(),
    }
}

/// The operator's SPIFFE id; the verifier admitted only `…/operator/*` certificates.
fn operator_of(tls: &TlsStream<TcpStream>) -> Option<String> {
    let leaf = tls.get_ref().1.peer_certificates()?.first()?;
    let id = CertInfo::from_der(Path::new("client certificate"), leaf)
        .ok()?
        .spiffe?;
    id.operator().is_some().then(|| id.to_string())
}

impl axum::serve::Listener for TlsAdminListener {
    type Io = TlsStream<TcpStream>;
    type Addr = AdminPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.admitted.recv().await {
            Some(admitted) => admitted,
            // The accepting task ended (it never does while the runtime runs).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(AdminPeer {
            addr: self.local,
            operator: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsAdminListener>>
    for AdminPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsAdminListener>) -> Self {
        stream.remote_addr().clone()
    }
}
