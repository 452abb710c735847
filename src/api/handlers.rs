//! The handlers of the routes `routes.rs` declares that need no module of their own:
//! health, readiness, node and fleet status, safety, metrics and the OpenAPI document,
//! and the answers for no route and a method not allowed.

use super::ApiError;
use super::ErrorCode;
use super::front::reject;
use crate::daemon::State;
use crate::fleet;
use axum::Json;
use axum::extract::{Request, State as Ax};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(Ax(state): Ax<Arc<State>>) -> Response {
    let node = fleet::local_node(&state).await;
    let reasons = node.problems();
    if reasons.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        let body = json!({
            "error": {"code": "not_ready", "message": reasons.join("; ")},
            "reasons": reasons,
        });
        let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        resp.extensions_mut().insert(ErrorCode("not_ready"));
        resp
    }
}

pub async fn node(Ax(state): Ax<Arc<State>>) -> Response {
    Json(fleet::local_node(&state).await).into_response()
}

pub async fn fleet_view(Ax(state): Ax<Arc<State>>) -> Response {
    match state.fleet_view.get(&state).await {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        None => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "fleet_view_failed",
            message: "the fleet view could not be gathered; see the daemon's log".into(),
        }
        .into_response(),
    }
}

pub async fn safety(Ax(state): Ax<Arc<State>>) -> Response {
    Json(state.safety.report()).into_response()
}

pub async fn safety_repair(Ax(state): Ax<Arc<State>>, body: axum::body::Bytes) -> Response {
    let req: crate::safety::repair::RepairRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "repair_request_invalid",
                message: format!(
                    "the body must be {{\"delete\": bool, \"peers\"?: bool, \"keys\"?: [{{\"db\", \"key\"}}]}}: {e}"
                ),
            }
            .into_response();
        }
    };
    if !state.safety.enabled() {
        return ApiError {
            status: StatusCode::CONFLICT,
            code: "safety_disabled",
            message: "the safety checks are off ([safety] enabled = false): nothing is tracked"
                .into(),
        }
        .into_response();
    }
    match crate::safety::repair::repair(&state, req).await {
        Ok(answer) => Json(answer).into_response(),
        Err(crate::safety::repair::Refused(message)) => ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "repair_keys_refused",
            message,
        }
        .into_response(),
    }
}

pub async fn diff_start(Ax(state): Ax<Arc<State>>, body: axum::body::Bytes) -> Response {
    use crate::safety::diff::{DiffRequest, Refused};
    let text = if body.is_empty() {
        &b"{}"[..]
    } else {
        &body[..]
    };
    let refused = |status, code, message: String| ApiError {
        status,
        code,
        message,
    };
    let req: DiffRequest = match serde_json::from_slice(text) {
        Ok(r) => r,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "diff_request_invalid",
                format!("the body must be {{\"pattern\"?: string, \"rate\"?: keys a second}}: {e}"),
            )
            .into_response();
        }
    };
    match crate::safety::diff::start(&state, req) {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response(),
        Err(Refused::Invalid(m)) => {
            refused(StatusCode::BAD_REQUEST, "diff_request_invalid", m).into_response()
        }
        Err(Refused::Running(m)) => {
            refused(StatusCode::CONFLICT, "diff_in_progress", m).into_response()
        }
    }
}

pub async fn diff_show(Ax(state): Ax<Arc<State>>) -> Response {
    match crate::safety::diff::current(&state) {
        Some(job) => Json(job).into_response(),
        None => ApiError {
            status: StatusCode::NOT_FOUND,
            code: "diff_not_found",
            message: "no diff has run on this daemon since it started; POST /api/v1/safety/diff"
                .into(),
        }
        .into_response(),
    }
}

pub async fn metrics(Ax(state): Ax<Arc<State>>) -> Response {
    let body = fleet::metrics_text(&state).await;
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

pub async fn not_found(req: Request) -> Response {
    reject(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!(
            "no route {} {}; see /api/v1/openapi.json",
            req.method(),
            super::rejections::cut(req.uri().path())
        ),
    )
}

pub async fn method_not_allowed(req: Request) -> Response {
    reject(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; see /api/v1/openapi.json for each route's methods",
            req.method(),
            super::rejections::cut(req.uri().path())
        ),
    )
}
