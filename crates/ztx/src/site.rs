//! The data directory and what lives in it: the configuration copy, the master key that
//! seals secrets (kept here, outside the database), and the embedded SQLite store — or the
//! PostgreSQL store a URL names.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ztx_audit::LogKey;
use ztx_store::{Store, StoreError};
use ztx_vault::contact::ContactKeys;
use ztx_vault::envelope::{IndexKey, LocalKeks};
use ztx_vault::{Aad, MasterKey};

use crate::Location;
use crate::config::{Config, DEFAULT_CONFIG};

/// The environment variable that may hold the master key (hex) instead of the key file.
pub const MASTER_KEY_ENV: &str = "ZTX_MASTER_KEY";
/// Key-encryption-key versions, `<version> <64 hex digits>` separated by `;` or lines,
/// instead of the data directory's `kek` file.
pub const KEKS_ENV: &str = "ZTX_KEKS";
/// The e-mail blind index's key (64 hex digits), with [`KEKS_ENV`].
pub const EMAIL_INDEX_KEY_ENV: &str = "ZTX_EMAIL_INDEX_KEY";

/// The lock a running server holds on its data directory.
pub const LOCK_FILE: &str = "serve.lock";
/// Where a running server writes its admin listener's address.
pub const ADMIN_ADDRESS_FILE: &str = "admin.addr";

/// A data directory, checked to exist and be writable.
#[derive(Debug, Clone)]
pub struct Site {
    pub dir: PathBuf,
    pub database_url: Option<String>,
    /// The operator certificate and key `ztx admin` presents to the running server, when
    /// not the data directory's bootstrap operator's.
    pub operator: Option<(PathBuf, PathBuf)>,
}

