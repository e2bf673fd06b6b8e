//! The monitor: follows the audit log as it grows, writes each entry as an OCSF event
//! to the SIEM file, runs the detection rules on it, and carries out what they ask —
//! each response committed with the audit entries that record it before it takes
//! effect (a ban is enforced, a frozen key refused, only once its entry is durable).
//!
//! It follows the log, not the request path: it adds nothing to a request's latency,
//! loses nothing across a restart (it resumes after the last event in the file), and
//! sees exactly what the log holds — the rows the engine's writer hands over right after
//! committing them, and, for any the queue dropped, the rows read back from the store.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ztx_audit::Entry;
use ztx_engine::{Accessor, Committed, Principal};
use ztx_monitor::rules::Observation;
use ztx_monitor::{DetectionConfig, Detector, Finding, Product, Response, RotatingFile, ocsf};
use ztx_store::{ApiKeyId, AuditRow, SecurityEffect};

use crate::accounting::{Caller, SERVICE_MONITOR};
use crate::error::ApiError;
use crate::state::AppState;

/// How often the log is looked at when the last look found nothing new: often enough
/// that a ban follows its burst within a blink, seldom enough that under load each look
/// takes hundreds of entries at once.
const POLL: Duration = Duration::from_millis(100);
/// The most entries read per look.
const BATCH: u32 = 2_000;
/// How long the monitor lets commits gather after a look that emptied the queue: woken
/// by every commit, it spent about a third of its time switching in and out; each look
/// now takes a hundred entries or so under load, and a response comes at most this
/// much later.
const GATHER: Duration = Duration::from_millis(10);
/// How often a response the engine was too busy for is tried.
const RESPOND_TRIES: u32 = 20;

/// A row of the log, with its entry when the writer handed it over already decoded.
type Taken = (AuditRow, Option<Entry>);

/// Where the OCSF file goes.
#[derive(Debug, Clone)]
pub struct FileSink {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

/// What the monitor does.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub detection: DetectionConfig,
    pub file: Option<FileSink>,
    pub product: Product,
}

/// The monitor's state between looks at the log.
#[derive(Debug)]
pub struct Monitor {
    state: AppState,
    detector: Detector,
    file: Option<RotatingFile>,
    product: Product,
    /// The index of the next entry to look at.
    cursor: u64,
    /// Rows handed over by the engine's writer as it commits.
    feed: Option<tokio::sync::mpsc::Receiver<Vec<Committed>>>,
}

