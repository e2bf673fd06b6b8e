//! Customers' webhooks: a customer registers one address (`POST /ztx/v1/webhook`, with
//! a key that may trade: read-only keys are the ones handed to portfolio trackers, and
//! whoever holds the webhook reads the customer's security notices), and every
//! notification of theirs is posted to it, signed with a secret only they and the
//! platform hold, besides going out by e-mail.
//!
//! The address and the secret are sealed at rest under a data key of the webhook's own
//! (`ztx_vault::contact::SealedWebhook`); a change is logged in the commit that makes it
//! and told to the customer. The [`Sender`] delivers from the outbox: it logs its reads
//! of the sealed rows before anything leaves, posts each message once per attempt on a
//! task of its own (no redirects followed; at most a few at once per customer, so one
//! receiver that never answers holds up nobody else's), and records the outcome, a
//! failure to be tried again later. A message read just before its customer replaced
//! the webhook may still reach the old one: the change gives up only what is not yet
//! under way.
//!
//! An address must be `https://` on a host whose every address is public: a webhook is
//! a request the platform makes on a customer's behalf, and one aimed at the platform's
//! own network (its database, a cloud metadata service) is refused, both when it is
//! registered and, since a name may resolve elsewhere later, when it is delivered to.
//! Only a development setting ([`WebhookPolicy::allow_insecure`]) lifts this.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;
use sha2::Sha256;
use zeroize::Zeroizing;
use ztx_audit::{Entry, Kind, Outcome, Text};
use ztx_core::CustomerId;
use ztx_store::{Channel, Destination, OutboxMessage, SecurityEffect, StoredWebhook};
use ztx_vault::contact::SealedWebhook;

use crate::accounting::SERVICE_WEBHOOKS;
use crate::error::ApiError;
use crate::gate::Call;
use crate::state::AppState;

/// The longest address accepted.
pub const MAX_URL_LEN: usize = 2048;
/// How a delivery is signed: `ZTX-Signature: t=<ms>,v1=<hex>`, the HMAC-SHA256 under the
/// webhook's secret (its text as given at registration) of `<ms>.<body>`.
pub const SIGNATURE_HEADER: &str = "ztx-signature";
/// The outbox message's number, the same on every attempt (a receiver drops repeats).
pub const ID_HEADER: &str = "ztx-webhook-id";
/// How long one delivery may take, connecting included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// What a notification not made by a detection carries as its finding.
pub const ACCOUNT_CHANGE: &str = "account-change";

/// Which addresses webhooks may go to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Development and tests only: `http://` and non-public addresses (loopback, private
    /// networks) are allowed.
    pub allow_insecure: bool,
}

/// A webhook address that passed [`parse_url`].
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    text: String,
    https: bool,
    /// The host as written (brackets taken off an IPv6 literal).
    host: String,
    /// Set when the host is an address rather than a name.
    ip: Option<IpAddr>,
    port: u16,
    path_and_query: String,
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The path and query may hold the receiver's token.
        f.debug_struct("WebhookUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl WebhookUrl {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Why an address is refused as a webhook.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("it is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("it is not an absolute URL")]
    NotAUrl,
    #[error("its scheme must be https")]
    NotHttps,
    #[error("it names no host")]
    NoHost,
    #[error("it carries a user name or password")]
    UserInfo,
    #[error("{0:?} is not a host name")]
    BadHost(String),
    #[error("{0} is not a public address")]
    NotPublic(IpAddr),
    #[error("{0:?} names this machine")]
    Local(String),
}

/// Checks `text` as a webhook address under `policy`: an absolute `https://` URL (or
/// `http://` when insecure ones are allowed) without user information, whose host is a
/// DNS name or a public address. Whether a name resolves to public addresses is checked
/// at each delivery.
pub fn parse_url(text: &str, policy: WebhookPolicy) -> Result<WebhookUrl, UrlError> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let uri: Uri = text.parse().map_err(|_| UrlError::NotAUrl)?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") if policy.allow_insecure => false,
        Some(_) => return Err(UrlError::NotHttps),
        None => return Err(UrlError::NotAUrl),
    };
    let authority = uri.authority().ok_or(UrlError::NoHost)?;
    if authority.as_str().contains('@') {
        return Err(UrlError::UserInfo);
    }
    let written = authority.host();
    if written.is_empty() {
        return Err(UrlError::NoHost);
    }
    let host = written
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(written)
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    match ip {
        Some(ip) => {
            if !policy.allow_insecure && !is_public(ip) {
                return Err(UrlError::NotPublic(ip));
            }
        }
        None => {
            if !is_host_name(&host) {
                return Err(UrlError::BadHost(host));
            }
            let name = host.strip_suffix('.').unwrap_or(&host);
            if !policy.allow_insecure && (name == "localhost" || name.ends_with(".localhost")) {
                return Err(UrlError::Local(host));
            }
        }
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    // `https://host?q` has a query but no path: the request's target is `/?q`.
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    Ok(WebhookUrl {
        text: text.to_owned(),
        https,
        host,
        ip,
        port,
        path_and_query,
    })
}

