//! Proof of liabilities between the ledger and the `ztx-por` tree: an epoch is built
//! from one consistent snapshot of the store (a read transaction: trading goes on),
//! its root is logged in the audit log as a publication before anyone can see it — so
//! the platform cannot show different roots to different customers without the log
//! showing it — and the epoch's inputs are kept sealed under the master key in
//! `por/epoch-<n>`, from which each customer's proof is issued on request.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rand::RngCore as _;
use ztx_audit::{Entry, Hash, Kind, Outcome};
use ztx_core::{ExchangeState, Owner};
use ztx_engine::EngineHandle;
use ztx_por::{EpochSecret, Proof, Published as Root, Snapshot, Tree, TreeConfig, Variant};
use ztx_vault::{Aad, MasterKey};

use crate::operate::{CommandError, Operator};
use crate::state::StorePool;

/// Where an epoch's sealed inputs are kept, in the data directory.
pub const DIR: &str = "por";

/// An epoch published.
#[derive(Debug, Clone)]
pub struct Published {
    pub root: Root,
    /// How many customers the tree holds (kept by the platform, not published).
    pub customers: usize,
}

/// The epochs kept in a directory, the trees of the latest ones, and the proofs issued.
///
/// An epoch's files: its snapshot sealed under the master key, first as
/// `epoch-<n>.unpublished` (written before its root is logged, so that the number is
/// never taken twice), then `publication-<n>.json` once the root is logged (the root as
/// published and where the audit log holds it), and last the snapshot renamed
/// `epoch-<n>`: only an epoch under that name is shown. One whose publication was cut
/// short keeps its number and is never shown. Epochs of an earlier release have no
/// publication file; their root is rebuilt from the snapshot.
#[derive(Debug)]
pub struct Reserves {
    dir: PathBuf,
    master: Arc<MasterKey>,
    config: TreeConfig,
    progress: fn(u8, u8),
    /// The trees built, most recently used last, at most [`KEPT`].
    kept: Mutex<Vec<Arc<Tree>>>,
    /// Held while a tree is rebuilt from its snapshot: a zero-knowledge tree of a
    /// million customers takes most of a minute on every core, so requests for epochs
    /// not kept wait for one build rather than start one each.
    rebuilding: Mutex<()>,
    /// One publication at a time: two at once would take the same epoch number.
    publishing: tokio::sync::Mutex<()>,
    /// One proof made at a time (each takes every core for a fraction of a second), and
    /// the proofs made, by epoch and customer.
    proving: Mutex<HashMap<(u64, u64), Arc<Proof>>>,
}

/// How many epochs' trees are kept built in memory.
const KEPT: usize = 2;
/// How many proofs are kept before the cache starts over.
const PROOFS_KEPT: usize = 10_000;

impl Reserves {
    pub fn new(data_dir: &Path, master: Arc<MasterKey>, config: TreeConfig) -> Reserves {
        Reserves {
            dir: data_dir.join(DIR),
            master,
            config,
            progress: |_, _| {},
            kept: Mutex::new(Vec::new()),
            rebuilding: Mutex::new(()),
            publishing: tokio::sync::Mutex::new(()),
            proving: Mutex::new(HashMap::new()),
        }
    }

    /// Tells `progress` of each level of a tree built (`done` of `levels`).
    #[must_use]
    pub fn with_progress(mut self, progress: fn(u8, u8)) -> Reserves {
        self.progress = progress;
        self
    }

