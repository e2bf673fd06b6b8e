//! Real TLS 1.3 handshakes on loopback between ztx's verifiers and certificates from its
//! own authority: who gets in, who is refused, and rotation without dropping anyone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use ztx_pki::verify::{
    Crl, SpiffeClientVerifier, SpiffeServerVerifier, TrustBundle, client_config, server_config,
};
use ztx_pki::{Allow, Authority, Lifetimes, PkiError, Request, RotatingIdentity, Subject};

const TD: &str = "ztx.test";
const HOUR: u64 = 3_600_000;

fn now() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

struct Ca {
    dir: tempfile::TempDir,
    authority: Authority,
}

fn ca(td: &str) -> Ca {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::init(dir.path(), td, Lifetimes::default(), now()).unwrap();
    Ca { dir, authority }
}

impl Ca {
    fn bundle(&self) -> TrustBundle {
        TrustBundle::load(&self.authority.root_path(), now()).unwrap()
    }

    fn crl(&self) -> Crl {
        Crl::load(&self.authority.crl_path()).unwrap()
    }

    fn workload(&self, service: &str, at: u64, lifetime: u64) -> ztx_pki::Issued {
        let request = workload_request(service, lifetime);
        self.authority.issue(&request, at).unwrap()
    }

    fn operator(&self, name: &str) -> ztx_pki::Issued {
        let request = Request {
            subject: Subject::Operator { name: name.into() },
            lifetime_ms: HOUR,
        };
        self.authority.issue(&request, now()).unwrap()
    }
}

fn workload_request(service: &str, lifetime: u64) -> Request {
    Request {
        subject: Subject::Workload {
            service: service.into(),
            dns: vec!["localhost".into()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        lifetime_ms: lifetime,
    }
}

fn identity(issued: &ztx_pki::Issued) -> Arc<RotatingIdentity> {
    Arc::new(RotatingIdentity::from_issued(issued).unwrap())
}

/// A server that answers each connection with the SPIFFE id it admitted, then echoes
/// lines.
struct Server {
    addr: SocketAddr,
    verifier: Arc<SpiffeClientVerifier>,
    identity: Arc<RotatingIdentity>,
}

async fn serve(ca: &Ca, allow: &[&str]) -> Server {
    let verifier =
        SpiffeClientVerifier::new(ca.bundle(), Allow::new(TD, allow).unwrap(), &ca.crl()).unwrap();
    let identity = identity(&ca.workload("admin", now(), HOUR));
    let config = server_config(verifier.clone(), identity.clone()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                let info = ztx_pki::verify::CertInfo::from_der(Path::new("peer"), &peer).unwrap();
                let (read, mut write) = tokio::io::split(tls);
                let mut lines = BufReader::new(read).lines();
                let hello = format!("{}\n", info.spiffe.unwrap());
                write.write_all(hello.as_bytes()).await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    write
                        .write_all(format!("{line}\n").as_bytes())
                        .await
                        .unwrap();
                }
            });
        }
    });
    Server {
        addr,
        verifier,
        identity,
    }
}

type Conn = tokio_rustls::client::TlsStream<TcpStream>;

async fn dial(
    server: &Server,
    config: rustls::ClientConfig,
    name: &str,
) -> Result<(Conn, String), String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    // In TLS 1.3 the server judges the client's certificate after the client has
    // finished its side: a refusal arrives as an alert on the first read.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        use tokio::io::AsyncReadExt as _;
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut byte)).await {
            Ok(Ok(1)) if byte[0] == b'\n' => break,
            Ok(Ok(1)) => first.push(byte[0]),
            Ok(Ok(_)) => return Err("closed".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no answer".into()),
        }
    }
    Ok((tls, String::from_utf8(first).unwrap()))
}

async fn connect_as(
    server: &Server,
    ca: &Ca,
    who: &ztx_pki::Issued,
) -> Result<(Conn, String), String> {
    let verifier = SpiffeServerVerifier::new(
        ca.bundle(),
        Allow::new(TD, &["spiffe://ztx.test/admin"]).unwrap(),
    )
    .unwrap();
    dial(
        server,
        client_config(verifier, identity(who)).unwrap(),
        "localhost",
    )
    .await
}

