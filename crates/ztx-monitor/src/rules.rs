//! Detection rules, evaluated on each audit entry as it arrives, and the responses a
//! firing asks for. Five rules, each configurable (on or off, how many events in what
//! window, which responses) with defaults:
//!
//! | rule | counts | default | responses |
//! |---|---|---|---|
//! | `account_query_burst` | balance/account queries from one IP | 40 in 10 s | ban the IP, notify the customers whose keys it used |
//! | `bad_signatures_per_ip` | requests with a bad signature from one IP | 10 in 60 s | ban the IP, notify |
//! | `bad_signatures_per_key` | requests with a bad signature for one key | 5 in 60 s | freeze the key, notify |
//! | `new_ip` | a key used (authenticated) from an address it was never used from | 1 | notify |
//! | `outside_allow_list` | a key presented from an address outside its allow-list | 3 in 60 s | ban the IP, notify |
//!
//! A rule counts only events younger than its window (a server catching up on an old
//! log does not ban anyone for what happened last week), and once it fires for a subject
//! it starts counting that subject afresh. A key's first use teaches `new_ip` its
//! address without a notification. The detector decides; the server carries out each
//! response and logs it, in the same commit, as an audit entry ([`Finding::entries`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use ztx_audit::{Denial, Entry, Hash, Kind, Outcome, ToCompactString};

/// Who the detector's entries name as acting.
pub const DETECTOR: &str = "ztx-monitor";
/// The most events a finding links to (the latest): every one that fired it under any
/// default threshold. Their indices go in one parameter of the finding's entry, within
/// its 1,024 bytes for logs of up to 10^15 entries.
pub const MAX_RELATED: usize = 64;
/// The most customers one finding notifies.
pub const MAX_NOTIFIED: usize = 8;
/// The most addresses remembered per key for `new_ip`; past it a key's new addresses
/// are neither learned nor reported.
pub const MAX_KNOWN_IPS: usize = 256;
/// The most subjects counted at once; past it the stale ones are dropped.
const MAX_SUBJECTS: usize = 100_000;
/// The longest ban the configuration may ask for: three days, as Binance's.
pub const MAX_BAN_S: u64 = 3 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    AccountQueryBurst,
    BadSignaturesPerIp,
    BadSignaturesPerKey,
    NewIp,
    OutsideAllowList,
}

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::AccountQueryBurst,
        Rule::BadSignaturesPerIp,
        Rule::BadSignaturesPerKey,
        Rule::NewIp,
        Rule::OutsideAllowList,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AccountQueryBurst => "account_query_burst",
            Rule::BadSignaturesPerIp => "bad_signatures_per_ip",
            Rule::BadSignaturesPerKey => "bad_signatures_per_key",
            Rule::NewIp => "new_ip",
            Rule::OutsideAllowList => "outside_allow_list",
        }
    }

    fn severity(self) -> &'static str {
        match self {
            Rule::NewIp => "low",
            Rule::AccountQueryBurst | Rule::OutsideAllowList => "medium",
            Rule::BadSignaturesPerIp | Rule::BadSignaturesPerKey => "high",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Rule::AccountQueryBurst => "burst of balance and account queries from one address",
            Rule::BadSignaturesPerIp => "repeated bad signatures from one address",
            Rule::BadSignaturesPerKey => "repeated bad signatures for one API key",
            Rule::NewIp => "API key used from a new address",
            Rule::OutsideAllowList => "API key presented from outside its allow-list",
        }
    }

    /// Whether the rule's subject has an address to ban, and a key to freeze.
    fn has_ip(self) -> bool {
        self != Rule::BadSignaturesPerKey
    }

    fn has_key(self) -> bool {
        matches!(
            self,
            Rule::BadSignaturesPerKey | Rule::NewIp | Rule::OutsideAllowList
        )
    }
}

/// A response a rule may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse every request from the address for `ban_s` (HTTP 418 with Retry-After).
    BanIp,
    /// Refuse every request with the key until its customer re-enables it.
    FreezeKey,
    /// Tell the customer: a notification in the API and a message in the outbox.
    Notify,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fire at this many events within the window.
    pub threshold: u32,
    pub window_s: u64,
    pub respond: Vec<Action>,
}