    fn path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("epoch-{epoch:010}"))
    }

    /// The snapshot of an epoch not (yet) published.
    fn unpublished_path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("epoch-{epoch:010}.unpublished"))
    }

    /// The epoch's publication: its root as published and where the audit log holds
    /// it (public).
    fn publication_path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("publication-{epoch:010}.json"))
    }

    /// What was published for `epoch` (the latest when `None`): the root as JSON and,
    /// under `log`, the audit entry that published it (index and canonical bytes), so
    /// that a customer can check the root they are shown is the one the log shows
    /// everyone. Read from the publication's file: no tree is built to answer it.
    pub fn publication(&self, epoch: Option<u64>) -> Result<serde_json::Value, CommandError> {
        let epoch = self.published_epoch(epoch)?;
        let path = self.publication_path(epoch);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // An earlier release's epoch: its root, from its tree.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(root_json(&self.tree(Some(epoch))?.root()));
            }
            Err(e) => return Err(io(&path, &e)),
        };
        let kept: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| CommandError::Unavailable(format!("{}: {e}", path.display())))?;
        let mut answer = kept.get("root").cloned().unwrap_or_default();
        if let (Some(fields), Some(log)) = (
            answer.as_object_mut(),
            kept.get("log").filter(|l| !l.is_null()),
        ) {
            fields.insert("log".into(), log.clone());
        }
        Ok(answer)
    }

    /// The newest epoch published, if any.
    pub fn latest_epoch(&self) -> Result<Option<u64>, CommandError> {
        self.newest("epoch-", "")
    }

    /// `epoch` if it was published here, else the newest published.
    fn published_epoch(&self, epoch: Option<u64>) -> Result<u64, CommandError> {
        match epoch {
            Some(e) if self.path(e).exists() => Ok(e),
            Some(e) => Err(CommandError::NotFound(format!(
                "epoch {e} is not kept here"
            ))),
            None => self
                .latest_epoch()?
                .ok_or_else(|| CommandError::NotFound("no epoch has been published yet".into())),
        }
    }

    /// The newest number among the files named `<prefix><number><suffix>`.
    fn newest(&self, prefix: &str, suffix: &str) -> Result<Option<u64>, CommandError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.dir, &e)),
        };
        let mut latest = None;
        for entry in entries {
            let entry = entry.map_err(|e| io(&self.dir, &e))?;
            let name = entry.file_name();
            if let Some(epoch) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|n| n.strip_suffix(suffix))
                .and_then(|n| n.parse::<u64>().ok())
            {
                latest = latest.max(Some(epoch));
            }
        }
        Ok(latest)
    }

    /// The tree of a published `epoch` (the latest when `None`), from its sealed inputs.
    pub fn tree(&self, epoch: Option<u64>) -> Result<Arc<Tree>, CommandError> {
        let epoch = self.published_epoch(epoch)?;
        if let Some(tree) = self.kept_tree(epoch) {
            return Ok(tree);
        }
        let _one_build = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Built by the request this one waited for.
        if let Some(tree) = self.kept_tree(epoch) {
            return Ok(tree);
        }
        let path = self.path(epoch);
        let sealed = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CommandError::NotFound(format!("epoch {epoch} is not kept here"))
            }
            _ => io(&path, &e),
        })?;
        let bytes = self
            .master
            .open(&sealed, &aad(&epoch.to_be_bytes()))
            .map_err(|e| CommandError::Unavailable(format!("{}: {e}", path.display())))?;
        let snapshot = Snapshot::decode(&bytes)
            .map_err(|e| CommandError::Unavailable(format!("{}: {e}", path.display())))?;
        let tree = Arc::new(
            snapshot
                .build(&|_, _| {})
                .map_err(|e| CommandError::Unavailable(format!("epoch {epoch}: {e}")))?,
        );
        self.keep(tree.clone());
        Ok(tree)
    }

    fn kept_tree(&self, epoch: u64) -> Option<Arc<Tree>> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let at = kept.iter().position(|t| t.root().epoch() == epoch)?;
        let tree = kept.remove(at);
        kept.push(tree.clone());
        Some(tree)
    }

    fn keep(&self, tree: Arc<Tree>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let epoch = tree.root().epoch();
        kept.retain(|t| t.root().epoch() != epoch);
        kept.push(tree);
        let excess = kept.len().saturating_sub(KEPT);
        kept.drain(..excess);
    }

    /// Customer `customer`'s proof in `epoch` (the latest when `None`): made once, then
    /// kept.
    pub fn proof(&self, customer: u64, epoch: Option<u64>) -> Result<Arc<Proof>, CommandError> {
        let epoch = self.published_epoch(epoch)?;
        let mut proofs = self.proving.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(proof) = proofs.get(&(epoch, customer)) {
            return Ok(proof.clone());
        }
        let proof = Arc::new(
            self.tree(Some(epoch))?
                .proof(customer)
                .map_err(|e| match e {
                    ztx_por::PorError::UnknownCustomer(_) => CommandError::NotFound(format!(
                        "customer {customer} had no balance to prove in this epoch"
                    )),
                    other => CommandError::Unavailable(other.to_string()),
                })?,
        );
        if proofs.len() >= PROOFS_KEPT {
            proofs.clear();
        }
        proofs.insert((epoch, customer), proof.clone());
        Ok(proof)
    }

    /// Builds the next epoch of `variant` from one snapshot of the store, keeps its
    /// inputs sealed, logs its root (durable before anything shows it), then publishes
    /// it.
    pub async fn publish(
        &self,
        engine: Option<&EngineHandle>,
        pool: &StorePool,
        who: &Operator,
        now_ms: u64,
        variant: Variant,
    ) -> Result<Published, CommandError> {
        let _one_publication = self.publishing.lock().await;
        let state = pool
            .with(|s| s.load_state())
            .await
            .map_err(|e| CommandError::Unavailable(e.detail().unwrap_or(e.msg()).to_owned()))?;
        let (assets, accounts) = liabilities(&state)?;
        // Past every number taken, published or not.
        let epoch = self
            .newest("epoch-", ".unpublished")?
            .max(self.latest_epoch()?)
            .map_or(1, |e| e.saturating_add(1));
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let snapshot = Snapshot {
            epoch,
            assets,
            accounts,
            secret: EpochSecret::from_bytes(secret),
            config: self.config,
            variant,
            cap: ztx_por::DEFAULT_CAP,
        };
        zeroize::Zeroize::zeroize(&mut secret);
        // Building takes seconds to minutes: off the runtime's threads.
        let progress = self.progress;
        let (snapshot, built) = tokio::task::spawn_blocking(move || {
            let built = snapshot.build(&progress);
            (snapshot, built)
        })
        .await
        .map_err(|e| CommandError::Unavailable(format!("epoch {epoch}: {e}")))?;
        let tree = built.map_err(|e| CommandError::Unavailable(format!("epoch {epoch}: {e}")))?;
        let root = tree.root();
        let bytes = snapshot
            .encode()
            .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        let sealed = self.master.seal(&bytes, &aad(&epoch.to_be_bytes()));
        let unpublished = self.unpublished_path(epoch);
        write_private(&self.dir, &unpublished, &sealed)?;
        let mut log = serde_json::Value::Null;
        if let Some(engine) = engine {
            let entry = publication(who, &root, now_ms)?;
            if let Err(e) = engine.record(entry).await {
                // The snapshot stays under its unpublished name: had the entry been
                // logged after all, its number must not serve another root.
                return Err(CommandError::Unavailable(format!(
                    "the audit log is unavailable, so nothing was published: {e}"
                )));
            }
            let (wanted_epoch, wanted_root) = (epoch, root.hex());
            match pool
                .with(move |s| find_publication(s, wanted_epoch, &wanted_root))
                .await
            {
                Ok(Some((index, entry))) => {
                    log = serde_json::json!({
                        "index": index,
                        "entry": base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            entry,
                        ),
                    });
                }
                Ok(None) => tracing::warn!(
                    epoch,
                    "the publication entry was not found near the log's end"
                ),
                Err(e) => tracing::warn!(epoch, error = %e, "cannot locate the publication entry"),
            }
        }
        let published = serde_json::json!({ "root": root_json(&root), "log": log });
        write_private(
            &self.dir,
            &self.publication_path(epoch),
            published.to_string().as_bytes(),
        )?;
        std::fs::rename(&unpublished, self.path(epoch)).map_err(|e| io(&unpublished, &e))?;
        let customers = tree.customers();
        self.keep(Arc::new(tree));
        Ok(Published { root, customers })
    }
}