impl Monitor {
    /// Opens the OCSF file and resumes after the last event it holds (from the start of
    /// the log for a new file), with the addresses every key was used from.
    pub async fn start(state: AppState, config: MonitorConfig) -> Result<Monitor, String> {
        let (file, last) = match &config.file {
            None => (None, None),
            Some(sink) => {
                let (file, last) = RotatingFile::open(&sink.dir, sink.max_bytes, sink.keep)
                    .map_err(|e| {
                        format!("cannot open the OCSF file in {}: {e}", sink.dir.display())
                    })?;
                (Some(file), last)
            }
        };
        let mut detector = Detector::new(config.detection);
        let caller = monitor_caller();
        let known = caller
            .scope(state.reads.with(|s| s.key_addresses()))
            .await
            .map_err(|e| describe(&e))?;
        // The bans still running, before the first request is served: a restart does
        // not lift them.
        let now = state.now_ms();
        let banned = caller
            .scope(state.reads.with(move |s| s.ip_bans(now)))
            .await
            .map_err(|e| describe(&e))?;
        for (ip, until_ms) in banned {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                state.bans.ban(ip, until_ms, now);
            }
        }
        if state.is_audited() {
            caller
                .flush(&state.engine, state.now_ms())
                .await
                .map_err(|e| format!("cannot log the monitor's store calls: {e}"))?;
        }
        for (key, ip) in known {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                detector.remember(key.0, ip);
            }
        }
        let cursor = match (last, file.is_some()) {
            (Some(last), _) => last.saturating_add(1),
            (None, true) => 0,
            // Without a file there is nothing to catch up on: rules look at new events.
            (None, false) => following_log(state.reads.with(|s| s.audit_size()))
                .await
                .map_err(|e| describe(&e))?,
        };
        Ok(Monitor {
            state,
            detector,
            file,
            product: config.product,
            cursor,
            feed: None,
        })
    }

    /// Takes the rows the engine's writer hands over as it commits (see
    /// [`ztx_engine::Feed`]) instead of reading them back from the store, which it still
    /// does for whatever the queue dropped.
    #[must_use]
    pub fn following(mut self, feed: tokio::sync::mpsc::Receiver<Vec<Committed>>) -> Monitor {
        self.feed = Some(feed);
        self
    }

    /// Follows the log until `stop` resolves, then catches up once more (the last
    /// entries get their events) and returns.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut failing = false;
        loop {
            let wait = if failing {
                Duration::from_secs(1)
            } else {
                POLL
            };
            let taken = tokio::select! {
                () = &mut stop => break,
                rows = self.take(wait) => rows,
            };
            match self.process(taken).await {
                Ok(taken) => {
                    failing = false;
                    if taken > 0 && u32::try_from(taken).is_ok_and(|n| n < BATCH) {
                        tokio::select! {
                            () = &mut stop => break,
                            () = tokio::time::sleep(GATHER) => {}
                        }
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "security monitor: cannot follow the audit log");
                    }
                    failing = true;
                }
            }
        }
        let _ = self.step().await;
    }

    /// Looks at the entries not seen yet; returns how many there were.
    pub async fn step(&mut self) -> Result<usize, String> {
        let taken = self.take(Duration::ZERO).await;
        self.process(taken).await
    }

    /// The next entries from the cursor on: those handed over (with their entries
    /// decoded), when they continue from it (waiting up to `wait` for them); otherwise —
    /// nothing came, or some were dropped — those the store holds (to decode).
    async fn take(&mut self, wait: Duration) -> Result<Vec<Taken>, String> {
        let mut rows = Vec::new();
        let mut closed = false;
        if let Some(feed) = &mut self.feed {
            let first = if wait.is_zero() {
                feed.try_recv().ok()
            } else {
                match tokio::time::timeout(wait, feed.recv()).await {
                    Ok(Some(batch)) => Some(batch),
                    // The engine stopped: the store has the rest.
                    Ok(None) => {
                        closed = true;
                        None
                    }
                    Err(_) => None,
                }
            };
            if let Some(batch) = first {
                rows = batch;
                while u32::try_from(rows.len()).is_ok_and(|n| n < BATCH) {
                    match feed.try_recv() {
                        Ok(more) => rows.extend(more),
                        Err(_) => break,
                    }
                }
            }
        }
        if closed {
            self.feed = None;
        }
        rows.retain(|c| c.row.index >= self.cursor);
        if rows.first().is_some_and(|c| c.row.index == self.cursor) {
            return Ok(rows
                .into_iter()
                .map(|Committed { row, entry }| (row, Some(entry)))
                .collect());
        }
        let cursor = self.cursor;
        let stored = following_log(
            self.state
                .reads
                .with(move |s| s.audit_entries(cursor, BATCH)),
        )
        .await
        .map_err(|e| describe(&e))?;
        if stored.is_empty() && self.feed.is_none() && !wait.is_zero() {
            // Without a feed, nothing wakes the monitor: it looks again after `wait`.
            tokio::time::sleep(wait).await;
        }
        Ok(stored.into_iter().map(|row| (row, None)).collect())
    }

    /// Writes, and runs the rules on, `rows` as far as they continue from the cursor
    /// (what follows a gap is read again later); returns how many it took.
    async fn process(&mut self, rows: Result<Vec<Taken>, String>) -> Result<usize, String> {
        let mut rows = rows?;
        let contiguous = rows
            .iter()
            .zip(self.cursor..)
            .take_while(|((row, _), expected)| row.index == *expected)
            .count();
        rows.truncate(contiguous);
        let mut learned = Vec::new();
        // The clock, read once a batch (a batch is taken in well under a millisecond)
        // and again after a response, which may wait on a commit.
        let mut now_ms = self.state.now_ms();
        for (row, fed) in rows {
            let decoded = match fed {
                Some(entry) => Ok(entry),
                None => Entry::decode(&row.entry),
            };
            let entry = match decoded {
                Ok(entry) => entry,
                Err(e) => {
                    // The log's own rows: the verifier names such an entry; here it is
                    // reported and passed over, so that monitoring goes on.
                    tracing::error!(index = row.index, error = %e, "audit entry does not decode");
                    self.cursor = row.index.saturating_add(1);
                    continue;
                }
            };
            if let Some(file) = &mut self.file {
                let event = ocsf::Event::new(row.index, &entry, &self.product);
                file.append_event(&event)
                    .map_err(|e| format!("cannot write the OCSF file: {e}"))?;
            }
            let Observation {
                findings,
                learned: new,
            } = self.detector.observe(row.index, &entry, now_ms);
            if let Some((key, ip)) = new {
                learned.push(SecurityEffect::RememberAddress {
                    key: ApiKeyId(key),
                    ip: ip.to_string(),
                    at_ms: entry.time_ms,
                });
            }
            for finding in &findings {
                self.respond(finding).await;
            }
            if !findings.is_empty() {
                now_ms = self.state.now_ms();
            }
            self.cursor = row.index.saturating_add(1);
        }
        if let Some(file) = &mut self.file {
            file.flush()
                .map_err(|e| format!("cannot write the OCSF file: {e}"))?;
        }
        if !learned.is_empty()
            && let Err(e) = self.state.engine.respond(Vec::new(), learned).await
        {
            // Only costs a second notice of the same new address after a restart.
            tracing::warn!(error = %e, "cannot remember the addresses keys were used from");
        }
        Ok(contiguous)
    }

    /// Commits the finding's entries with its effects (a ban stored too, for the next
    /// start), then enforces the ban in memory and drops frozen keys from the cache.
    async fn respond(&self, finding: &Finding) {
        let now = self.state.now_ms();
        let entries = finding.entries(now);
        let mut effects = Vec::new();
        for response in &finding.responses {
            match response {
                Response::FreezeKey { key, .. } => effects.push(SecurityEffect::FreezeKey {
                    key: ApiKeyId(*key),
                    at_ms: now,
                }),
                Response::Notify { customer, message } => effects.push(SecurityEffect::Notify {
                    customer: ztx_core::CustomerId(*customer),
                    finding: finding.uid.clone(),
                    message: message.clone(),
                    at_ms: now,
                }),
                Response::BanIp { ip, until_ms } => effects.push(SecurityEffect::BanIp {
                    ip: ip.to_string(),
                    until_ms: *until_ms,
                    at_ms: now,
                }),
            }
        }
        let mut tries = 0;
        loop {
            match self
                .state
                .engine
                .respond(entries.clone(), effects.clone())
                .await
            {
                Ok(()) => break,
                Err(ztx_engine::EngineError::Busy) if tries < RESPOND_TRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    tracing::error!(finding = %finding.uid, error = %e, "cannot log a detection; its responses are not carried out");
                    return;
                }
            }
        }
        tracing::warn!(finding = %finding.uid, rule = finding.rule.as_str(), ip = ?finding.ip, api_key = ?finding.api_key, "detection");
        for response in &finding.responses {
            match response {
                Response::BanIp { ip, until_ms } => self.state.bans.ban(*ip, *until_ms, now),
                Response::FreezeKey { key, .. } => self.state.forget_key(ApiKeyId(*key)),
                Response::Notify { .. } => {}
            }
        }
    }
}

/// The monitor as the caller of its store calls.
fn monitor_caller() -> Caller {
    Caller::new(Accessor {
        service: SERVICE_MONITOR,
        principal: Principal::Platform,
        request_id: 0,
        api_key: None,
        client_ip: None,
    })
}

/// Runs the monitor's read of the audit log itself, whose accesses alone are not logged:
/// each entry would be one more for the monitor to read, without end. What it reads is
/// the log, which anyone may fetch and prove entry by entry.
async fn following_log<F: std::future::Future>(read: F) -> F::Output {
    let caller = monitor_caller();
    let output = caller.scope(read).await;
    drop(caller.take_entries(0));
    output
}

fn describe(e: &ApiError) -> String {
    e.detail().unwrap_or(e.msg()).to_owned()
}