fn yes() -> bool {
    true
}

impl RuleConfig {
    fn new(threshold: u32, window_s: u64, respond: &[Action]) -> Self {
        Self {
            enabled: true,
            threshold,
            window_s,
            respond: respond.to_vec(),
        }
    }

    fn window_ms(&self) -> u64 {
        self.window_s.saturating_mul(1000)
    }
}

/// The `[detection]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// How long a ban lasts.
    pub ban_s: u64,
    pub account_query_burst: RuleConfig,
    pub bad_signatures_per_ip: RuleConfig,
    pub bad_signatures_per_key: RuleConfig,
    pub new_ip: RuleConfig,
    pub outside_allow_list: RuleConfig,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        use Action::{BanIp, FreezeKey, Notify};
        Self {
            ban_s: 600,
            account_query_burst: RuleConfig::new(40, 10, &[BanIp, Notify]),
            bad_signatures_per_ip: RuleConfig::new(10, 60, &[BanIp, Notify]),
            bad_signatures_per_key: RuleConfig::new(5, 60, &[FreezeKey, Notify]),
            new_ip: RuleConfig::new(1, 300, &[Notify]),
            outside_allow_list: RuleConfig::new(3, 60, &[BanIp, Notify]),
        }
    }
}

impl DetectionConfig {
    pub fn rule(&self, rule: Rule) -> &RuleConfig {
        match rule {
            Rule::AccountQueryBurst => &self.account_query_burst,
            Rule::BadSignaturesPerIp => &self.bad_signatures_per_ip,
            Rule::BadSignaturesPerKey => &self.bad_signatures_per_key,
            Rule::NewIp => &self.new_ip,
            Rule::OutsideAllowList => &self.outside_allow_list,
        }
    }

    /// Checks what serde cannot: ranges, and responses the rule has a subject for.
    pub fn validate(&self) -> Result<(), String> {
        if self.ban_s == 0 || self.ban_s > MAX_BAN_S {
            return Err(format!("detection.ban_s must be between 1 and {MAX_BAN_S}"));
        }
        for rule in Rule::ALL {
            let c = self.rule(rule);
            let name = rule.as_str();
            if c.threshold == 0 {
                return Err(format!("detection.{name}.threshold must be at least 1"));
            }
            if c.window_s == 0 || c.window_s > 86_400 {
                return Err(format!(
                    "detection.{name}.window_s must be between 1 and 86400"
                ));
            }
            if c.respond.contains(&Action::BanIp) && !rule.has_ip() {
                return Err(format!(
                    "detection.{name} cannot respond with ban_ip: it counts per key, not per address"
                ));
            }
            if c.respond.contains(&Action::FreezeKey) && !rule.has_key() {
                return Err(format!(
                    "detection.{name} cannot respond with freeze_key: it counts per address, not per key"
                ));
            }
        }
        Ok(())
    }
}

/// What a finding asks the server to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    BanIp { ip: IpAddr, until_ms: u64 },
    FreezeKey { key: u64, customer: u64 },
    Notify { customer: u64, message: String },
}

/// A rule that fired: what it saw, which events, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    /// Unique in the log: the rule and the index of the event that fired it.
    pub uid: String,
    /// The log indices of the events behind it (the latest [`MAX_RELATED`]).
    pub related: Vec<u64>,
    pub ip: Option<IpAddr>,
    pub api_key: Option<u64>,
    /// The customers whose keys the events used.
    pub customers: Vec<u64>,
    pub responses: Vec<Response>,
}

