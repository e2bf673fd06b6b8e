//! The admin API's listener: mutual TLS with the platform's own CA ([`ztx_pki`]). Each
//! connection's handshake runs on a task of its own (bounded in time), so a client that
//! stalls holds up nobody; a refused handshake is reported to the caller (which logs it
//! in the audit log) and never reaches the router. What the router sees of an admitted
//! connection is an [`AdminPeer`] naming the operator's SPIFFE id.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use ztx_pki::verify::CertInfo;

use crate::admin::{AdminPeer, OperatorCert};

/// How long a client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Admitted connections waiting for the router.
const BACKLOG: usize = 64;
/// Handshakes in progress at once; connections past it are closed unanswered (and not
/// logged: a flood must not become a flood of audit entries).
const HANDSHAKES: usize = 256;

/// The serials of revoked operator certificates, shared with every admitted connection:
/// each request checks its certificate against the list current at that moment.
#[derive(Clone, Debug, Default)]
pub struct Revocations(Arc<RwLock<HashSet<String>>>);

impl Revocations {
    pub fn replace(&self, serials: impl IntoIterator<Item = String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = serials.into_iter().collect();
    }

    pub fn contains(&self, serial: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(serial)
    }
}

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
        revocations: Revocations,
        refused: Refused,
    ) -> std::io::Result<TlsAdminListener> {
        let local = tcp.local_addr()?;
        let (tx, admitted) = mpsc::channel(BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
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
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let (acceptor, tx, refused) = (acceptor.clone(), tx.clone(), refused.clone());
                let revocations = revocations.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let peer = AdminPeer {
                                addr,
                                operator: operator_of(&tls, revocations),
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

/// The operator's certificate; the verifier admitted only `…/operator/*` ones.
fn operator_of(tls: &TlsStream<TcpStream>, revocations: Revocations) -> Option<OperatorCert> {
    let leaf = tls.get_ref().1.peer_certificates()?.first()?;
    let info = CertInfo::from_der(Path::new("client certificate"), leaf).ok()?;
    let id = info.spiffe?;
    id.operator()?;
    Some(OperatorCert {
        id: id.to_string(),
        serial: info.serial,
        not_after_ms: info.not_after_ms,
        revocations,
    })
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
