//! The operator's interface, on its own listener (loopback by default): the security
//! events, read with a cursor, and the commands that create customers and API keys and
//! credit development deposits ([`crate::operate`]). `ztx serve` serves it over mutual TLS
//! only ([`crate::admin_tls`]): the operator is who their certificate names
//! (`spiffe://<td>/operator/<name>`), and a connection without one never reaches a
//! handler. Without TLS (in-process callers, tests) the admin token the server keeps in
//! its data directory still admits (compared in constant time, held only as its SHA-256).
//! Every request, allowed or refused, is an audit entry before it is answered.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ztx_audit::{Denial, Entry, Hash, Kind, Outcome, ToCompactString};
use ztx_engine::{Accessor, Principal};
use ztx_monitor::{Product, ocsf};

use crate::accounting::{Caller, SERVICE_ADMIN};
use crate::operate::{self, CommandError, DepositRequest, KeyRequest, Operator};
use crate::state::AppState;

/// The most events one page holds.
pub const MAX_PAGE: u32 = 1_000;
/// Who admin entries name as acting when the admin token, not a certificate, admitted.
pub const TOKEN_OPERATOR: &str = "admin-token";

/// The other end of an admin connection: its address and, over mTLS, the operator
/// certificate it presented.
#[derive(Clone, Debug)]
pub struct AdminPeer {
    pub addr: SocketAddr,
    pub operator: Option<OperatorCert>,
}

/// What an admin connection's handshake admitted. Checked again at every request, so a
/// connection kept open does not outlive its certificate's revocation or expiry.
#[derive(Clone, Debug)]
pub struct OperatorCert {
    /// The SPIFFE id, `spiffe://<td>/operator/<name>`.
    pub id: String,
    pub serial: String,
    pub not_after_ms: u64,
    pub revocations: crate::admin_tls::Revocations,
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for AdminPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        AdminPeer {
            addr: *stream.remote_addr(),
            operator: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Admin {
    app: AppState,
    token_sha256: [u8; 32],
    product: Product,
}

/// The admin API. `token_sha256` is the SHA-256 of the admin token.
pub fn admin_router(app: AppState, token_sha256: [u8; 32], product: Product) -> Router {
    let admin = Admin {
        app,
        token_sha256,
        product,
    };
    Router::new()
        .route("/ztx/admin/v1/events", get(events))
        .route("/ztx/admin/v1/customers", post(create_customer))
        .route("/ztx/admin/v1/api-keys", post(create_api_key))
        .route("/ztx/admin/v1/deposits", post(deposit))
        .route("/ztx/admin/v1/por/publish", post(publish_reserves))
        .route("/ztx/admin/v1/vault/rotate", post(vault_rotate))
        .layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            account_for_store_calls,
        ))
        .with_state(admin)
}

/// Runs an admin request as a [`Caller`] of the admin service (the operator once known)
/// and logs its store calls before the answer leaves; when the log refuses them, the
/// answer is withheld.
async fn account_for_store_calls(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let caller = Caller::new(Accessor {
        service: SERVICE_ADMIN,
        principal: Principal::Anonymous,
        request_id: 0,
        api_key: None,
        client_ip: Some(peer.addr.ip().to_canonical()),
    });
    let reads_only = request.method() == axum::http::Method::GET;
    let response = caller.scope(next.run(request)).await;
    if admin.app.is_audited()
        && let Err(e) = caller.flush(&admin.app.engine, admin.app.now_ms()).await
    {
        tracing::error!(error = %e, "cannot log an admin request's store calls");
        // What was read is not shown. A command's entry was durable before its effect,
        // and the effect is done: its answer (a key's secret, shown once) still goes.
        if reads_only || !response.status().is_success() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log is unavailable",
            );
        }
    }
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    cursor: Option<u64>,
    limit: Option<u32>,
}

/// What the server keeps of the admin token: its SHA-256.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn authorized(headers: &HeaderMap, digest: &[u8; 32]) -> bool {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    !presented.is_empty() && bool::from(token_digest(presented).ct_eq(digest))
}

/// The operator: the one the connection's certificate names, while that certificate is
/// neither revoked nor expired; without TLS, the admin token's. Otherwise the refusal,
/// logged.
async fn operator(
    admin: &Admin,
    peer: &AdminPeer,
    headers: &HeaderMap,
    action: &str,
) -> Result<Operator, Response> {
    let ip = peer.addr.ip().to_canonical();
    let refusal = match &peer.operator {
        Some(cert) if cert.revocations.contains(&cert.serial) => {
            "the operator certificate has been revoked"
        }
        Some(cert) if admin.app.now_ms() > cert.not_after_ms => {
            "the operator certificate has expired: connect again with a current one"
        }
        Some(cert) => {
            crate::accounting::as_operator(&cert.id);
            return Ok(Operator {
                name: cert.id.clone(),
                ip: Some(ip),
            });
        }
        None if authorized(headers, &admin.token_sha256) => {
            crate::accounting::as_operator(TOKEN_OPERATOR);
            return Ok(Operator {
                name: TOKEN_OPERATOR.into(),
                ip: Some(ip),
            });
        }
        None => {
            "an operator certificate (or, without TLS, the admin token: Authorization: Bearer <token>) is required"
        }
    };
    let operator = peer.operator.as_ref().map(|cert| cert.id.clone());
    let entry = denial(&admin.app, ip, operator, action, refusal.to_owned());
    if let Err(e) = admin.app.engine.record(entry).await {
        tracing::error!(error = %e, "cannot log a refused admin request");
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log is unavailable",
        ));
    }
    Err(error(StatusCode::UNAUTHORIZED, refusal))
}