impl Finding {
    /// The audit entries that record this finding and each response, in that order:
    /// `detect <rule>`, then `ban ip`, `api-key freeze` and `notify customer` as asked.
    pub fn entries(&self, time_ms: u64) -> Vec<Entry> {
        let related = self
            .related
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let base = |kind: Kind, action: &str, customer: Option<u64>| Entry {
            prev: Hash::ZERO,
            time_ms,
            kind,
            request_id: 0,
            customer,
            api_key: self.api_key,
            operator: Some(DETECTOR.into()),
            client_ip: self.ip,
            action: action.into(),
            params: vec![("finding".into(), self.uid.as_str().into())],
            outcome: Outcome::Success,
            denial: None,
            code: None,
        };
        let mut detect = base(
            Kind::Response,
            &format!("detect {}", self.rule.as_str()),
            self.customers.first().copied(),
        );
        detect.params.extend([
            ("rule".into(), self.rule.as_str().into()),
            ("events".into(), related.into()),
            ("severity".into(), self.rule.severity().into()),
            ("title".into(), self.rule.title().into()),
        ]);
        let mut entries = vec![detect];
        for response in &self.responses {
            entries.push(match response {
                Response::BanIp { ip, until_ms } => {
                    let mut e = base(Kind::Response, "ban ip", None);
                    e.client_ip = Some(*ip);
                    e.params
                        .push(("until_ms".into(), until_ms.to_compact_string()));
                    e
                }
                Response::FreezeKey { key, customer } => {
                    let mut e = base(Kind::KeyChange, "api-key freeze", Some(*customer));
                    e.api_key = Some(*key);
                    e
                }
                Response::Notify { customer, message } => {
                    let mut e = base(Kind::Response, "notify customer", Some(*customer));
                    e.params.push(("message".into(), message.as_str().into()));
                    e
                }
            });
        }
        entries
    }
}

/// What one entry taught the detector.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observation {
    pub findings: Vec<Finding>,
    /// A key's address seen for the first time, for the server to remember.
    pub learned: Option<(u64, IpAddr)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Ip(IpAddr),
    Key(u64),
    KeyIp(u64, IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    time_ms: u64,
    index: u64,
    customer: Option<u64>,
    key: Option<u64>,
}

/// The rules' state: recent events per subject, and each key's known addresses.
#[derive(Debug)]
pub struct Detector {
    config: DetectionConfig,
    windows: HashMap<(Rule, Subject), VecDeque<Seen>>,
    known_ips: HashMap<u64, HashSet<IpAddr>>,
}

/// Whether a request is a balance or account query.
fn is_account_query(action: &str) -> bool {
    action == "GET /api/v3/account" || action.starts_with("GET /sapi/v1/account")
}