/// The epoch's assets, and each customer's balance of each.
pub type Liabilities = (Vec<String>, Vec<(u64, Vec<u128>)>);

/// Every customer's liabilities per asset: posted credits less posted debits of each of
/// their accounts (what is held by open orders is still theirs). Customers with
/// nothing are left out. Assets in code order.
pub fn liabilities(state: &ExchangeState) -> Result<Liabilities, CommandError> {
    let mut per_customer: BTreeMap<u64, BTreeMap<String, u128>> = BTreeMap::new();
    let mut assets = std::collections::BTreeSet::new();
    for (key, balances) in &state.accounts {
        let Owner::Customer(customer) = key.owner else {
            continue;
        };
        let owed = balances
            .credits_posted
            .minor()
            .checked_sub(balances.debits_posted.minor())
            .ok_or_else(|| {
                CommandError::Unavailable(format!(
                    "customer {}'s {} account is overdrawn: the ledger is broken",
                    customer.0,
                    key.asset.as_str()
                ))
            })?;
        assets.insert(key.asset.as_str().to_owned());
        if owed > 0 {
            *per_customer
                .entry(customer.0)
                .or_default()
                .entry(key.asset.as_str().to_owned())
                .or_default() += owed;
        }
    }
    let assets: Vec<String> = assets.into_iter().collect();
    let accounts = per_customer
        .into_iter()
        .map(|(customer, owed)| {
            let balances = assets
                .iter()
                .map(|a| owed.get(a).copied().unwrap_or(0))
                .collect();
            (customer, balances)
        })
        .collect();
    Ok((assets, accounts))
}

