//! `GET /api/v1/logs` and `POST /api/v1/logs/flush`: thin calls into `logship`.

use super::ApiError;
use crate::daemon::{Logs, State};
use axum::Json;
use axum::extract::State as Ax;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

pub async fn status(Ax(state): Ax<Arc<State>>) -> Response {
    match &state.logs {
        Logs::Off => Json(json!({"enabled": false, "sources": []})).into_response(),
        Logs::Broken(e) => Json(json!({
            "enabled": true,
            "running": false,
            "sources": [],
            "last_error": e,
            "failing": true,
        }))
        .into_response(),
        Logs::On(shipper) => Json(shipper.status()).into_response(),
    }
}

pub async fn flush(Ax(state): Ax<Arc<State>>) -> Result<Response, ApiError> {
    match &state.logs {
        Logs::Off => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "logs_not_configured",
            message: "log shipping is not configured on this node (no [logs] table)".into(),
        }),
        Logs::Broken(e) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "logship_not_running",
            message: format!("log shipping could not start: {} ({})", e.message, e.code),
        }),
        Logs::On(shipper) => match shipper.flush().await {
            Ok(ticket) => Ok((StatusCode::ACCEPTED, Json(ticket)).into_response()),
            Err(e) => Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: e.code,
                message: e.message,
            }),
        },
    }
}