impl Site {
    /// Opens the data directory, creating it when `create` is set.
    pub fn open(location: &Location, create: bool) -> Result<Site> {
        let dir = location.data_dir.clone();
        if !dir.exists() {
            if !create {
                bail!(
                    "data directory {} does not exist (start `ztx serve --data-dir {}` first)",
                    dir.display(),
                    dir.display()
                );
            }
            fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        if !dir.is_dir() {
            bail!("data directory {} is not a directory", dir.display());
        }
        fs::read_dir(&dir)
            .with_context(|| format!("cannot read the data directory {}", dir.display()))?;
        let probe = dir.join(".ztx-write-probe");
        fs::write(&probe, b"")
            .with_context(|| format!("cannot write in the data directory {}", dir.display()))?;
        let _ = fs::remove_file(&probe);
        Ok(Site {
            dir,
            database_url: location.database_url.clone(),
            operator: None,
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The configuration: `explicit` if given, else the data directory's copy, which is
    /// written from the default on first use.
    pub fn config(&self, explicit: Option<&Path>) -> Result<Config> {
        if let Some(path) = explicit {
            return Config::load(path);
        }
        let path = self.config_path();
        if !path.exists() {
            fs::write(&path, DEFAULT_CONFIG)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Config::load(&path)
    }

    /// The master key: from the environment if set, else the key file (created on first use
    /// with owner-only permissions).
    pub fn master_key(&self) -> Result<Arc<MasterKey>> {
        if let Ok(hex) = std::env::var(MASTER_KEY_ENV) {
            let key = MasterKey::from_hex(&hex)
                .with_context(|| format!("{MASTER_KEY_ENV} is not a valid key"))?;
            return Ok(Arc::new(key));
        }
        let path = self.dir.join("master.key");
        let key = MasterKey::load_or_create(&path)
            .with_context(|| format!("cannot load the master key {}", path.display()))?;
        Ok(Arc::new(key))
    }

    /// The keys of customers' contact data (see `ztx_vault::contact`): from the
    /// environment when [`KEKS_ENV`] is set (with [`EMAIL_INDEX_KEY_ENV`]), else the key
    /// files `kek` and `email-index.key` in the data directory, created on first use.
    pub fn contact_keys(&self) -> Result<Arc<ContactKeys>> {
        if let Ok(text) = std::env::var(KEKS_ENV) {
            let text = zeroize::Zeroizing::new(text.replace(';', "\n"));
            let keks = LocalKeks::from_text(&text)
                .with_context(|| format!("{KEKS_ENV} is not a list of key versions"))?;
            let index = std::env::var(EMAIL_INDEX_KEY_ENV).with_context(|| {
                format!("{KEKS_ENV} is set, so {EMAIL_INDEX_KEY_ENV} must be too")
            })?;
            let index = zeroize::Zeroizing::new(index);
            let index = IndexKey::from_hex(&index)
                .with_context(|| format!("{EMAIL_INDEX_KEY_ENV} is not a valid key"))?;
            return Ok(Arc::new(ContactKeys::new(keks, index)));
        }
        if std::env::var_os(EMAIL_INDEX_KEY_ENV).is_some() {
            anyhow::bail!(
                "{EMAIL_INDEX_KEY_ENV} is set but {KEKS_ENV} is not: set both (the keys come \
                 from the environment) or neither (they come from the data directory)"
            );
        }
        self.refuse_new_keys_over_sealed_data()?;
        let keys = ContactKeys::load_or_create(&self.dir).with_context(|| {
            format!(
                "cannot load the contact-data keys in {}",
                self.dir.display()
            )
        })?;
        Ok(Arc::new(keys))
    }

    /// A key file that is missing is created afresh, which is right for a new data
    /// directory and ruinous for one restored without it: every value sealed under the
    /// old keys would be unreadable, and addresses found by the old index key lost. So
    /// when the store already holds data keys, a missing file is an error naming it.
    fn refuse_new_keys_over_sealed_data(&self) -> Result<()> {
        use ztx_vault::contact::{EMAIL_INDEX_FILE, KEK_FILE};
        let missing: Vec<&str> = [KEK_FILE, EMAIL_INDEX_FILE]
            .into_iter()
            .filter(|name| !self.dir.join(name).exists())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut store = self.store()?;
        let sealed: u64 = match store.key_status() {
            Ok(status) => status
                .data_keys
                .iter()
                .chain(&status.secret_keys)
                .chain(&status.webhook_keys)
                .map(|(_, n)| n)
                .sum(),
            // A service role may not count the data keys (PostgreSQL): any customer whose
            // address is not in the clear has one.
            Err(_) => {
                let customers = store
                    .customer_exists(ztx_core::CustomerId(1))
                    .context("cannot read whether the store holds customers")?;
                let plain = store
                    .plain_emails(1)
                    .context("cannot read whether the store holds sealed addresses")?;
                u64::from(customers && plain.is_empty())
            }
        };
        if sealed > 0 {
            anyhow::bail!(
                "{} is missing from {}, but the store holds data keys sealed under it \
                 ({sealed} counted): restore it from the backup of this data directory (a new one would \
                 leave every sealed value unreadable), or set {KEKS_ENV} and \
                 {EMAIL_INDEX_KEY_ENV}",
                missing.join(" and "),
                self.dir.display()
            );
        }
        Ok(())
    }

    /// The audit log's signing key: sealed under the master key in `audit-log.key`,
    /// created on first use with a fresh origin (`ztx.local/audit/<random>`). A copy of
    /// the data directory without the master key cannot sign checkpoints.
    pub fn audit_key(&self, master: &MasterKey) -> Result<LogKey> {
        use rand::RngCore;
        let path = self.dir.join("audit-log.key");
        let aad = Aad {
            table: "file",
            column: "audit-log.key",
            row_key: b"",
            key_version: 1,
        };
        match fs::read(&path) {
            Ok(sealed) => {
                let text = master.open(&sealed, &aad).with_context(|| {
                    format!("cannot open {} with the master key", path.display())
                })?;
                let text = std::str::from_utf8(&text)
                    .with_context(|| format!("{} is not a key", path.display()))?;
                LogKey::parse(text).with_context(|| format!("{} is not a key", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(&mut *seed);
                let mut id = [0u8; 8];
                rand::rngs::OsRng.fill_bytes(&mut id);
                let key =
                    LogKey::from_seed(&format!("ztx.local/audit/{}", hex::encode(id)), &seed)?;
                let sealed = master.seal(key.to_private_text().as_bytes(), &aad);
                write_private(&path, &sealed)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Records where the running server's admin listener is, for `ztx admin`.
    pub fn write_admin_address(&self, addr: std::net::SocketAddr) -> Result<()> {
        let path = self.dir.join(ADMIN_ADDRESS_FILE);
        fs::write(&path, format!("{addr}\n"))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Where the running server's admin listener is.
    pub fn admin_address(&self) -> Result<std::net::SocketAddr> {
        let path = self.dir.join(ADMIN_ADDRESS_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is `ztx serve --data-dir {}` running?)",
                path.display(),
                self.dir.display()
            )
        })?;
        text.trim()
            .parse()
            .with_context(|| format!("{} does not hold an address", path.display()))
    }

    /// The data directory's lock, which `ztx serve` holds while it runs: one exchange,
    /// and one writer of the audit log, per data directory. `None` when another process
    /// holds it; the lock lasts as long as the returned file is open.
    pub fn try_lock(&self) -> Result<Option<fs::File>> {
        let path = self.dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Where the embedded store lives.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("ztx.sqlite")
    }

    /// A function that opens a new store connection each call.
    pub fn store_factory(&self) -> ztx_api::StoreFactory {
        let url = self.database_url.clone();
        let path = self.sqlite_path();
        Arc::new(move || -> Result<Box<dyn Store>, StoreError> {
            match &url {
                Some(url) => {
                    ztx_store::PgStore::connect(url).map(|s| Box::new(s) as Box<dyn Store>)
                }
                None => ztx_store::SqliteStore::open(&path).map(|s| Box::new(s) as Box<dyn Store>),
            }
        })
    }

    /// Opens one store connection, naming where it failed.
    pub fn store(&self) -> Result<Box<dyn Store>> {
        let what = match &self.database_url {
            Some(_) => "the PostgreSQL database".to_string(),
            None => format!("the store {}", self.sqlite_path().display()),
        };
        (self.store_factory())().with_context(|| format!("cannot open {what}"))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Creates `path` readable by its owner only, refusing to replace a file.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