/// A DNS name of letters, digits and hyphens, labels of 1–63 characters, the last not
/// all digits and none `0x` and hex digits (`127.1`, `0x7f.1` and the like are
/// addresses to a resolver, not names).
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
        && !host.split('.').any(|label| {
            label
                .strip_prefix("0x")
                .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
        })
}

/// Whether `ip` is reachable on the public internet: not this machine, not a private,
/// shared, link-local, documentation, benchmarking, multicast or reserved range, and
/// for IPv6 forms that embed an IPv4 address, not one of those either.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // NAT64's well-known prefix (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4
    // address they embed; the rest of 64:ff9b::/16 is local-use NAT64 (RFC 8215),
    // whose embedded address is wherever the operator's translator puts it.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        return false;
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        // ::/96, the old IPv4-compatible form, and the rest of ::/8
        || s[0] == 0
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only
}

/// A new webhook secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> Zeroizing<String> {
    use rand::RngCore as _;
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(format!("whsec_{}", hex::encode(bytes.as_ref())))
}

/// The signature header of a delivery of `body` at `t_ms` under `secret`.
pub fn signature(secret: &[u8], t_ms: u64, body: &[u8]) -> String {
    format!(
        "t={t_ms},v1={}",
        hex::encode(mac(secret, t_ms, body).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], t_ms: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(t_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// What a receiver checks: `header` signs `body` under `secret` (compared in constant
/// time), made within `tolerance_ms` of `now_ms`. Returns the signing time.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_ms: u64,
    tolerance_ms: u64,
) -> Result<u64, &'static str> {
    let mut t_ms = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t_ms = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t_ms), Some(v1)) = (t_ms, v1) else {
        return Err("the header has no t= or v1=");
    };
    if t_ms.abs_diff(now_ms) > tolerance_ms {
        return Err("the signature is too old or from the future");
    }
    mac(secret, t_ms, body)
        .verify_slice(&v1)
        .map_err(|_| "the signature does not match")?;
    Ok(t_ms)
}

// ---- the customer's endpoints ----------------------------------------------------

/// `GET /ztx/v1/webhook`: the customer's webhook address and when it was registered,
/// or `{"url": null}`.
pub async fn show(state: AppState, call: Call) -> Result<Response, ApiError> {
    let customer = call.customer()?;
    call.params.ensure_all_read()?;
    let stored = state
        .reads
        .with(move |s| s.customer_scope(customer)?.webhook())
        .await?;
    let Some(stored) = stored else {
        return Ok(Json(json!({ "url": null })).into_response());
    };
    let opened = state
        .contacts_arc()
        .open_webhook(customer.0, &sealing(&stored))
        .map_err(|e| ApiError::unknown().with_detail(format!("cannot open the webhook: {e}")))?;
    Ok(Json(json!({ "url": opened.url.as_str(), "createdAt": stored.created_ms })).into_response())
}

/// `POST /ztx/v1/webhook` with `url=…` in the body: registers the customer's webhook,
/// replacing any (what waited for the old one is given up); the answer carries the new
/// signing secret, shown this once. The customer is told by e-mail and at the webhook
/// registered now. The address is refused in the query string, which proxies and load
/// balancers log.
pub async fn set(state: AppState, call: Call) -> Result<Response, ApiError> {
    let customer = call.customer()?;
    let text = call.params.required_str("url")?;
    if call
        .params
        .iter()
        .any(|p| p.name() == "url" && p.source() == crate::params::Source::Query)
    {
        return Err(ApiError::invalid_param(
            "url",
            &"send it in the request body, not the query string",
        ));
    }
    call.params.ensure_all_read()?;
    let url =
        parse_url(text, state.webhook_policy()).map_err(|e| ApiError::invalid_param("url", &e))?;
    let secret = new_secret();
    let sealed = state
        .contacts_arc()
        .seal_webhook(customer.0, url.as_str(), secret.as_bytes())
        .map_err(|e| ApiError::unknown().with_detail(format!("cannot seal the webhook: {e}")))?;
    let stored = StoredWebhook {
        customer,
        url_sealed: sealed.url_sealed,
        secret_sealed: sealed.secret_sealed,
        data_key: crate::contacts::stored_key(sealed.key),
        created_ms: call.now_ms,
    };
    let message = format!(
        "A webhook at {} now receives your notifications. If you did not register it, \
         remove it (DELETE /ztx/v1/webhook) and replace your API keys.",
        url.host()
    );
    change(
        &state,
        &call,
        customer,
        "webhook set",
        url.host(),
        message,
        Some(stored),
    )
    .await?;
    Ok(Json(json!({
        "url": url.as_str(),
        "secret": secret.as_str(),
        "createdAt": call.now_ms,
    }))
    .into_response())
}