/// The newest publication entry of `epoch` with root `root_hex` among the last
/// 100,000 entries of the log: its index and bytes.
fn find_publication(
    s: &mut dyn ztx_store::Store,
    epoch: u64,
    root_hex: &str,
) -> Result<Option<(u64, Vec<u8>)>, ztx_store::StoreError> {
    const PAGE: u32 = 1_000;
    let mut end = s.audit_size()?;
    for _ in 0..100 {
        if end == 0 {
            break;
        }
        let start = end.saturating_sub(u64::from(PAGE));
        let rows = s.audit_entries(start, u32::try_from(end - start).unwrap_or(PAGE))?;
        for row in rows.iter().rev() {
            if let Ok(entry) = Entry::decode(&row.entry)
                && entry.kind == Kind::Publication
                && param(&entry, "epoch") == Some(epoch.to_string().as_str())
                && param(&entry, "root") == Some(root_hex)
            {
                return Ok(Some((row.index, row.entry.clone())));
            }
        }
        end = start;
    }
    Ok(None)
}

fn param<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry
        .params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The publication's entry: the epoch, its root and what it covers (the totals where
/// the variant publishes them, else the root's commitments). A value longer than an
/// entry's field is cut into parts `name`, `name.2`, `name.3`…, never truncated.
fn publication(who: &Operator, root: &Root, now_ms: u64) -> Result<Entry, CommandError> {
    let mut params = vec![
        ("epoch".into(), root.epoch().to_string()),
        ("root".into(), root.hex()),
        ("variant".into(), root.variant().name().to_owned()),
        ("height".into(), root.height().to_string()),
    ];
    params.extend(in_parts("assets", &root.assets().join(",")));
    match root {
        Root::Plain(r) => params.extend(in_parts(
            "totals",
            &r.totals
                .iter()
                .map(u128::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )),
        Root::ZeroKnowledge(r) => params.extend(in_parts(
            "commitments",
            &r.commitments
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(","),
        )),
    }
    if params.len() > ztx_audit::MAX_PARAMS {
        return Err(CommandError::Unavailable(format!(
            "a publication of {} assets does not fit one audit entry",
            root.assets().len()
        )));
    }
    Ok(Entry {
        prev: Hash::ZERO,
        time_ms: now_ms,
        kind: Kind::Publication,
        request_id: 0,
        customer: None,
        api_key: None,
        operator: Some(who.name.as_str().into()),
        client_ip: who.ip,
        action: "por publish".into(),
        params: ztx_audit::entry::params(params),
        outcome: Outcome::Success,
        denial: None,
        code: None,
    })
}

/// `value` in parts short enough for an entry's field (ASCII: cut anywhere).
fn in_parts(name: &str, value: &str) -> Vec<(String, String)> {
    const PART: usize = 1_000;
    let bytes = value.as_bytes();
    if bytes.len() <= PART {
        return vec![(name.to_owned(), value.to_owned())];
    }
    bytes
        .chunks(PART)
        .enumerate()
        .map(|(i, part)| {
            let key = if i == 0 {
                name.to_owned()
            } else {
                format!("{name}.{}", i + 1)
            };
            (key, String::from_utf8_lossy(part).into_owned())
        })
        .collect()
}

/// A publication's value `name`, its parts joined; `None` unless it is there exactly
/// once.
pub fn publication_param(entry: &Entry, name: &str) -> Option<String> {
    let count = |key: &str| entry.params.iter().filter(|(n, _)| n == key).count();
    if count(name) != 1 {
        return None;
    }
    let mut value = param(entry, name)?.to_owned();
    for part in 2.. {
        let key = format!("{name}.{part}");
        match count(&key) {
            0 => break,
            1 => value.push_str(param(entry, &key)?),
            _ => return None,
        }
    }
    Some(value)
}

fn aad(epoch: &[u8]) -> Aad<'_> {
    Aad {
        table: "file",
        column: "por/epoch",
        row_key: epoch,
        key_version: 1,
    }
}

