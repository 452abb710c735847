//! `/api/v1/upgrades…`: thin calls into `upgrade`. Operators read the state and
//! approve, confirm or ask for a rollback; the agent plans, reports steps and asks for
//! the gate; peers take and give back the lease and read each other's summary.

use super::ApiError;
use crate::daemon::State;
use crate::upgrade::plan::PlanError;
use crate::upgrade::wire::{ApproveRequest, Event, LeaseRelease, LeaseRequest, PlanRequest};
use crate::upgrade::{events, gate, lease, ops, plan, status};
use axum::Json;
use axum::extract::{Path, Query, State as Ax};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn answer(e: PlanError) -> ApiError {
    ApiError {
        status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        code: e.code,
        message: e.message,
    }
}

fn body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    code: &'static str,
    shape: &str,
) -> Result<T, ApiError> {
    let text = if bytes.is_empty() { &b"{}"[..] } else { bytes };
    serde_json::from_slice(text).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code,
        message: format!("the body must be {shape}: {e}"),
    })
}

/// A release or attempt id: letters, digits, `.`, `_`, `-`, `+`, at most 128.
fn valid_id(id: &str, code: &'static str) -> Result<(), ApiError> {
    if crate::upgrade::record::valid_id(id) {
        return Ok(());
    }
    Err(ApiError {
        status: StatusCode::BAD_REQUEST,
        code,
        message: format!("`{id}` is not an id (letters, digits, . _ - +; at most 128)"),
    })
}

#[derive(Deserialize)]
pub(super) struct StatusQuery {
    history: Option<usize>,
    fleet: Option<bool>,
}

pub(super) async fn show(
    Ax(state): Ax<Arc<State>>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(q) => q,
        Err(e) => {
            return ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "query_invalid",
                message: format!(
                    "the query takes history (a number) and fleet (true or false): {}",
                    e.body_text()
                ),
            }
            .into_response();
        }
    };
    let mut v = status::status(&state.upgrades, q.history.unwrap_or(20).min(1000));
    if q.fleet == Some(true) {
        let mut nodes = vec![serde_json::to_value(lease::summary(&state).await).expect("json")];
        for (name, s) in lease::peer_summaries(&state).await {
            nodes.push(match s {
                Ok(s) => serde_json::to_value(s).expect("json"),
                Err(e) => json!({"node": name, "error": e, "state": "unknown"}),
            });
        }
        v["fleet"] = nodes.into();
    }
    Json(v).into_response()
}

pub(super) async fn peer(Ax(state): Ax<Arc<State>>) -> Response {
    Json(lease::summary(&state).await).into_response()
}

pub(super) async fn plan(Ax(state): Ax<Arc<State>>, bytes: axum::body::Bytes) -> Response {
    let req: PlanRequest = match body(
        &bytes,
        "upgrade_plan_invalid",
        "{\"current\": generation, \"candidate\"?: generation, \"manual_from\"?: generation}",
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match plan::plan(&state, req).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => answer(e).into_response(),
    }
}

pub(super) async fn event(
    Ax(state): Ax<Arc<State>>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    if let Err(e) = valid_id(&id, "upgrade_attempt_id_invalid") {
        return e.into_response();
    }
    let ev: Event = match body(
        &bytes,
        "upgrade_event_invalid",
        "{\"seq\": n, \"event\": \"switched\"|\"gate_passed\"|..., ...}",
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match events::event(&state, &id, ev).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => answer(e).into_response(),
    }
}

pub(super) async fn gate_check(Ax(state): Ax<Arc<State>>, Path(id): Path<String>) -> Response {
    if let Err(e) = valid_id(&id, "upgrade_attempt_id_invalid") {
        return e.into_response();
    }
    let rec = state.upgrades.snapshot();
    let Some(attempt) = rec.attempts.iter().rev().find(|a| a.id == id) else {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            code: "upgrade_attempt_not_found",
            message: format!("no upgrade attempt {id} on this node"),
        }
        .into_response();
    };
    let (_, since) = gate::expected(attempt);
    Json(gate::evaluate(&state, attempt, since as f64).await).into_response()
}