impl Detector {
    pub fn new(config: DetectionConfig) -> Self {
        Self {
            config,
            windows: HashMap::new(),
            known_ips: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DetectionConfig {
        &self.config
    }

    /// Teaches `new_ip` an address the key was used from before (from the store).
    pub fn remember(&mut self, key: u64, ip: IpAddr) {
        let known = self.known_ips.entry(key).or_default();
        if known.len() < MAX_KNOWN_IPS {
            known.insert(ip);
        }
    }

    /// Evaluates the entry at `index`; `now_ms` is the server's clock.
    pub fn observe(&mut self, index: u64, entry: &Entry, now_ms: u64) -> Observation {
        let mut seen = Observation::default();
        if entry.kind != Kind::Request {
            return seen;
        }
        let Some(ip) = entry.client_ip else {
            return seen;
        };
        let event = Seen {
            time_ms: entry.time_ms,
            index,
            customer: entry.customer,
            key: entry.api_key,
        };
        if is_account_query(&entry.action) && entry.denial != Some(Denial::IpBanned) {
            self.count(
                Rule::AccountQueryBurst,
                Subject::Ip(ip),
                event,
                now_ms,
                &mut seen,
            );
        }
        match entry.denial {
            Some(Denial::BadSignature) => {
                self.count(
                    Rule::BadSignaturesPerIp,
                    Subject::Ip(ip),
                    event,
                    now_ms,
                    &mut seen,
                );
                if let Some(key) = entry.api_key {
                    self.count(
                        Rule::BadSignaturesPerKey,
                        Subject::Key(key),
                        event,
                        now_ms,
                        &mut seen,
                    );
                }
            }
            Some(Denial::IpNotAllowed) => {
                if let Some(key) = entry.api_key {
                    self.count(
                        Rule::OutsideAllowList,
                        Subject::KeyIp(key, ip),
                        event,
                        now_ms,
                        &mut seen,
                    );
                }
            }
            _ => {}
        }
        // Authenticated: the signature checked out (a denial after it, such as a missing
        // permission, still proves the key's holder sent it).
        let authenticated = match entry.denial {
            None => entry.outcome != Outcome::Denied,
            Some(d) => matches!(d, Denial::MissingPermission | Denial::RateLimited),
        };
        if authenticated && let Some(key) = entry.api_key {
            let known = self.known_ips.entry(key).or_default();
            if !known.contains(&ip) && known.len() < MAX_KNOWN_IPS {
                let first_use = known.is_empty();
                known.insert(ip);
                seen.learned = Some((key, ip));
                if !first_use {
                    self.count(
                        Rule::NewIp,
                        Subject::KeyIp(key, ip),
                        event,
                        now_ms,
                        &mut seen,
                    );
                }
            }
        }
        self.bound();
        seen
    }

    fn count(
        &mut self,
        rule: Rule,
        subject: Subject,
        event: Seen,
        now_ms: u64,
        out: &mut Observation,
    ) {
        let config = self.config.rule(rule);
        let window = config.window_ms();
        if !config.enabled || event.time_ms.saturating_add(window) < now_ms {
            return;
        }
        let threshold = usize::try_from(config.threshold).unwrap_or(usize::MAX);
        let events = self.windows.entry((rule, subject)).or_default();
        events.push_back(event);
        while events
            .front()
            .is_some_and(|e| e.time_ms.saturating_add(window) < event.time_ms)
        {
            events.pop_front();
        }
        if events.len() < threshold {
            return;
        }
        let fired: Vec<Seen> = events.drain(..).collect();
        out.findings
            .push(self.finding(rule, subject, &fired, now_ms));
    }

    fn finding(&self, rule: Rule, subject: Subject, events: &[Seen], now_ms: u64) -> Finding {
        let config = self.config.rule(rule);
        let (ip, key) = match subject {
            Subject::Ip(ip) => (Some(ip), None),
            Subject::Key(key) => (None, Some(key)),
            Subject::KeyIp(key, ip) => (Some(ip), Some(key)),
        };
        let last = events.last().map_or(0, |e| e.index);
        let mut customers = Vec::new();
        for c in events.iter().rev().filter_map(|e| e.customer) {
            if !customers.contains(&c) && customers.len() < MAX_NOTIFIED {
                customers.push(c);
            }
        }
        let key_customer = key.and_then(|k| {
            events
                .iter()
                .rev()
                .find(|e| e.key == Some(k))
                .and_then(|e| e.customer)
        });
        let ban_until = now_ms.saturating_add(self.config.ban_s.saturating_mul(1000));
        let mut responses = Vec::new();
        let mut done = Vec::new();
        for action in &config.respond {
            match action {
                Action::BanIp => {
                    if let Some(ip) = ip {
                        responses.push(Response::BanIp {
                            ip,
                            until_ms: ban_until,
                        });
                        done.push(format!(
                            "requests from {ip} are refused for {} s",
                            self.config.ban_s
                        ));
                    }
                }
                Action::FreezeKey => {
                    if let (Some(key), Some(customer)) = (key, key_customer) {
                        responses.push(Response::FreezeKey { key, customer });
                        done.push(format!("API key {key} is frozen until you re-enable it"));
                    }
                }
                Action::Notify => {}
            }
        }
        if config.respond.contains(&Action::Notify) {
            let what = describe(rule, ip, key, events.len(), config.window_s);
            let message = if done.is_empty() {
                what
            } else {
                format!("{what}; {}.", done.join("; "))
            };
            for &customer in &customers {
                responses.push(Response::Notify {
                    customer,
                    message: message.clone(),
                });
            }
        }
        let skip = events.len().saturating_sub(MAX_RELATED);
        Finding {
            rule,
            uid: format!("{}-{last}", rule.as_str()),
            related: events.iter().skip(skip).map(|e| e.index).collect(),
            ip,
            api_key: key,
            customers,
            responses,
        }
    }

    /// Keeps memory bounded: past [`MAX_SUBJECTS`], subjects are forgotten.
    fn bound(&mut self) {
        if self.windows.len() > MAX_SUBJECTS {
            self.windows.retain(|_, events| events.len() > 1);
            if self.windows.len() > MAX_SUBJECTS {
                self.windows.clear();
            }
        }
        if self.known_ips.len() > MAX_SUBJECTS {
            self.known_ips.clear();
        }
    }
}

fn describe(rule: Rule, ip: Option<IpAddr>, key: Option<u64>, n: usize, window_s: u64) -> String {
    let ip = ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
    let key = key.map_or_else(String::new, |k| k.to_string());
    match rule {
        Rule::AccountQueryBurst => {
            format!("{n} balance or account queries came from {ip} within {window_s} s")
        }
        Rule::BadSignaturesPerIp => {
            format!("{n} requests with bad signatures came from {ip} within {window_s} s")
        }
        Rule::BadSignaturesPerKey => {
            format!("your API key {key} got {n} requests with bad signatures within {window_s} s")
        }
        Rule::NewIp => format!("your API key {key} was used from a new address, {ip}"),
        Rule::OutsideAllowList => {
            format!("your API key {key} was presented {n} times from {ip}, outside its allow-list")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
    }

    fn request(action: &str, from: IpAddr, key: Option<u64>, denial: Option<Denial>) -> Entry {
        Entry {
            prev: Hash::ZERO,
            time_ms: NOW,
            kind: Kind::Request,
            request_id: 1,
            customer: key.map(|k| k + 1000),
            api_key: key,
            operator: None,
            client_ip: Some(from),
            action: action.into(),
            params: Vec::new(),
            outcome: if denial.is_some() {
                Outcome::Denied
            } else {
                Outcome::Success
            },
            denial,
            code: None,
        }
    }

    fn feed(d: &mut Detector, entries: &[Entry]) -> Vec<Finding> {
        let mut out = Vec::new();
        for (i, e) in (0u64..).zip(entries) {
            out.extend(d.observe(i, e, NOW).findings);
        }
        out
    }

    #[test]
    fn a_signature_failure_burst_freezes_the_key_and_tells_its_customer() {
        let mut d = Detector::new(DetectionConfig::default());
        // Spread over addresses, so only the per-key rule sees the burst.
        let bad: Vec<Entry> = (0..5)
            .map(|i| {
                request(
                    "GET /api/v3/account",
                    ip(i),
                    Some(7),
                    Some(Denial::BadSignature),
                )
            })
            .collect();
        let findings = feed(&mut d, &bad[..4]);
        assert!(findings.is_empty(), "four are below the threshold");
        let findings = d.observe(4, &bad[4], NOW).findings;
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.rule, Rule::BadSignaturesPerKey);
        assert_eq!(f.related, vec![0, 1, 2, 3, 4]);
        assert_eq!(f.uid, "bad_signatures_per_key-4");
        assert_eq!(
            f.responses[0],
            Response::FreezeKey {
                key: 7,
                customer: 1007
            }
        );
        assert!(
            matches!(&f.responses[1], Response::Notify { customer: 1007, message } if message.contains("frozen"))
        );
    }

    #[test]
    fn bad_signatures_from_one_ip_ban_it() {
        let mut d = Detector::new(DetectionConfig::default());
        let bad: Vec<Entry> = (0..10)
            .map(|k| {
                request(
                    "POST /api/v3/order",
                    ip(9),
                    Some(k),
                    Some(Denial::BadSignature),
                )
            })
            .collect();
        let findings = feed(&mut d, &bad);
        let f = findings
            .iter()
            .find(|f| f.rule == Rule::BadSignaturesPerIp)
            .expect("the burst from one address fires");
        assert_eq!(f.related.len(), 10);
        assert!(f.responses.contains(&Response::BanIp {
            ip: ip(9),
            until_ms: NOW + 600_000
        }));
        // Every customer whose key was tried is told, up to the limit.
        let notified = f
            .responses
            .iter()
            .filter(|r| matches!(r, Response::Notify { .. }))
            .count();
        assert_eq!(notified, MAX_NOTIFIED);
    }

    #[test]
    fn an_account_query_burst_bans_the_address() {
        let mut d = Detector::new(DetectionConfig::default());
        let burst: Vec<Entry> = (0..40)
            .map(|_| request("GET /api/v3/account", ip(3), Some(1), None))
            .collect();
        let findings = feed(&mut d, &burst);
        let fired: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.rule == Rule::AccountQueryBurst)
            .collect();
        assert_eq!(fired.len(), 1);
        // It links every one of the forty, in the entry that records it too.
        assert_eq!(fired[0].related, (0..40).collect::<Vec<u64>>());
        let detect = &fired[0].entries(NOW)[0];
        let events = detect.params.iter().find(|(n, _)| n == "events").unwrap();
        assert_eq!(events.1.split(',').count(), 40);
        // Counting starts afresh after a firing.
        let again = feed(&mut d, &burst[..39]);
        assert!(again.iter().all(|f| f.rule != Rule::AccountQueryBurst));
    }

    /// Every default threshold is within what a finding links, and the most it links
    /// fits the entry's field even at the largest indices a log will reach.
    #[test]
    fn a_finding_links_every_event_that_fired_it_by_default() {
        let config = DetectionConfig::default();
        for rule in Rule::ALL {
            assert!(
                config.rule(rule).threshold as usize <= MAX_RELATED,
                "{rule:?}"
            );
        }
        let indices = vec![999_999_999_999_999u64; MAX_RELATED];
        let joined = indices
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        assert!(joined.len() <= ztx_audit::MAX_FIELD_LEN);
    }

    #[test]
    fn queries_spread_over_more_than_the_window_do_not_fire() {
        let mut d = Detector::new(DetectionConfig::default());
        for i in 0..100u64 {
            let mut e = request("GET /api/v3/account", ip(3), Some(1), None);
            // One every 300 ms: 34 in any 10 s.
            e.time_ms = NOW + i * 300;
            let found = d.observe(i, &e, e.time_ms).findings;
            assert!(
                found.iter().all(|f| f.rule != Rule::AccountQueryBurst),
                "at {i}"
            );
        }
    }

    #[test]
    fn old_events_caught_up_on_do_not_fire() {
        let mut d = Detector::new(DetectionConfig::default());
        let mut old = request(
            "GET /api/v3/account",
            ip(5),
            Some(2),
            Some(Denial::BadSignature),
        );
        old.time_ms = NOW - 3_600_000;
        for i in 0..20 {
            assert!(d.observe(i, &old, NOW).findings.is_empty());
        }
    }

    #[test]
    fn a_key_used_from_a_new_address_is_reported_once() {
        let mut d = Detector::new(DetectionConfig::default());
        let first = d.observe(
            0,
            &request("GET /api/v3/account", ip(1), Some(4), None),
            NOW,
        );
        assert!(
            first.findings.is_empty(),
            "a key's first address is learned quietly"
        );
        assert_eq!(first.learned, Some((4, ip(1))));
        let again = d.observe(
            1,
            &request("GET /api/v3/account", ip(1), Some(4), None),
            NOW,
        );
        assert_eq!(again, Observation::default());
        let moved = d.observe(
            2,
            &request("GET /api/v3/openOrders", ip(2), Some(4), None),
            NOW,
        );
        assert_eq!(moved.findings.len(), 1);
        assert_eq!(moved.findings[0].rule, Rule::NewIp);
        assert_eq!(moved.findings[0].ip, Some(ip(2)));
        assert!(matches!(
            &moved.findings[0].responses[..],
            [Response::Notify { customer: 1004, .. }]
        ));
        let back = d.observe(
            3,
            &request("GET /api/v3/account", ip(2), Some(4), None),
            NOW,
        );
        assert!(back.findings.is_empty());
    }

    #[test]
    fn a_remembered_address_is_not_new() {
        let mut d = Detector::new(DetectionConfig::default());
        d.remember(4, ip(1));
        d.remember(4, ip(2));
        let e = d.observe(
            0,
            &request("GET /api/v3/account", ip(2), Some(4), None),
            NOW,
        );
        assert_eq!(e, Observation::default());
    }

    #[test]
    fn a_bad_signature_does_not_teach_an_address() {
        let mut d = Detector::new(DetectionConfig::default());
        d.remember(4, ip(1));
        let e = d.observe(
            0,
            &request(
                "GET /api/v3/account",
                ip(2),
                Some(4),
                Some(Denial::BadSignature),
            ),
            NOW,
        );
        assert_eq!(e.learned, None);
        assert!(e.findings.iter().all(|f| f.rule != Rule::NewIp));
    }

    #[test]
    fn requests_from_outside_the_allow_list_ban_the_address() {
        let mut d = Detector::new(DetectionConfig::default());
        let outside: Vec<Entry> = (0..3)
            .map(|_| {
                request(
                    "GET /api/v3/account",
                    ip(8),
                    Some(5),
                    Some(Denial::IpNotAllowed),
                )
            })
            .collect();
        let f = feed(&mut d, &outside);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, Rule::OutsideAllowList);
        assert_eq!(f[0].api_key, Some(5));
        assert!(
            f[0].responses
                .iter()
                .any(|r| matches!(r, Response::BanIp { ip: i, .. } if *i == ip(8)))
        );
    }

