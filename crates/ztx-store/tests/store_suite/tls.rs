//! PostgreSQL by certificate only: a cluster that accepts nothing over TCP but `hostssl
//! … cert`, with certificates from the platform's own CA. A service gets in with its
//! own certificate as its own role, and checks the server against that CA alone; no
//! certificate, another CA's, a revoked one, another role's, or plain TCP gets in.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ztx_pki::{Authority, Issued, Lifetimes, Request, Subject};
use ztx_store::testing::{PgCluster, ServerTls};

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

struct Setup {
    pki: tempfile::TempDir,
    authority: Authority,
    cluster: PgCluster,
    server_cert: String,
}

fn workload(authority: &Authority, service: &str) -> Issued {
    workload_named(authority, service, &["localhost"], true)
}

fn workload_named(authority: &Authority, service: &str, dns: &[&str], loopback_ip: bool) -> Issued {
    let request = Request {
        subject: Subject::Workload {
            service: service.into(),
            dns: dns.iter().map(|d| (*d).to_owned()).collect(),
            ips: if loopback_ip {
                vec!["127.0.0.1".parse().unwrap()]
            } else {
                Vec::new()
            },
        },
        lifetime_ms: HOUR,
    };
    authority.issue(&request, now()).unwrap()
}

/// A CA, a TLS-only cluster with a server certificate from it, and a database `ztx`
/// owned by the role `exchange`. `None` when PostgreSQL is not installed (said loudly
/// by the harness; an error under CI=true).
fn setup() -> Option<Setup> {
    setup_with(|authority| workload(authority, "database"))
}

fn setup_with(server: impl FnOnce(&Authority) -> Issued) -> Option<Setup> {
    let pki = tempfile::tempdir().unwrap();
    let authority = Authority::init(pki.path(), TD, Lifetimes::default(), now()).unwrap();
    let server = server(&authority);
    let tls = ServerTls {
        cert_pem: server.chain_pem.clone(),
        key_pem: server.key_pem.to_string(),
        ca_pem: std::fs::read_to_string(authority.root_path()).unwrap(),
        crl_pem: authority.crl_bundle().unwrap(),
    };
    let cluster = PgCluster::start_tls(&tls).unwrap()?;
    let server_cert = server.chain_pem.clone();
    cluster
        .execute("CREATE ROLE exchange LOGIN; CREATE ROLE custody LOGIN")
        .unwrap();
    cluster
        .execute("CREATE DATABASE ztx OWNER exchange")
        .unwrap();
    Some(Setup {
        pki,
        authority,
        cluster,
        server_cert,
    })
}

impl Setup {
    fn cluster_cert(&self) -> String {
        self.server_cert.clone()
    }

    /// Writes a service's certificate and key; their paths.
    fn credentials(&self, issued: &Issued, name: &str) -> (PathBuf, PathBuf) {
        issued.write(self.pki.path(), name).unwrap()
    }

    fn url(&self, user: &str, root: &Path, client: Option<&(PathBuf, PathBuf)>) -> String {
        let mut url = format!(
            "postgres://{user}@127.0.0.1:{}/ztx?sslmode=verify-full&sslrootcert={}",
            self.cluster.port(),
            root.display()
        );
        if let Some((cert, key)) = client {
            url.push_str(&format!(
                "&sslcert={}&sslkey={}",
                cert.display(),
                key.display()
            ));
        }
        url
    }
}

fn refused(url: &str) -> String {
    match ztx_store::open(url) {
        Ok(_) => panic!("{url} got in"),
        Err(e) => format!("{e} {e:?}"),
    }
}

#[test]
fn a_service_gets_in_with_its_own_certificate_as_its_own_role() {
    let Some(setup) = setup() else { return };
    let exchange = setup.credentials(&workload(&setup.authority, "exchange"), "exchange");
    let root = setup.authority.root_path();
    let mut store = ztx_store::open(&setup.url("exchange", &root, Some(&exchange))).unwrap();
    assert_eq!(store.audit_size().unwrap(), 0);
    // The same certificate does not make it another role.
    let err = refused(&setup.url("custody", &root, Some(&exchange)));
    assert!(err.contains("certificate authentication failed"), "{err}");
}

