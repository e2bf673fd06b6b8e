//! The audit log's public face: its key, its newest signed checkpoint, and the proofs a
//! customer checks against a checkpoint they hold — that an entry is in the log, and that
//! the log grew only by appending. Proofs are served up to the newest checkpoint, so that
//! every one can be checked against a signed root.

use axum::Json;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use ztx_audit::Hash;
use ztx_store::StoredCheckpoint;

use crate::error::ApiError;
use crate::gate::Call;
use crate::state::AppState;

fn no_log() -> ApiError {
    ApiError::not_found().with_detail("this server keeps no audit log")
}

fn text(body: String) -> Response {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn latest(state: &AppState) -> Result<StoredCheckpoint, ApiError> {
    state
        .reads
        .with(|s| s.latest_checkpoint())
        .await?
        // Public knowledge (every checkpoint is published), so said to the caller.
        .ok_or_else(|| {
            ApiError::nothing_here(
                "the audit log has no signed checkpoint yet: one follows within a second \
                 of its first entries",
            )
        })
}

fn hashes(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(|h| B64.encode(h.0)).collect()
}

/// `GET /ztx/v1/audit/key`: the key checkpoints are signed with (C2SP verifier key).
pub async fn key(state: AppState, _: Call) -> Result<Response, ApiError> {
    let key = state.log_key().ok_or_else(no_log)?;
    Ok(text(format!("{key}\n")))
}

/// `GET /ztx/v1/audit/checkpoint`: the newest signed checkpoint, as a signed note.
pub async fn checkpoint(state: AppState, _: Call) -> Result<Response, ApiError> {
    state.log_key().ok_or_else(no_log)?;
    Ok(text(latest(&state).await?.note))
}

/// `GET /ztx/v1/audit/inclusion?index=I[&size=N]`: entry I's leaf and its audit path in
/// the tree of N entries (default: the newest checkpoint's size).
pub async fn inclusion(state: AppState, call: Call) -> Result<Response, ApiError> {
    state.log_key().ok_or_else(no_log)?;
    let index = call.params.u64("index")?;
    let size = tree_size(&state, &call, "size").await?;
    if index >= size {
        return Err(ApiError::bad_param_combo().with_detail("index not below size"));
    }
    let (leaf, proof) = state
        .reads
        .with(move |s| {
            let leaf = s.audit_entries(index, 1)?.first().map(|r| r.leaf);
            Ok((leaf, s.audit_inclusion_proof(index, size)?))
        })
        .await?;
    let leaf = leaf.ok_or_else(|| ApiError::unknown().with_detail("entry missing"))?;
    Ok(Json(json!({
        "index": index,
        "size": size,
        "leaf": B64.encode(leaf.0),
        "proof": hashes(&proof),
    }))
    .into_response())
}

/// `GET /ztx/v1/audit/consistency?from=M[&to=N]`: the proof that the tree of N entries
/// (default: the newest checkpoint's size) extends the tree of M.
pub async fn consistency(state: AppState, call: Call) -> Result<Response, ApiError> {
    state.log_key().ok_or_else(no_log)?;
    let from = call.params.u64("from")?;
    let to = tree_size(&state, &call, "to").await?;
    if from > to {
        return Err(ApiError::bad_param_combo().with_detail("from above to"));
    }
    let proof = state
        .reads
        .with(move |s| s.audit_consistency_proof(from, to))
        .await?;
    Ok(Json(json!({ "from": from, "to": to, "proof": hashes(&proof) })).into_response())
}

/// A tree size from parameter `name`, at most the newest checkpoint's (the default).
async fn tree_size(state: &AppState, call: &Call, name: &str) -> Result<u64, ApiError> {
    let signed = latest(state).await?.size;
    match call.params.optional_u64(name)? {
        None => Ok(signed),
        Some(size) if size <= signed => Ok(size),
        Some(_) => Err(ApiError::bad_param_combo()
            .with_detail(format!("{name} is past the newest checkpoint ({signed})"))),
    }
}