/// Logs a connection to the admin listener whose TLS handshake was refused (no client
/// certificate, another CA's, revoked, expired, not an operator's, or not TLS at all).
pub async fn record_refused_handshake(app: &AppState, addr: SocketAddr, why: String) {
    if !app.is_audited() {
        return;
    }
    let ip = addr.ip().to_canonical();
    let entry = denial(app, ip, None, ocsf::ADMIN_HANDSHAKE, why);
    if let Err(e) = app.engine.record(entry).await {
        tracing::error!(error = %e, "cannot log a refused admin connection");
    }
}

/// The entry of a refused admin request or connection: who (if a certificate named
/// them), from where, what, and why.
fn denial(
    app: &AppState,
    ip: std::net::IpAddr,
    operator: Option<String>,
    action: &str,
    why: String,
) -> Entry {
    Entry {
        prev: Hash::ZERO,
        time_ms: app.now_ms(),
        kind: Kind::Admin,
        request_id: 0,
        customer: None,
        api_key: None,
        operator: operator.map(Into::into),
        client_ip: Some(ip),
        action: action.into(),
        params: vec![("error".into(), why.into())],
        outcome: Outcome::Denied,
        denial: Some(Denial::UnknownKey),
        code: None,
    }
}

/// The operator and the command's JSON body; or the refusal, logged (the token's, or the
/// body's).
async fn admitted<T>(
    admin: &Admin,
    peer: &AdminPeer,
    headers: &HeaderMap,
    action: &str,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<(Operator, T), Response> {
    let who = operator(admin, peer, headers, action).await?;
    match body {
        Ok(Json(body)) => Ok((who, body)),
        Err(e) => {
            let app = &admin.app;
            let log = app.is_audited().then_some(&app.engine);
            let refusal = operate::malformed(log, &who, action, e.body_text(), app.now_ms()).await;
            Err(refused(&refusal))
        }
    }
}

fn refused(e: &CommandError) -> Response {
    let status = match e {
        CommandError::Invalid(_) => StatusCode::BAD_REQUEST,
        CommandError::Forbidden(_) => StatusCode::FORBIDDEN,
        CommandError::NotFound(_) => StatusCode::NOT_FOUND,
        CommandError::Conflict(_) => StatusCode::CONFLICT,
        CommandError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    email: String,
}

/// `POST /ztx/admin/v1/customers` `{"email": …}`: the new customer's number.
async fn create_customer(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    headers: HeaderMap,
    body: Result<Json<NewCustomer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (who, body) = match admitted(&admin, &peer, &headers, "admin customer create", body).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let app = &admin.app;
    let log = app.is_audited().then_some(&app.engine);
    match operate::create_customer(
        log,
        &app.reads,
        app.contacts_arc(),
        &who,
        &body.email,
        app.now_ms(),
    )
    .await
    {
        Ok((id, email)) => Json(json!({ "customer_id": id.0, "email": email })).into_response(),
        Err(e) => refused(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    customer: u64,
    permissions: String,
    #[serde(default)]
    ip: Vec<String>,
    ed25519_public_key_pem: Option<String>,
}

/// `POST /ztx/admin/v1/api-keys` `{"customer": …, "permissions": "read,trade", "ip": […],
/// "ed25519_public_key_pem": …}`: the key and, for HMAC keys, its secret (shown once).
async fn create_api_key(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    headers: HeaderMap,
    body: Result<Json<NewKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (who, body) = match admitted(&admin, &peer, &headers, "admin api-key create", body).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let request = KeyRequest {
        customer: body.customer,
        permissions: body.permissions,
        ips: body.ip,
        ed25519_public_key_pem: body.ed25519_public_key_pem,
    };
    let app = &admin.app;
    let log = app.is_audited().then_some(&app.engine);
    let keys = app.contacts_arc();
    match operate::create_api_key(log, &app.reads, &keys, &who, request, app.now_ms()).await {
        Ok(key) => {
            // The secret's own copy is wiped on drop; the answer's is sent and freed.
            Json(json!({
                "id": key.id.0,
                "api_key": key.api_key,
                "secret": key.secret.as_ref().map(|s| s.as_str()),
                "customer_id": key.customer,
                "permissions": key.permissions,
            }))
            .into_response()
        }
        Err(e) => refused(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDeposit {
    customer: u64,
    asset: String,
    amount: String,
}

/// `POST /ztx/admin/v1/deposits` `{"customer": …, "asset": "USDT", "amount": "1000"}`:
/// DEVELOPMENT ONLY, a credit of test funds (403 on a production exchange).
async fn deposit(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    headers: HeaderMap,
    body: Result<Json<NewDeposit>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (who, body) = match admitted(&admin, &peer, &headers, "admin faucet deposit", body).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let request = DepositRequest {
        customer: body.customer,
        asset: body.asset,
        amount: body.amount,
    };
    let app = &admin.app;
    let result = operate::deposit(
        &app.engine,
        app.is_audited(),
        &app.reads,
        &who,
        request,
        app.now_ms(),
    )
    .await;
    match result {
        Ok(credited) => Json(json!({
            "customer_id": credited.customer,
            "asset": credited.asset,
            "amount": credited.amount,
            "available": credited.available,
        }))
        .into_response(),
        Err(e) => refused(&e),
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

/// `POST /ztx/admin/v1/vault/rotate` `{}`: logs that the operator is rotating the
/// key-encryption key. `ztx vault rotate` re-wraps the keys itself, beside the server,
/// and starts only once this entry is durable.
async fn vault_rotate(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    headers: HeaderMap,
    body: Result<Json<Nothing>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (who, Nothing {}) =
        match admitted(&admin, &peer, &headers, operate::VAULT_ROTATE, body).await {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal,
        };
    let app = &admin.app;
    let log = app.is_audited().then_some(&app.engine);
    match operate::record_operator_tool(log, &who, operate::VAULT_ROTATE, app.now_ms()).await {
        // A server run without the log (for benchmarks only) has nothing to append to;
        // its start is the log's last word until it stops.
        Ok(()) => Json(json!({ "logged": log.is_some() })).into_response(),
        Err(e) => refused(&e),
    }
}

/// `GET /ztx/admin/v1/events?cursor=N&limit=M`: the OCSF events of entries N onwards
/// (default 0; at most [`MAX_PAGE`], default 100), with the cursor to ask for next.
async fn events(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    const ACTION: &str = "GET /ztx/admin/v1/events";
    let who = match operator(&admin, &peer, &headers, ACTION).await {
        Ok(who) => who,
        Err(refusal) => return refusal,
    };
    let mut entry = Entry {
        prev: Hash::ZERO,
        time_ms: admin.app.now_ms(),
        kind: Kind::Admin,
        request_id: 0,
        customer: None,
        api_key: None,
        operator: Some(who.name.into()),
        client_ip: who.ip,
        action: ACTION.into(),
        params: Vec::new(),
        outcome: Outcome::Success,
        denial: None,
        code: None,
    };
    let answer = match page {
        Ok(Query(page)) => {
            entry.params = [
                ("cursor", page.cursor),
                ("limit", page.limit.map(u64::from)),
            ]
            .into_iter()
            .filter_map(|(n, v)| Some((n.into(), v?.to_compact_string())))
            .collect();
            read(&admin, page).await
        }
        Err(e) => Err(error(StatusCode::BAD_REQUEST, &e.body_text())),
    };
    if answer.is_err() && entry.outcome == Outcome::Success {
        entry.outcome = Outcome::Failure;
    }
    if let Err(e) = admin.app.engine.record(entry).await {
        tracing::error!(error = %e, "cannot log an admin request; refusing it");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log is unavailable",
        );
    }
    answer.unwrap_or_else(|refusal| refusal)
}

async fn read(admin: &Admin, page: Page) -> Result<Response, Response> {
    let cursor = page.cursor.unwrap_or(0);
    let limit = page.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let (size, rows) = admin
        .app
        .reads
        .with(move |s| Ok((s.audit_size()?, s.audit_entries(cursor, limit)?)))
        .await
        .map_err(|e| {
            tracing::error!(error = ?e.detail(), "cannot read the audit log");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the audit log",
            )
        })?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let entry = Entry::decode(&row.entry).map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("audit entry {} does not decode: {e}", row.index),
            )
        })?;
        events.push(ocsf::event(row.index, &entry, &admin.product));
    }
    let next = rows.last().map_or(cursor, |r| r.index.saturating_add(1));
    Ok(Json(json!({
        "events": events,
        "next_cursor": next,
        "log_size": size,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    /// Sums in the clear instead of the zero-knowledge default.
    #[serde(default)]
    plain: bool,
}

/// `POST /ztx/admin/v1/por/publish` `{"plain": false}`: builds the next
/// proof-of-liabilities epoch from a snapshot of the ledger (trading goes on), logs its
/// root, and answers it.
async fn publish_reserves(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    headers: HeaderMap,
    body: Result<Json<Publish>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (who, Publish { plain }) =
        match admitted(&admin, &peer, &headers, "admin por publish", body).await {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal,
        };
    let app = &admin.app;
    let Some(reserves) = app.reserves() else {
        return error(
            StatusCode::NOT_FOUND,
            "this server publishes no proof of liabilities",
        );
    };
    let log = app.is_audited().then_some(&app.engine);
    let variant = if plain {
        ztx_por::Variant::Plain
    } else {
        ztx_por::Variant::ZeroKnowledge
    };
    match reserves
        .publish(log, &app.reads, &who, app.now_ms(), variant)
        .await
    {
        Ok(published) => Json(crate::reserves::published_json(&published)).into_response(),
        Err(e) => refused(&e),
    }
}
