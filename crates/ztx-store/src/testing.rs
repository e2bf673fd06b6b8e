//! A throw-away PostgreSQL cluster for tests (this crate's and other crates'): initdb in a
//! temporary directory, a server on a free loopback port, one fresh database per test.
//! Never touches a PostgreSQL already running on the machine. Also: opening a store at an
//! older schema version, to test migrations.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// Why the cluster could not be provided.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// Only returned when `CI=true`: elsewhere missing binaries skip the tests.
    #[error("PostgreSQL binaries (initdb, pg_ctl) not found, and CI=true requires them")]
    NotFound,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
}

/// How many times start is tried: a free port may be taken between choosing and binding.
const START_ATTEMPTS: u32 = 3;

/// A running throw-away cluster; dropping it stops the server and removes its files.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    databases: AtomicU32,
    /// Over TCP only `hostssl … cert`; the harness administers it over its Unix socket.
    tls: bool,
}

/// What a cluster that speaks TLS only needs: its certificate and key, the CA its
/// clients' certificates must chain to, and the revocation lists (PEM texts).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub crl_pem: String,
}

fn command_error(what: &str, detail: impl Into<String>) -> HarnessError {
    HarnessError::Command {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// The directory holding `initdb` and `pg_ctl`: from `PATH`, then the newest
/// `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                // Resolve symlinks so pg_ctl finds its sibling `postgres`.
                let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .is_some_and(|uid| uid.trim() == "0")
}

fn run(mut command: Command, what: &str) -> Result<(), HarnessError> {
    let out = command.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(command_error(
            what,
            format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }
}

fn free_port() -> Result<u16, HarnessError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PgCluster {
    /// Starts a new cluster. `Ok(None)` (after a loud line on stderr) when PostgreSQL is
    /// not installed, unless `CI=true`, where that is an error.
    pub fn start() -> Result<Option<PgCluster>, HarnessError> {
        PgCluster::start_with(None)
    }

    /// Starts a cluster that accepts, over TCP, only TLS connections authenticated by a
    /// client certificate whose common name is the role (`hostssl all all 127.0.0.1/32
    /// cert`), verified against `tls.ca_pem` and the revocation lists.
    pub fn start_tls(tls: &ServerTls) -> Result<Option<PgCluster>, HarnessError> {
        PgCluster::start_with(Some(tls))
    }

    fn start_with(tls: Option<&ServerTls>) -> Result<Option<PgCluster>, HarnessError> {
        let Some(bin) = find_bin_dir() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                return Err(HarnessError::NotFound);
            }
            eprintln!("PostgreSQL binaries not found: skipping PostgreSQL tests");
            return Ok(None);
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("ztx-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            as_postgres_user: is_root(),
            databases: AtomicU32::new(0),
            tls: tls.is_some(),
        };
        if cluster.as_postgres_user {
            // PostgreSQL refuses to run as root: the files and the server are postgres's.
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&cluster.dir);
            run(chown, "chown of the cluster directory to postgres")?;
        }
        let mut initdb = cluster.tool("initdb");
        initdb.arg("-D").arg(cluster.data_dir()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(initdb, "initdb")?;
        if let Some(tls) = tls {
            cluster.configure_tls(tls)?;
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    last_error = None;
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        if let Some(e) = last_error {
            return Err(e);
        }
        Ok(Some(cluster))
    }

    /// One cluster per test process, started on first use. It is stopped, and its files
    /// removed, by a watchdog when the process exits (statics are never dropped).
    pub fn shared() -> Result<Option<&'static PgCluster>, HarnessError> {
        static SHARED: OnceLock<Result<Option<PgCluster>, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            let cluster = PgCluster::start().map_err(|e| e.to_string())?;
            if let Some(cluster) = &cluster {
                cluster.watch_process().map_err(|e| e.to_string())?;
            }
            Ok(cluster)
        });
        match started {
            Ok(cluster) => Ok(cluster.as_ref()),
            Err(detail) => Err(command_error(
                "starting the shared PostgreSQL cluster",
                detail.clone(),
            )),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes a file into the data directory, the server's own (mode 0600) when `secret`.
    fn install(&self, name: &str, text: &str, secret: bool) -> Result<(), HarnessError> {
        let path = self.data_dir().join(name);
        std::fs::write(&path, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = if secret { 0o600 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        if self.as_postgres_user {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&path);
            run(chown, "chown of a TLS file to postgres")?;
        }
        Ok(())
    }

    fn configure_tls(&self, tls: &ServerTls) -> Result<(), HarnessError> {
        self.install("server.pem", &tls.cert_pem, false)?;
        self.install("server.key", &tls.key_pem, true)?;
        self.install("root.pem", &tls.ca_pem, false)?;
        self.install("crl.pem", &tls.crl_pem, false)?;
        self.install(
            "pg_hba.conf",
            "local all postgres trust\nhostssl all all 127.0.0.1/32 cert\n",
            false,
        )?;
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str(
            "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n\
             ssl_ca_file = 'root.pem'\nssl_crl_file = 'crl.pem'\n\
             ssl_min_protocol_version = 'TLSv1.3'\n",
        );
        std::fs::write(&conf, text)?;
        Ok(())
    }

    /// Replaces the revocation lists and has the server reload them.
    pub fn install_crl(&self, crl_pem: &str) -> Result<(), HarnessError> {
        self.install("crl.pem", crl_pem, false)?;
        self.admin()?.batch_execute("SELECT pg_reload_conf()")?;
        // The postmaster re-reads its files on the signal; new connections see them.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// Runs SQL as the cluster's superuser (over its Unix socket for a TLS cluster).
    pub fn execute(&self, sql: &str) -> Result<(), HarnessError> {
        Ok(self.admin()?.batch_execute(sql)?)
    }

    /// `pg_dump` of a database (schema and data, as plain SQL), as the cluster's
    /// superuser, whom row security does not hide rows from: what a stolen backup holds.
    pub fn pg_dump(&self, database_url: &str) -> Result<String, HarnessError> {
        let database = database_url
            .rsplit('/')
            .next()
            .and_then(|tail| tail.split('?').next())
            .unwrap_or_default()
            .to_owned();
        let mut dump = self.tool("pg_dump");
        // The TLS cluster takes its superuser on the Unix socket only.
        let host = if self.tls {
            self.dir.display().to_string()
        } else {
            "127.0.0.1".to_owned()
        };
        dump.args([
            "-h",
            &host,
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            &database,
        ]);
        let out = dump
            .output()
            .map_err(|e| command_error("pg_dump", e.to_string()))?;
        if !out.status.success() {
            return Err(command_error(
                "pg_dump",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A command for one of the PostgreSQL tools, run as the `postgres` user when we are
    /// root.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl_start(&self) -> Result<(), HarnessError> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -k {} -p {}",
            self.dir.display(),
            self.port
        );
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(pg_ctl, "pg_ctl start")?;
        // `pg_ctl -w` waited for readiness; connecting proves it is ours and listening.
        for attempt in 0..50 {
            match self.admin() {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 49 => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        Ok(())
    }

    fn stop_command(&self) -> Command {
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        pg_ctl
    }

    /// Spawns a detached shell that waits for this process to exit, then stops the server
    /// and removes the directory.
    fn watch_process(&self) -> Result<(), HarnessError> {
        // Paths are ours (temp dir, PostgreSQL's bin dir) and hold no quotes.
        let stop = format!(
            "{runas}'{pg_ctl}' -D '{data}' -m immediate stop",
            runas = if self.as_postgres_user {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn admin(&self) -> Result<postgres::Client, HarnessError> {
        self.superuser_in("postgres")
    }

    fn superuser_in(&self, database: &str) -> Result<postgres::Client, HarnessError> {
        let url = if self.tls {
            format!(
                "host={} port={} user=postgres dbname={database}",
                self.dir.display(),
                self.port
            )
        } else {
            self.url(database)
        };
        Ok(postgres::Client::connect(&url, postgres::NoTls)?)
    }

    /// Runs SQL as the cluster's superuser in the database `database_url` names: as the
    /// owner of the tables `ztx database setup` made there, who can drop their triggers.
    pub fn execute_in(&self, database_url: &str, sql: &str) -> Result<(), HarnessError> {
        let database = database_url.rsplit('/').next().unwrap_or_default();
        Ok(self.superuser_in(database)?.batch_execute(sql)?)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database and returns its `postgres://` URL.
    pub fn fresh_database(&self) -> Result<String, HarnessError> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        self.admin()?
            .batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }
}

impl PgCluster {
    /// Creates a login role named after `database_url`'s database (roles are the
    /// cluster's, databases are per test); its name and its URL for that database.
    pub fn new_role(&self, database_url: &str) -> Result<(String, String), HarnessError> {
        let database = database_url.rsplit('/').next().unwrap_or_default();
        let role = format!("svc_{database}");
        self.admin()?
            .batch_execute(&format!("CREATE ROLE {role} LOGIN"))?;
        let url = format!("postgres://{role}@127.0.0.1:{}/{database}", self.port);
        Ok((role, url))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Best effort: nothing useful can be done with a failure while dropping.
        let _ = self.stop_command().status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens a store (as [`crate::open`] does) with its schema brought up to `version` only,
/// as an older release would have left it. Only `apply` and reads that version had are
/// meaningful on it; opening it normally afterwards migrates it to the latest.
pub fn open_at_version(url_or_path: &str, version: u32) -> crate::Result<Box<dyn crate::Store>> {
    if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
        Ok(Box::new(crate::PgStore::connect_at(url_or_path, version)?))
    } else {
        Ok(Box::new(crate::SqliteStore::open_at(url_or_path, version)?))
    }
}

/// For tests of row security: the first column of every row `sql` returns, run inside
/// `scope` exactly as written — a query that "forgot" its customer filter, say. Not for
/// the product's reads, which filter by the scope's customer themselves.
pub fn unfiltered_ids(
    scope: &mut crate::CustomerScope<'_>,
    sql: &'static str,
) -> crate::Result<Vec<i64>> {
    let rows = scope.conn.query(sql, &[])?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        ids.push(
            crate::sql::RowReader::new("unfiltered query", row)
                .opt_i64("first column")?
                .unwrap_or(0),
        );
    }
    Ok(ids)
}

/// What [`create_customer`] stores as customer `id`'s sealed address and key.
pub fn stand_in_sealed(id: ztx_core::CustomerId) -> crate::SealedEmailRow {
    crate::SealedEmailRow {
        sealed: id.0.to_be_bytes().repeat(4),
        kek_version: 1,
        data_key: vec![0xAB; 72],
    }
}

/// Creates a customer as the server would, but with stand-in sealing for tests of the
/// store alone (which never looks inside): the index is a hash of the address, the
/// "sealed" address and key are bytes that do not contain it ([`stand_in_sealed`]).
pub fn create_customer(
    store: &mut dyn crate::Store,
    email: &str,
    now_ms: u64,
) -> crate::Result<ztx_core::CustomerId> {
    let index: String = ztx_audit::Hash::leaf(email.as_bytes())
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    store.create_customer(&index, &mut |id| Ok(stand_in_sealed(id)), now_ms)
}