fn io(path: &Path, e: &std::io::Error) -> CommandError {
    CommandError::Unavailable(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` readable by this user alone, whole or not at all.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CommandError> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
    let staged = path.with_extension("partial");
    // What a crash left half written.
    let _ = std::fs::remove_file(&staged);
    let mut file = ztx_vault::create_private(&staged).map_err(|e| io(&staged, &e))?;
    file.write_all(bytes).map_err(|e| io(&staged, &e))?;
    file.sync_all().map_err(|e| io(&staged, &e))?;
    std::fs::rename(&staged, path).map_err(|e| io(path, &e))
}

// ---- the customer's side, over the API ----

fn none_kept() -> crate::error::ApiError {
    crate::error::ApiError::nothing_here("this server publishes no proof of liabilities")
}

fn refused(e: &CommandError) -> crate::error::ApiError {
    match e {
        CommandError::NotFound(why) => crate::error::ApiError::nothing_here(why.clone()),
        other => crate::error::ApiError::unknown().with_detail(other.to_string()),
    }
}

/// The published root as JSON: the totals where the variant publishes them, else the
/// root's commitments (which only an auditor's opening turns into totals).
pub fn root_json(root: &Root) -> serde_json::Value {
    let mut out = serde_json::json!({
        "version": root.version(),
        "variant": root.variant().name(),
        "epoch": root.epoch(),
        "root": root.hex(),
        "height": root.height(),
        "assets": root.assets(),
    });
    if let Some(fields) = out.as_object_mut() {
        match root {
            Root::Plain(r) => fields.insert(
                "totals".into(),
                serde_json::json!(r.totals.iter().map(u128::to_string).collect::<Vec<_>>()),
            ),
            Root::ZeroKnowledge(r) => {
                fields.insert("top".into(), serde_json::json!(hex::encode(r.top)));
                // The cap's canonical bytes: what a capped proof is checked under.
                if let Some(cap) = r.cap.as_ref().and_then(|c| c.encode().ok()) {
                    fields.insert("cap".into(), serde_json::json!(hex::encode(cap)));
                }
                fields.insert(
                    "commitments".into(),
                    serde_json::json!(r.commitments.iter().map(hex::encode).collect::<Vec<_>>()),
                )
            }
        };
    }
    out
}

/// A publication's answer to the operator: the root, and how many customers it holds.
pub fn published_json(published: &Published) -> serde_json::Value {
    let mut answer = root_json(&published.root);
    if let Some(fields) = answer.as_object_mut() {
        fields.insert("customers".into(), serde_json::json!(published.customers));
    }
    answer
}

/// `GET /ztx/v1/por/root[?epoch=N]`: the root of the latest (or the given) epoch.
pub async fn root(
    state: crate::state::AppState,
    call: crate::gate::Call,
) -> Result<axum::response::Response, crate::error::ApiError> {
    use axum::response::IntoResponse as _;
    let reserves = state.reserves().ok_or_else(none_kept)?;
    let epoch = call.params.optional_u64("epoch")?;
    call.params.ensure_all_read()?;
    let answer = tokio::task::spawn_blocking(move || reserves.publication(epoch))
        .await
        .map_err(|e| crate::error::ApiError::unknown().with_detail(e.to_string()))?
        .map_err(|e| refused(&e))?;
    Ok(axum::Json(answer).into_response())
}

/// `GET /ztx/v1/por/proof[?epoch=N]` (signed, read): the caller's inclusion proof, in
/// its canonical bytes as hex, for `ztx por verify`.
pub async fn proof(
    state: crate::state::AppState,
    call: crate::gate::Call,
) -> Result<axum::response::Response, crate::error::ApiError> {
    use axum::response::IntoResponse as _;
    let customer = call.customer()?;
    let reserves = state.reserves().ok_or_else(none_kept)?;
    let epoch = call.params.optional_u64("epoch")?;
    call.params.ensure_all_read()?;
    let proof = tokio::task::spawn_blocking(move || reserves.proof(customer.0, epoch))
        .await
        .map_err(|e| crate::error::ApiError::unknown().with_detail(e.to_string()))?
        .map_err(|e| refused(&e))?;
    let bytes = proof
        .encode()
        .map_err(|e| crate::error::ApiError::unknown().with_detail(e.to_string()))?;
    Ok(axum::Json(serde_json::json!({
        "epoch": proof.epoch(),
        "customer": proof.customer(),
        "proof": hex::encode(bytes),
    }))
    .into_response())
}
