//! The daemon's local HTTP API (v1). Handlers stay thin: they call `fleet` or `metrics`
//! and translate the result; errors become JSON responses in exactly one place,
//! `ApiError::into_response`. This module owns routing, authentication and the OpenAPI
//! document; it must not talk to the engine or to peers itself.

mod access_log;
mod backups;
mod logs;
mod restores;
mod upgrades;

use crate::daemon::State;
use crate::fleet;
use axum::extract::{Request, State as Ax};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// An error answered to a client: a status, a stable snake_case code and a message
/// that is safe to show (no secrets, no internal detail beyond what helps).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, status = %self.status, "{}", self.message);
        } else {
            tracing::info!(code = self.code, status = %self.status, "{}", self.message);
        }
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// The error code of a response, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

pub fn router(state: Arc<State>) -> Router {
    let protected = Router::new()
        .route("/readyz", get(readyz))
        .route("/api/v1/node", get(node))
        .route("/api/v1/fleet", get(fleet_view))
        .route("/api/v1/safety", get(safety))
        .route("/api/v1/safety/repair", post(safety_repair))
        .route("/api/v1/safety/diff", get(diff_show).post(diff_start))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/api/v1/logs", get(logs::status))
        .route("/api/v1/logs/flush", post(logs::flush))
        .route("/api/v1/backups", get(backups::list).post(backups::create))
        .route("/api/v1/backups/{id}", get(backups::show))
        .route("/api/v1/backups/{id}/restore", post(restores::start))
        .route(
            "/api/v1/restores",
            get(restores::list).post(restores::create),
        )
        .route("/api/v1/restores/steps", post(restores::step))
        .route("/api/v1/upgrades", get(upgrades::show))
        .route("/api/v1/upgrades/peer", get(upgrades::peer))
        .route("/api/v1/upgrades/preflight", get(upgrades::preflight))
        .route("/api/v1/upgrades/plan", post(upgrades::plan))
        .route("/api/v1/upgrades/confirm", post(upgrades::confirm))
        .route("/api/v1/upgrades/rollback", post(upgrades::rollback))
        .route("/api/v1/upgrades/lease", post(upgrades::lease_take))
        .route(
            "/api/v1/upgrades/lease/release",
            post(upgrades::lease_give_back),
        )
        .route(
            "/api/v1/upgrades/attempts/{id}/events",
            post(upgrades::event),
        )
        .route(
            "/api/v1/upgrades/attempts/{id}/gate",
            get(upgrades::gate_check),
        )
        .route("/api/v1/upgrades/{id}/approve", post(upgrades::approve))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    match state.access_log.clone() {
        Some(log) => router.layer(middleware::from_fn(move |req, next| {
            access_log::record(log.clone(), req, next)
        })),
        None => router,
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(Ax(state): Ax<Arc<State>>) -> Response {
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

async fn node(Ax(state): Ax<Arc<State>>) -> Response {
    Json(fleet::local_node(&state).await).into_response()
}

async fn fleet_view(Ax(state): Ax<Arc<State>>) -> Response {
    Json(fleet::fleet(&state).await).into_response()
}

async fn safety(Ax(state): Ax<Arc<State>>) -> Response {
    Json(state.safety.report()).into_response()
}

async fn safety_repair(Ax(state): Ax<Arc<State>>, body: axum::body::Bytes) -> Response {
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

async fn diff_start(Ax(state): Ax<Arc<State>>, body: axum::body::Bytes) -> Response {
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

async fn diff_show(Ax(state): Ax<Arc<State>>) -> Response {
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

async fn metrics(Ax(state): Ax<Arc<State>>) -> Response {
    let body = fleet::metrics_text(&state).await;
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "route_not_found",
        message: format!(
            "no route {} {}; see /api/v1/openapi.json",
            req.method(),
            req.uri().path()
        ),
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{} is not allowed on {}; see /api/v1/openapi.json for each route's methods",
            req.method(),
            req.uri().path()
        ),
    }
}

/// With a token configured, every route but `/healthz` wants `Authorization: Bearer`.
async fn require_token(Ax(state): Ax<Arc<State>>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "token_invalid",
            message: "the bearer token does not match".into(),
        }
        .into_response(),
        None => {
            let mut r = ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "token_missing",
                message: "this API requires `Authorization: Bearer <token>`".into(),
            }
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// Compares without an early exit, so response time does not leak the token's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