async fn echo(conn: &mut Conn, line: &str) -> String {
    use tokio::io::AsyncReadExt as _;
    conn.write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; line.len() + 1];
    conn.read_exact(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap().trim_end().to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_workload_and_an_operator_of_the_platform_get_in_as_themselves() {
    runtime().block_on(async {
        let ca = ca(TD);
        let server = serve(
            &ca,
            &["spiffe://ztx.test/exchange", "spiffe://ztx.test/operator/*"],
        )
        .await;
        let (mut conn, who) = connect_as(&server, &ca, &ca.workload("exchange", now(), HOUR))
            .await
            .unwrap();
        assert_eq!(who, "spiffe://ztx.test/exchange");
        assert_eq!(echo(&mut conn, "ping").await, "ping");
        let (_, who) = connect_as(&server, &ca, &ca.operator("alice"))
            .await
            .unwrap();
        assert_eq!(who, "spiffe://ztx.test/operator/alice");
    });
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    runtime().block_on(async {
        let ca = ca(TD);
        let server = serve(&ca, &["spiffe://ztx.test/operator/*"]).await;
        let verifier = SpiffeServerVerifier::new(
            ca.bundle(),
            Allow::new(TD, &["spiffe://ztx.test/admin"]).unwrap(),
        )
        .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(ztx_pki::verify::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let refused = dial(&server, config, "localhost").await.unwrap_err();
        assert!(
            refused.contains("CertificateRequired") || refused.contains("certificate"),
            "{refused}"
        );
    });
}

#[test]
fn a_certificate_from_another_ca_is_refused_even_with_the_same_trust_domain() {
    runtime().block_on(async {
        let ours = ca(TD);
        let theirs = ca(TD);
        let server = serve(&ours, &["spiffe://ztx.test/operator/*"]).await;
        let forged = theirs.operator("alice");
        // Its chain names our root's subject, so the server checks their intermediate's
        // signature with our root's key, which fails (a signature error, not "unknown").
        let refused = connect_as(&server, &ours, &forged).await.unwrap_err();
        assert!(
            ["UnknownCA", "DecryptError", "BadSignature"]
                .iter()
                .any(|e| refused.contains(e)),
            "{refused}"
        );
    });
}

#[test]
fn a_revoked_certificate_is_refused_once_the_server_reloads_the_list() {
    runtime().block_on(async {
        let ca = ca(TD);
        let server = serve(&ca, &["spiffe://ztx.test/operator/*"]).await;
        let alice = ca.operator("alice");
        let (mut before, _) = connect_as(&server, &ca, &alice).await.unwrap();
        assert!(ca.authority.revoke(&alice.serial, now()).unwrap());
        assert!(
            !ca.authority
                .revoke(&alice.serial.to_uppercase(), now())
                .unwrap()
        );
        let crl = ca.crl();
        assert_eq!(crl.revoked.len(), 1);
        assert_eq!(crl.number, 2);
        server.verifier.reload_crl(&crl).unwrap();
        let refused = connect_as(&server, &ca, &alice).await.unwrap_err();
        assert!(
            refused.contains("Revoked") || refused.contains("revoked"),
            "{refused}"
        );
        // Another operator still gets in; a connection made before is not cut.
        connect_as(&server, &ca, &ca.operator("bob")).await.unwrap();
        assert_eq!(echo(&mut before, "still here").await, "still here");
    });
}

#[test]
fn an_expired_certificate_is_refused() {
    runtime().block_on(async {
        let ca = ca(TD);
        let server = serve(&ca, &["spiffe://ztx.test/exchange"]).await;
        let old = ca.workload("exchange", now() - 3 * HOUR, HOUR);
        let refused = connect_as(&server, &ca, &old).await.unwrap_err();
        assert!(
            refused.contains("Expired") || refused.contains("expired"),
            "{refused}"
        );
    });
}

#[test]
fn an_identity_the_endpoint_does_not_allow_is_refused() {
    runtime().block_on(async {
        let ca = ca(TD);
        let server = serve(&ca, &["spiffe://ztx.test/operator/*"]).await;
        let exchange = ca.workload("exchange", now(), HOUR);
        let refused = connect_as(&server, &ca, &exchange).await.unwrap_err();
        // The server's reason reaches the client only as an alert; the server logs it.
        assert!(
            refused.contains("alert") || refused.contains("closed"),
            "{refused}"
        );
        connect_as(&server, &ca, &ca.operator("alice"))
            .await
            .unwrap();
    });
}

#[test]
fn plain_tcp_gets_no_answer() {
    runtime().block_on(async {
        use tokio::io::AsyncReadExt as _;
        let ca = ca(TD);
        let server = serve(&ca, &["spiffe://ztx.test/operator/*"]).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /ztx/admin/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        // At most a TLS alert record (content type 21), never an HTTP answer or an id.
        assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    });
}

#[test]
fn a_client_refuses_a_server_that_is_not_the_one_it_dialled() {
    runtime().block_on(async {
        let ca = ca(TD);
        let server = serve(&ca, &["spiffe://ztx.test/operator/*"]).await;
        let alice = ca.operator("alice");
        // The server's certificate names localhost and 127.0.0.1, not this.
        let verifier = SpiffeServerVerifier::new(
            ca.bundle(),
            Allow::new(TD, &["spiffe://ztx.test/admin"]).unwrap(),
        )
        .unwrap();
        let config = client_config(verifier, identity(&alice)).unwrap();
        let refused = dial(&server, config, "db.example").await.unwrap_err();
        assert!(
            refused.contains("NotValidForName") || refused.contains("name"),
            "{refused}"
        );
        // Nor one whose SPIFFE id is not the expected service's.
        let verifier = SpiffeServerVerifier::new(
            ca.bundle(),
            Allow::new(TD, &["spiffe://ztx.test/custody"]).unwrap(),
        )
        .unwrap();
        let config = client_config(verifier, identity(&alice)).unwrap();
        let refused = dial(&server, config, "localhost").await.unwrap_err();
        assert!(refused.contains("not allowed"), "{refused}");
    });
}

#[test]
fn rotation_at_half_life_serves_the_new_certificate_without_dropping_connections() {
    runtime().block_on(async {
        let ca = ca(TD);
        let server = serve(&ca, &["spiffe://ztx.test/operator/*"]).await;
        let alice = ca.operator("alice");
        let (mut open, _) = connect_as(&server, &ca, &alice).await.unwrap();
        // A certificate of 2 s (plus the minute every certificate is backdated).
        let short = ca.workload("admin", now(), 2_000);
        server
            .identity
            .install(&short.chain_pem, &short.key_pem, Path::new("short"))
            .unwrap();
        let first = server.identity.info();
        let request = workload_request("admin", 2_000);
        let half_way = first.not_before_ms + (first.not_after_ms - first.not_before_ms) / 2;
        assert!(!server.identity.renewal_due(half_way - 1));
        assert!(server.identity.renewal_due(half_way));
        assert!(
            !server
                .identity
                .renew_if_due(&ca.authority, &request, half_way - 1)
                .unwrap()
        );
        while now() < half_way {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            server
                .identity
                .renew_if_due(&ca.authority, &request, now())
                .unwrap()
        );
        let second = server.identity.info();
        assert_ne!(first.serial, second.serial);
        let (fresh, _) = connect_as(&server, &ca, &alice).await.unwrap();
        let presented = fresh.get_ref().1.peer_certificates().unwrap()[0].clone();
        let presented = ztx_pki::verify::CertInfo::from_der(Path::new("peer"), &presented).unwrap();
        assert_eq!(presented.serial, second.serial);
        assert_eq!(echo(&mut open, "after rotation").await, "after rotation");
    });
}

#[test]
fn an_expired_or_future_file_is_refused_saying_which_and_when() {
    let ca = ca(TD);
    let dir = tempfile::tempdir().unwrap();
    let old = ca.workload("exchange", now() - 3 * HOUR, HOUR);
    let (cert, _) = old.write(dir.path(), "old").unwrap();
    let err = ztx_pki::verify::load_chain(&cert, now()).unwrap_err();
    assert!(matches!(err, PkiError::Expired { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("old.pem") && text.contains("expired at"),
        "{text}"
    );
    let future = ca.workload("exchange", now() + 3 * HOUR, HOUR);
    let (cert, _) = future.write(dir.path(), "future").unwrap();
    let text = ztx_pki::verify::load_chain(&cert, now())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("future.pem") && text.contains("not valid before"),
        "{text}"
    );
}

#[test]
fn malformed_files_are_refused_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty.pem", b"", "no PEM block"),
        (
            "garbage.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "not PEM",
        ),
        (
            "key.pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "PRIVATE KEY block where a CERTIFICATE belongs",
        ),
        (
            "truncated.pem",
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "not an X.509 certificate",
        ),
    ];
    for (name, bytes, problem) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let text = ztx_pki::verify::load_chain(&path, now())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(name) && text.contains(problem),
            "{name}: {text}"
        );
    }
    let crl = dir.path().join("crl.pem");
    std::fs::write(
        &crl,
        b"-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let text = Crl::load(&crl).unwrap_err().to_string();
    assert!(
        text.contains("crl.pem") && text.contains("not a revocation list"),
        "{text}"
    );
    let missing = ztx_pki::verify::load_key(&dir.path().join("nope.key")).unwrap_err();
    assert!(missing.to_string().contains("nope.key"), "{missing}");
    // A key file that holds a certificate instead.
    let ca = ca(TD);
    let (cert, _) = ca.operator("alice").write(dir.path(), "alice").unwrap();
    let wrong = ztx_pki::verify::load_key(&cert).unwrap_err().to_string();
    assert!(
        wrong.contains("alice.pem") && wrong.contains("no PKCS#8 PRIVATE KEY"),
        "{wrong}"
    );
}