    #[test]
    fn a_disabled_rule_never_fires() {
        let mut config = DetectionConfig::default();
        config.bad_signatures_per_key.enabled = false;
        config.bad_signatures_per_ip.enabled = false;
        let mut d = Detector::new(config);
        let bad: Vec<Entry> = (0..50)
            .map(|_| {
                request(
                    "GET /api/v3/account",
                    ip(1),
                    Some(7),
                    Some(Denial::BadSignature),
                )
            })
            .collect();
        assert!(
            feed(&mut d, &bad)
                .iter()
                .all(|f| f.rule == Rule::AccountQueryBurst)
        );
    }

    #[test]
    fn the_configuration_refuses_responses_without_a_subject() {
        let mut config = DetectionConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.account_query_burst.respond.push(Action::FreezeKey);
        assert!(config.validate().unwrap_err().contains("freeze_key"));
        let mut config = DetectionConfig::default();
        config.bad_signatures_per_key.respond.push(Action::BanIp);
        assert!(config.validate().unwrap_err().contains("ban_ip"));
        let mut config = DetectionConfig::default();
        config.new_ip.threshold = 0;
        assert!(config.validate().unwrap_err().contains("threshold"));
        config = DetectionConfig {
            ban_s: MAX_BAN_S + 1,
            ..DetectionConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("ban_s"));
    }

    #[test]
    fn a_finding_is_logged_with_each_response() {
        let f = Finding {
            rule: Rule::BadSignaturesPerKey,
            uid: "bad_signatures_per_key-9".into(),
            related: vec![5, 7, 9],
            ip: None,
            api_key: Some(3),
            customers: vec![11],
            responses: vec![
                Response::FreezeKey {
                    key: 3,
                    customer: 11,
                },
                Response::Notify {
                    customer: 11,
                    message: "frozen".into(),
                },
            ],
        };
        let entries = f.entries(NOW);
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "detect bad_signatures_per_key",
                "api-key freeze",
                "notify customer"
            ]
        );
        assert!(
            entries
                .iter()
                .all(|e| crate::ocsf::param(e, "finding") == Some("bad_signatures_per_key-9"))
        );
        assert_eq!(crate::ocsf::param(&entries[0], "events"), Some("5,7,9"));
        assert_eq!(entries[1].kind, Kind::KeyChange);
        assert_eq!(entries[1].customer, Some(11));
        // Each encodes: a finding is an entry like any other.
        for e in entries {
            assert!(e.clone().to_bytes().len() > 40);
        }
    }
}