/// `DELETE /ztx/v1/webhook`: removes the customer's webhook; messages still waiting for
/// it are given up. The customer is told by e-mail.
pub async fn remove(state: AppState, call: Call) -> Result<Response, ApiError> {
    let customer = call.customer()?;
    call.params.ensure_all_read()?;
    let had = state
        .reads
        .with(move |s| s.customer_scope(customer)?.webhook())
        .await?;
    if had.is_none() {
        return Ok(Json(json!({ "removed": false })).into_response());
    }
    let message = "Your webhook was removed; notifications now go by e-mail only. If you \
                   did not remove it, replace your API keys."
        .to_owned();
    change(&state, &call, customer, "webhook remove", "", message, None).await?;
    Ok(Json(json!({ "removed": true })).into_response())
}

/// Commits a webhook change: the request's entry, its store calls and the change's own
/// entry (the host, never the whole address: a path may hold a receiver's token), with
/// the notice to the customer and the change itself.
async fn change(
    state: &AppState,
    call: &Call,
    customer: CustomerId,
    action: &str,
    host: &str,
    message: String,
    webhook: Option<StoredWebhook>,
) -> Result<(), ApiError> {
    let mut params: Vec<(Text, Text)> = Vec::new();
    if !host.is_empty() {
        params.push(("host".into(), host.into()));
    }
    let entry = |request_id| Entry {
        prev: ztx_audit::Hash::ZERO,
        time_ms: call.now_ms,
        kind: Kind::KeyChange,
        request_id,
        customer: Some(customer.0),
        api_key: call.key.as_ref().map(|k| k.id.0),
        operator: None,
        client_ip: Some(call.ip),
        action: action.into(),
        params,
        outcome: Outcome::Success,
        denial: None,
        code: None,
    };
    // The change first: the notice then goes to the webhook registered now (none once
    // removed), and what waited for the old one is given up.
    let effects = vec![
        SecurityEffect::SetWebhook {
            customer,
            webhook,
            at_ms: call.now_ms,
        },
        SecurityEffect::Notify {
            customer,
            finding: ACCOUNT_CHANGE.into(),
            message,
            at_ms: call.now_ms,
        },
    ];
    crate::security::commit_change(state, call, entry, effects).await
}

fn sealing(stored: &StoredWebhook) -> SealedWebhook {
    SealedWebhook {
        url_sealed: stored.url_sealed.clone(),
        secret_sealed: stored.secret_sealed.clone(),
        key: ztx_vault::envelope::WrappedKey {
            kek_version: stored.data_key.kek_version,
            sealed: stored.data_key.wrapped.clone(),
        },
    }
}

// ---- delivery --------------------------------------------------------------------

/// How long connecting (and resolving) may take, within [`DELIVERY_TIMEOUT`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Delivers the outbox's webhook messages (see [`crate::outbox`]).
pub type Sender = crate::outbox::Sender<WebhookCourier>;

/// Posts webhook messages, signed, over TLS trusting the roots it was given.
#[derive(Debug)]
pub struct WebhookCourier {
    tls: Arc<rustls::ClientConfig>,
}

impl Sender {
    /// A sender trusting the system's certificate authorities for `https://` addresses.
    /// With none found (a machine without its CA bundle) it still starts, and every
    /// `https://` delivery fails its TLS check until the bundle is there: a notification
    /// channel does not stop the exchange.
    pub fn new(state: AppState) -> Sender {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        for cert in found.certs {
            // One unusable certificate in the system's store leaves the others usable.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            tracing::warn!(
                errors = found.errors.len(),
                "no certificate authorities in the system's trust store: https:// webhooks \
                 cannot be delivered (install the CA bundle)"
            );
        }
        Self::trusting(state, roots)
    }

    /// A sender trusting exactly `roots`.
    pub fn trusting(state: AppState, roots: rustls::RootCertStore) -> Sender {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
        crate::outbox::Sender::with_courier(state, WebhookCourier { tls: Arc::new(tls) })
    }
}