#[test]
fn connections_without_a_valid_certificate_of_the_platform_are_refused() {
    let Some(setup) = setup() else { return };
    let root = setup.authority.root_path();
    // Plain TCP: no pg_hba line admits it.
    let plain = format!("postgres://exchange@127.0.0.1:{}/ztx", setup.cluster.port());
    let err = refused(&plain);
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );
    // TLS without a client certificate: the server's own refusal.
    let err = refused(&setup.url("exchange", &root, None));
    assert!(
        err.contains("connection requires a valid client certificate"),
        "{err}"
    );
    // A certificate from another CA, even for the right role and trust domain.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Authority::init(other_dir.path(), TD, Lifetimes::default(), now()).unwrap();
    let forged = workload(&other, "exchange")
        .write(other_dir.path(), "exchange")
        .unwrap();
    let err = refused(&setup.url("exchange", &root, Some(&forged)));
    assert!(err.contains("UnknownCA"), "{err}");
    // And the client trusts the server only if it chains to the platform's root.
    let mine = setup.credentials(&workload(&setup.authority, "exchange"), "exchange");
    let err = refused(&setup.url("exchange", &other.root_path(), Some(&mine)));
    assert!(err.contains("InvalidCertificate"), "{err}");
}

#[test]
fn a_revoked_certificate_is_refused_once_the_server_has_the_new_list() {
    let Some(setup) = setup() else { return };
    let root = setup.authority.root_path();
    let issued = workload(&setup.authority, "exchange");
    let exchange = setup.credentials(&issued, "exchange");
    let url = setup.url("exchange", &root, Some(&exchange));
    ztx_store::open(&url).unwrap();
    assert!(setup.authority.revoke(&issued.serial, now()).unwrap());
    setup
        .cluster
        .install_crl(&setup.authority.crl_bundle().unwrap())
        .unwrap();
    let err = refused(&url);
    assert!(
        err.contains("CertificateRevoked") || err.contains("revoked"),
        "{err}"
    );
    // A fresh certificate for the same service gets in.
    let renewed = setup.credentials(&workload(&setup.authority, "exchange"), "exchange-2");
    ztx_store::open(&setup.url("exchange", &root, Some(&renewed))).unwrap();
}

#[test]
fn the_client_refuses_a_server_not_named_as_dialled() {
    // The server's certificate names db.internal only; the client dials 127.0.0.1.
    let Some(setup) = setup_with(|a| workload_named(a, "database", &["db.internal"], false)) else {
        return;
    };
    let root = setup.authority.root_path();
    let exchange = setup.credentials(&workload(&setup.authority, "exchange"), "exchange");
    let err = refused(&setup.url("exchange", &root, Some(&exchange)));
    assert!(err.contains("NotValidForName"), "{err}");
}

#[test]
fn the_client_refuses_a_revoked_server_when_given_the_list() {
    let Some(setup) = setup() else { return };
    let root = setup.authority.root_path();
    let exchange = setup.credentials(&workload(&setup.authority, "exchange"), "exchange");
    let url = setup.url("exchange", &root, Some(&exchange));
    let crl = setup.pki.path().join("bundle.pem");
    std::fs::write(&crl, setup.authority.crl_bundle().unwrap()).unwrap();
    let with_list = format!("{url}&sslcrl={}", crl.display());
    ztx_store::open(&with_list).unwrap();
    // Revoke the certificate the server presents (the only one issued to "database").
    let (cert_serial, _) = {
        let text = setup.cluster_cert();
        let info = ztx_pki::verify::CertInfo::from_pem_file(Path::new("server"), &text).unwrap();
        (info.serial, info.not_after_ms)
    };
    setup.authority.revoke(&cert_serial, now()).unwrap();
    std::fs::write(&crl, setup.authority.crl_bundle().unwrap()).unwrap();
    let err = refused(&with_list);
    assert!(err.contains("Revoked"), "{err}");
}
