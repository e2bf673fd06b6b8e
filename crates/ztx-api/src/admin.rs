//! The operator's interface, on its own listener (loopback by default): today the
//! security events, read with a cursor. An operator proves who they are with the admin
//! token the server keeps in its data directory (compared in constant time, held only
//! as its SHA-256); the zero-trust issue replaces the token with operator certificates
//! over mTLS. Every request, allowed or refused, is an audit entry before it is
//! answered.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ztx_audit::{Denial, Entry, Hash, Kind, Outcome};
use ztx_monitor::{Product, ocsf};

use crate::state::AppState;

/// The most events one page holds.
pub const MAX_PAGE: u32 = 1_000;
/// Who admin entries name as acting, until operators have certificates.
pub const TOKEN_OPERATOR: &str = "admin-token";

#[derive(Clone, Debug)]
struct Admin {
    app: AppState,
    token_sha256: [u8; 32],
    product: Product,
}

/// The admin API. `token_sha256` is the SHA-256 of the admin token.
pub fn admin_router(app: AppState, token_sha256: [u8; 32], product: Product) -> Router {
    Router::new()
        .route("/ztx/admin/v1/events", get(events))
        .with_state(Admin {
            app,
            token_sha256,
            product,
        })
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

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

/// `GET /ztx/admin/v1/events?cursor=N&limit=M`: the OCSF events of entries N onwards
/// (default 0; at most [`MAX_PAGE`], default 100), with the cursor to ask for next.
async fn events(
    State(admin): State<Admin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let now = admin.app.now_ms();
    let mut entry = Entry {
        prev: Hash::ZERO,
        time_ms: now,
        kind: Kind::Admin,
        request_id: 0,
        customer: None,
        api_key: None,
        operator: Some(TOKEN_OPERATOR.into()),
        client_ip: Some(peer.ip().to_canonical()),
        action: "GET /ztx/admin/v1/events".into(),
        params: Vec::new(),
        outcome: Outcome::Success,
        denial: None,
        code: None,
    };
    let answer = if authorized(&headers, &admin.token_sha256) {
        match page {
            Ok(Query(page)) => {
                entry.params = [
                    ("cursor", page.cursor),
                    ("limit", page.limit.map(u64::from)),
                ]
                .into_iter()
                .filter_map(|(n, v)| Some((n.to_owned(), v?.to_string())))
                .collect();
                read(&admin, page).await
            }
            Err(e) => Err(error(StatusCode::BAD_REQUEST, &e.body_text())),
        }
    } else {
        entry.operator = None;
        entry.outcome = Outcome::Denied;
        entry.denial = Some(Denial::UnknownKey);
        Err(error(
            StatusCode::UNAUTHORIZED,
            "a valid admin token is required (Authorization: Bearer <token>)",
        ))
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