impl crate::outbox::Courier for WebhookCourier {
    const CHANNEL: Channel = Channel::Webhook;
    const SERVICE: &'static str = SERVICE_WEBHOOKS;
    const MAX_IN_FLIGHT: usize = 256;

    /// Posts one message; `Err` says why it did not arrive.
    async fn deliver(&self, state: &AppState, message: &OutboxMessage) -> Result<(), String> {
        let Destination::Webhook(stored) = &message.to else {
            return Err("not a webhook message".into());
        };
        let opened = state
            .contacts_arc()
            .open_webhook(stored.customer.0, &sealing(stored))
            .map_err(|e| format!("cannot open the webhook: {e}"))?;
        let policy = state.webhook_policy();
        let url = parse_url(&opened.url, policy).map_err(|e| format!("the address: {e}"))?;
        let n = &message.notification;
        let body = json!({
            "id": message.id,
            "notificationId": n.id,
            "time": n.created_ms,
            "finding": n.finding,
            "message": n.message,
        })
        .to_string();
        let signed = signature(&opened.secret, state.now_ms(), body.as_bytes());
        let headers = [
            ("content-type", "application/json".to_owned()),
            (ID_HEADER, message.id.to_string()),
            (SIGNATURE_HEADER, signed),
        ];
        tokio::time::timeout(
            DELIVERY_TIMEOUT,
            post(&url, policy, &self.tls, &headers, body),
        )
        .await
        .map_err(|_| format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs()))?
    }
}

/// The addresses to connect to for `url`: its own, or what its name resolves to — all of
/// them public unless the policy allows otherwise (a name that resolves to one inside
/// the platform's network is refused, even beside public ones).
async fn addresses(url: &WebhookUrl, policy: WebhookPolicy) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> = match url.ip {
        Some(ip) => vec![SocketAddr::new(ip, url.port)],
        None => tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
            .collect(),
    };
    if found.is_empty() {
        return Err(format!("{} resolves to no address", url.host));
    }
    if !policy.allow_insecure
        && let Some(inside) = found.iter().find(|a| !is_public(a.ip()))
    {
        return Err(format!(
            "{} resolves to {}, which is not a public address",
            url.host,
            inside.ip()
        ));
    }
    Ok(found)
}

async fn post(
    url: &WebhookUrl,
    policy: WebhookPolicy,
    tls: &Arc<rustls::ClientConfig>,
    headers: &[(&str, String)],
    body: String,
) -> Result<(), String> {
    let mut last = String::new();
    let found = tokio::time::timeout(CONNECT_TIMEOUT, addresses(url, policy))
        .await
        .map_err(|_| {
            format!(
                "cannot resolve {} within {} s",
                url.host,
                CONNECT_TIMEOUT.as_secs()
            )
        })??;
    for addr in found {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr));
        let stream = match connected.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                last = format!("cannot connect to {addr}: {e}");
                continue;
            }
            Err(_) => {
                last = format!(
                    "cannot connect to {addr} within {} s",
                    CONNECT_TIMEOUT.as_secs()
                );
                continue;
            }
        };
        return if url.https {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("{:?} is not a server name: {e}", url.host))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS with {}: {e}", url.host))?;
            exchange(stream, url, headers, body).await
        } else {
            exchange(stream, url, headers, body).await
        };
    }
    Err(last)
}

