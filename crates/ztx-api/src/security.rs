//! What customers and the gate see of security monitoring: banned addresses (refused
//! with Binance's 418 and `Retry-After`), the customer's notifications, and re-enabling a
//! key that detection froze.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use ztx_audit::{Entry, Kind, Outcome};
use ztx_store::SecurityEffect;

use crate::error::ApiError;
use crate::gate::Call;
use crate::state::AppState;

/// The most addresses banned at once; past it expired bans are dropped, and if none
/// has expired the ban is still enforced by replacing the soonest to expire.
const MAX_BANS: usize = 100_000;

/// Addresses refused until a time: a ban is a response to a detection, logged in the
/// audit log and stored (`ip_bans`) in the same commit; the gate reads this copy in
/// memory, which the monitor fills from the store as the server starts, so a restart
/// does not lift a ban.
#[derive(Debug, Default)]
pub struct Bans {
    until: Mutex<HashMap<IpAddr, u64>>,
}

impl Bans {
    /// Refuses `ip` until `until_ms` (a later ban of the same address extends it).
    pub fn ban(&self, ip: IpAddr, until_ms: u64, now_ms: u64) {
        let Ok(mut bans) = self.until.lock() else {
            return;
        };
        if bans.len() >= MAX_BANS {
            bans.retain(|_, until| *until > now_ms);
        }
        if bans.len() >= MAX_BANS
            && let Some(soonest) = bans.iter().min_by_key(|(_, u)| **u).map(|(ip, _)| *ip)
        {
            bans.remove(&soonest);
        }
        let until = bans.entry(ip).or_insert(until_ms);
        *until = (*until).max(until_ms);
    }

    /// Until when `ip` is banned, if it is at `now_ms`.
    pub fn banned_until(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        let bans = self.until.lock().ok()?;
        bans.get(&ip).copied().filter(|&until| until > now_ms)
    }
}

/// The refusal of a banned address: 418, -1003, and when to come back.
pub fn banned(until_ms: u64, now_ms: u64) -> ApiError {
    let retry_after_s = until_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
    ApiError::ip_banned(until_ms, retry_after_s)
}

/// `GET /ztx/v1/notifications[?limit=N][&beforeId=I]`: the customer's notifications,
/// newest first (`limit` default 50, clamped to 1–500).
pub async fn notifications(state: AppState, call: Call) -> Result<Response, ApiError> {
    let customer = call.customer()?;
    // Clamped, as Binance's `limit` parameters are.
    let limit = call
        .params
        .optional_u64("limit")?
        .unwrap_or(50)
        .clamp(1, 500);
    let limit = u32::try_from(limit).unwrap_or(500);
    let before = call.params.optional_u64("beforeId")?;
    call.params.ensure_all_read()?;
    let found = state
        .reads
        .with(move |s| s.customer_scope(customer)?.notifications(before, limit))
        .await?;
    let body: Vec<_> = found
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "time": n.created_ms,
                "finding": n.finding,
                "message": n.message,
            })
        })
        .collect();
    Ok(Json(body).into_response())
}

/// `POST /ztx/v1/apiKey/unfreeze`: re-enables the key that signs the request, after
/// detection froze it. Only a valid signature by the key itself gets here, so the
/// burst of bad signatures that froze it cannot lift the freeze. The key change is
/// logged with the request, in the commit that lifts it.
pub async fn unfreeze(state: AppState, call: Call) -> Result<Response, ApiError> {
    let key = call.key.clone().ok_or_else(ApiError::unauthorized)?;
    call.params.ensure_all_read()?;
    let answer = || Json(json!({ "apiKeyId": key.id.0, "frozen": false })).into_response();
    if key.frozen_ms.is_none() {
        return Ok(answer());
    }
    let change = |request_id| Entry {
        prev: ztx_audit::Hash::ZERO,
        time_ms: call.now_ms,
        kind: Kind::KeyChange,
        request_id,
        customer: Some(key.customer.0),
        api_key: Some(key.id.0),
        operator: None,
        client_ip: Some(call.ip),
        action: "api-key unfreeze".into(),
        params: Vec::new(),
        outcome: Outcome::Success,
        denial: None,
        code: None,
    };
    let effect = SecurityEffect::UnfreezeKey { key: key.id };
    commit_change(&state, &call, change, vec![effect]).await?;
    state.forget_key(key.id);
    Ok(answer())
}

/// Commits a customer's change: the request's entry, the store calls it made, then the
/// change's own entry (`change` of the request's id), with `effects`, in one commit. If
/// it cannot be written, the request's entry and the calls go back to be logged alone.
pub(crate) async fn commit_change(
    state: &AppState,
    call: &Call,
    change: impl FnOnce(u64) -> Entry,
    effects: Vec<SecurityEffect>,
) -> Result<(), ApiError> {
    let request = call.audit.take_for_command();
    let change = change(request.as_ref().map_or(0, |e| e.request_id));
    let accessed = crate::accounting::take_for_commit(call.now_ms);
    let mut entries: Vec<Entry> = request.iter().cloned().collect();
    entries.extend(accessed.iter().cloned());
    entries.push(change);
    if let Err(e) = state.engine.respond(entries, effects).await {
        if let Some(request) = request {
            call.audit.put_back(request);
        }
        crate::accounting::put_back(accessed);
        return Err(crate::trade::engine_error(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_ban_lasts_until_its_time_and_the_longest_wins() {
        let bans = Bans::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(bans.banned_until(ip, 0), None);
        bans.ban(ip, 10_000, 0);
        assert_eq!(bans.banned_until(ip, 9_999), Some(10_000));
        assert_eq!(bans.banned_until(ip, 10_000), None);
        bans.ban(ip, 5_000, 0);
        assert_eq!(
            bans.banned_until(ip, 9_000),
            Some(10_000),
            "a shorter ban does not cut a longer one"
        );
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(bans.banned_until(other, 1), None);
    }

    #[test]
    fn the_refusal_says_when_to_come_back() {
        let e = banned(10_500, 9_000);
        assert_eq!(e.code(), -1003);
        assert_eq!(e.retry_after_s(), Some(2));
        assert_eq!(banned(10_000, 9_999).retry_after_s(), Some(1));
    }
}