#[test]
fn the_authority_refuses_to_overwrite_itself_and_keeps_working_with_the_root_offline() {
    let ca = ca(TD);
    let again = Authority::init(ca.dir.path(), TD, Lifetimes::default(), now()).unwrap_err();
    assert!(matches!(again, PkiError::AlreadyInitialized(_)), "{again}");
    std::fs::remove_file(ca.dir.path().join("root.key")).unwrap();
    let mut reopened = Authority::open(ca.dir.path(), Lifetimes::default()).unwrap();
    assert_eq!(reopened.trust_domain(), TD);
    reopened
        .issue(&workload_request("exchange", HOUR), now())
        .unwrap();
    let offline = reopened.renew_intermediate(now()).unwrap_err();
    assert!(matches!(offline, PkiError::RootOffline(_)), "{offline}");
}

#[test]
fn a_renewed_intermediate_keeps_the_list_and_what_it_issues_gets_in() {
    runtime().block_on(async {
        let mut ca = ca(TD);
        let alice = ca.operator("alice");
        let carol = ca.operator("carol");
        ca.authority.revoke(&alice.serial, now()).unwrap();
        ca.authority.renew_intermediate(now()).unwrap();
        let crl = ca.crl();
        assert_eq!(crl.revoked.len(), 1);
        let server = serve(&ca, &["spiffe://ztx.test/operator/*"]).await;
        connect_as(&server, &ca, &ca.operator("bob")).await.unwrap();
        assert!(connect_as(&server, &ca, &alice).await.is_err());
        // What the old intermediate issued has no list signed by its issuer any more, so
        // it is refused too (unknown revocation status is never taken as "not revoked"):
        // certificates are issued again after a renewal.
        let refused = connect_as(&server, &ca, &carol).await.unwrap_err();
        assert!(!refused.is_empty());
    });
}