async fn exchange<Io>(
    stream: Io,
    url: &WebhookUrl,
    headers: &[(&str, String)],
    body: String,
) -> Result<(), String>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    let default_port = if url.https { 443 } else { 80 };
    let host = match (url.ip, url.port == default_port) {
        (Some(IpAddr::V6(ip)), true) => format!("[{ip}]"),
        (Some(IpAddr::V6(ip)), false) => format!("[{ip}]:{}", url.port),
        (_, true) => url.host.clone(),
        (_, false) => format!("{}:{}", url.host, url.port),
    };
    let mut request = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(url.path_and_query.as_str())
        .header("host", host)
        .header(
            "user-agent",
            concat!("ztx-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("connection", "close");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status();
    // Any 2xx is delivered; a redirect is not followed (it could lead anywhere).
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: WebhookPolicy = WebhookPolicy {
        allow_insecure: false,
    };
    const DEV: WebhookPolicy = WebhookPolicy {
        allow_insecure: true,
    };

    #[test]
    fn public_https_addresses_are_accepted() {
        let url = parse_url("https://hooks.example.com/ztx/t0k?x=1", STRICT).unwrap();
        assert_eq!(url.host(), "hooks.example.com");
        assert_eq!((url.port, url.https), (443, true));
        assert_eq!(url.path_and_query, "/ztx/t0k?x=1");
        let url = parse_url("https://8.8.8.8:8443", STRICT).unwrap();
        assert_eq!((url.ip, url.port), (Some("8.8.8.8".parse().unwrap()), 8443));
        assert_eq!(url.path_and_query, "/");
        let url = parse_url("https://[2606:4700::1111]/h", STRICT).unwrap();
        assert_eq!(url.host(), "2606:4700::1111");
        // A query without a path is sent to `/`.
        let url = parse_url("https://hooks.example.com?token=t0k", STRICT).unwrap();
        assert_eq!(url.path_and_query, "/?token=t0k");
        // Its debug form names the host, never the path and query.
        let shown = format!("{url:?}");
        assert!(
            shown.contains("hooks.example.com") && !shown.contains("t0k"),
            "{shown}"
        );
    }

    #[test]
    fn each_refusal_names_what_is_wrong() {
        let refused = |text: &str| parse_url(text, STRICT).unwrap_err();
        assert_eq!(refused("http://hooks.example.com/"), UrlError::NotHttps);
        assert_eq!(refused("ftp://hooks.example.com/"), UrlError::NotHttps);
        assert_eq!(refused("hooks.example.com/x"), UrlError::NotAUrl);
        assert_eq!(refused("/relative"), UrlError::NotAUrl);
        assert_eq!(refused("https://a b/"), UrlError::NotAUrl);
        assert_eq!(
            refused("https://user:pw@hooks.example.com/"),
            UrlError::UserInfo
        );
        assert_eq!(
            refused(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))),
            UrlError::TooLong
        );
        assert_eq!(
            refused("https://under_score.example.com/"),
            UrlError::BadHost("under_score.example.com".into())
        );
        assert!(matches!(
            refused("https://-x.example.com/"),
            UrlError::BadHost(_)
        ));
        // Names of hex letters are names.
        assert!(parse_url("https://bad.cafe/", STRICT).is_ok());
        let message = refused("https://10.1.2.3/").to_string();
        assert_eq!(message, "10.1.2.3 is not a public address");
    }

    #[test]
    fn a_webhook_aimed_inside_the_platforms_network_is_refused() {
        for inside in [
            "https://127.0.0.1/",
            "https://127.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0177.0.0.1/",
            "https://localhost/",
            "https://api.localhost/",
            "https://10.0.0.5/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[::]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[64:ff9b::a00:1]/",
            "https://[64:ff9b:1::a9fe:a9fe]/",
            "https://[64:ff9b:1:a9fe:a9:fe00::]/",
            "https://[2002:c0a8:101::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[ff02::1]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
        ] {
            assert!(parse_url(inside, STRICT).is_err(), "{inside} was accepted");
        }
        // The development setting lets tests and a laptop use their own machine.
        assert!(parse_url("http://127.0.0.1:9000/hook", DEV).is_ok());
        assert!(parse_url("http://localhost:9000/hook", DEV).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_inside_the_network_is_refused_at_delivery() {
        assert!(parse_url("https://localhost./hook", STRICT).is_err());
        // A name registered under another policy, or one that resolves elsewhere since:
        // the resolution is checked at each delivery.
        let url = parse_url("https://localhost/hook", DEV).unwrap();
        let refused = addresses(&url, STRICT).await.unwrap_err();
        assert!(refused.contains("not a public address"), "{refused}");
        assert!(addresses(&url, DEV).await.is_ok());
    }

    #[test]
    fn signatures_verify_and_refuse_any_change() {
        let secret = b"whsec_0123";
        let header = signature(secret, 1_000, b"{\"a\":1}");
        assert_eq!(
            verify_signature(secret, &header, b"{\"a\":1}", 1_500, 5_000),
            Ok(1_000)
        );
        assert!(verify_signature(secret, &header, b"{\"a\":2}", 1_500, 5_000).is_err());
        assert!(verify_signature(b"whsec_0124", &header, b"{\"a\":1}", 1_500, 5_000).is_err());
        assert!(verify_signature(secret, &header, b"{\"a\":1}", 10_000, 5_000).is_err());
        let moved = header.replace("t=1000", "t=1001");
        assert!(verify_signature(secret, &moved, b"{\"a\":1}", 1_500, 5_000).is_err());
        assert!(verify_signature(secret, "v1=00", b"", 0, 5_000).is_err());
    }

    #[test]
    fn secrets_are_fresh_and_long() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(*a, *b);
        assert_eq!(a.len(), "whsec_".len() + 64);
    }
}