pub(super) async fn lease_take(Ax(state): Ax<Arc<State>>, bytes: axum::body::Bytes) -> Response {
    let req: LeaseRequest = match body(
        &bytes,
        "upgrade_lease_invalid",
        "{\"holder\": node, \"release\": id, \"ttl_seconds\": n}",
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match lease::grant(&state, &req).await {
        Ok(l) => Json(l).into_response(),
        Err(r) => ApiError {
            status: StatusCode::CONFLICT,
            code: r.code,
            message: r.message,
        }
        .into_response(),
    }
}

pub(super) async fn lease_give_back(
    Ax(state): Ax<Arc<State>>,
    bytes: axum::body::Bytes,
) -> Response {
    let req: LeaseRelease = match body(&bytes, "upgrade_lease_invalid", "{\"holder\": node}") {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match lease::release(&state, &req) {
        Ok(released) => Json(json!({"released": released})).into_response(),
        Err(r) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: r.code,
            message: r.message,
        }
        .into_response(),
    }
}

pub(super) async fn approve(
    Ax(state): Ax<Arc<State>>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    if let Err(e) = valid_id(&id, "upgrade_release_invalid") {
        return e.into_response();
    }
    let req: ApproveRequest = match body(&bytes, "upgrade_approve_invalid", "{\"now\"?: bool}") {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match ops::approve_fleet(&state, &id, req.now, req.fleet).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => answer(e).into_response(),
    }
}

pub(super) async fn confirm(Ax(state): Ax<Arc<State>>) -> Response {
    match ops::confirm(&state) {
        Ok(release) => Json(json!({"confirmed": release})).into_response(),
        Err(e) => answer(e).into_response(),
    }
}

pub(super) async fn rollback(Ax(state): Ax<Arc<State>>) -> Response {
    match ops::request_rollback(&state, "an operator") {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"requested": true}))).into_response(),
        Err(e) => answer(e).into_response(),
    }
}

/// `GET /api/v1/upgrades/preflight`: may a generation be switched to by hand now? The
/// agent's own switches are allowed; otherwise the fleet must be healthy and no node
/// upgrading (the NixOS `preSwitchChecks` entry asks this).
pub(super) async fn preflight(Ax(state): Ax<Arc<State>>) -> Response {
    let rec = state.upgrades.snapshot();
    if let Some(a) = rec.active()
        && matches!(
            a.phase,
            crate::upgrade::record::Phase::Switching | crate::upgrade::record::Phase::RollingBack
        )
    {
        return Json(json!({"allowed": true, "reason": format!("attempt {} switches", a.id)}))
            .into_response();
    }
    let mut reasons = Vec::new();
    let me = lease::summary(&state).await;
    if !me.healthy {
        reasons.push(format!("this node: {}", me.problems.join("; ")));
    }
    if let Some(a) = rec.active() {
        reasons.push(format!(
            "this node is in attempt {} ({})",
            a.id,
            a.phase.as_str()
        ));
    }
    if let Some(l) = rec.live_lease(crate::upgrade::now_unix())
        && l.holder != state.config.node_name
    {
        reasons.push(format!("{} holds the upgrade lease", l.holder));
    }
    for (name, s) in lease::peer_summaries(&state).await {
        match s {
            Err(e) => reasons.push(format!("{name} cannot be asked: {e}")),
            Ok(s) if !s.healthy => reasons.push(format!("{name}: {}", s.problems.join("; "))),
            Ok(s) if s.state != "idle" && s.state != "waiting" => {
                reasons.push(format!("{name} is upgrading ({})", s.state));
            }
            Ok(_) => {}
        }
    }
    if reasons.is_empty() {
        return Json(json!({"allowed": true, "reason": "the fleet is healthy and idle"}))
            .into_response();
    }
    let mut resp = (
        StatusCode::CONFLICT,
        Json(json!({
            "allowed": false,
            "error": {"code": "switch_refused", "message": reasons.join("; ")},
            "reasons": reasons,
        })),
    )
        .into_response();
    resp.extensions_mut()
        .insert(super::ErrorCode("switch_refused"));
    resp
}