#[test]
fn an_authority_whose_key_is_not_its_certificates_is_refused() {
    let ca = ca(TD);
    let other = self::ca(TD);
    std::fs::copy(
        other.dir.path().join("intermediate.key"),
        ca.dir.path().join("intermediate.key"),
    )
    .unwrap();
    let err = Authority::open(ca.dir.path(), Lifetimes::default()).unwrap_err();
    assert!(err.to_string().contains("not the key of"), "{err}");
}

#[test]
fn issued_files_take_plain_names_only() {
    let ca = ca(TD);
    let issued = ca.operator("alice");
    for bad in ["root", "intermediate", "crl", "../x", "a/b", ".hidden", ""] {
        assert!(
            issued.write(ca.dir.path(), bad).is_err(),
            "{bad:?} accepted"
        );
    }
    assert!(ca.dir.path().join("root.key").exists());
    // A stale temporary file is not reused: the key is still owner-only.
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = issued.write(dir.path(), "alice").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o077,
            0
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn workload_names_are_checked_and_role_and_operator_names_are_refused() {
    let ca = ca(TD);
    for bad in [
        "",
        "a/../b",
        "Exchange Service",
        "operator/alice",
        "operator",
    ] {
        let err = ca
            .authority
            .issue(&workload_request(bad, HOUR), now())
            .unwrap_err();
        assert!(!err.to_string().is_empty(), "{bad}");
    }
    let request = Request {
        subject: Subject::Operator { name: "a/b".into() },
        lifetime_ms: HOUR,
    };
    assert!(ca.authority.issue(&request, now()).is_err());
    assert!(
        Authority::init(
            tempfile::tempdir().unwrap().path(),
            "Not A Domain",
            Lifetimes::default(),
            now()
        )
        .is_err()
    );
}

#[test]
fn operators_revoking_at_once_lose_no_revocation() {
    let ca = ca(TD);
    let serials: Vec<String> = (0..8)
        .map(|i| ca.operator(&format!("op{i}")).serial)
        .collect();
    std::thread::scope(|scope| {
        for serial in &serials {
            let dir = ca.dir.path();
            scope.spawn(move || {
                let authority = Authority::open(dir, Lifetimes::default()).unwrap();
                assert!(authority.revoke(serial, now()).unwrap());
            });
        }
    });
    let crl = ca.crl();
    assert_eq!(crl.revoked.len(), serials.len());
    assert_eq!(crl.number, 1 + serials.len() as u64);
    // A serial given with colons, upper case or leading zeros is the same serial.
    let first = &serials[0];
    let spaced: Vec<String> = first
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8(pair.to_vec()).unwrap().to_uppercase())
        .collect();
    assert!(!ca.authority.revoke(&spaced.join(":"), now()).unwrap());
    assert!(!ca.authority.revoke(&format!("00{first}"), now()).unwrap());
}

#[test]
fn an_authority_is_created_whole_or_not_at_all() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("pki");
    // An empty directory made beforehand gives way; a bad trust domain leaves nothing.
    std::fs::create_dir(&dir).unwrap();
    assert!(Authority::init(&dir, "Bad Domain", Lifetimes::default(), now()).is_err());
    Authority::init(&dir, TD, Lifetimes::default(), now()).unwrap();
    let names: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["pki"], "staging left behind: {names:?}");
    for file in [
        "root.pem",
        "root.key",
        "intermediate.pem",
        "intermediate.key",
        "crl.pem",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
}

#[test]
fn a_signing_request_gets_its_key_certified_and_nothing_else() {
    let ca = ca(TD);
    let (csr, key) = ztx_pki::make_request().unwrap();
    let request = Request {
        subject: Subject::Operator {
            name: "erin".into(),
        },
        lifetime_ms: HOUR,
    };
    let signed = ca
        .authority
        .sign_request(&request, &csr, Path::new("erin.csr"), now())
        .unwrap();
    assert_eq!(signed.id.to_string(), "spiffe://ztx.test/operator/erin");
    RotatingIdentity::from_pem(&signed.chain_pem, &key, Path::new("erin")).unwrap();
    // A request for another kind of key is refused, naming the file.
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let other = rcgen::CertificateParams::default()
        .serialize_request(&p384)
        .unwrap()
        .pem()
        .unwrap();
    let err = ca
        .authority
        .sign_request(&request, &other, Path::new("p384.csr"), now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("p384.csr") && err.contains("P-256"), "{err}");
}
