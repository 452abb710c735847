//! `GET/POST /api/v1/backups` and `GET /api/v1/backups/{id}`: thin calls into `backup`.

use super::ApiError;
use crate::backup::{BackupError, Backups, manifest};
use crate::daemon::State;
use axum::Json;
use axum::extract::{Path, State as Ax};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

pub(super) fn configured(state: &State) -> Result<&Arc<Backups>, ApiError> {
    state.backups.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::CONFLICT,
        code: "backups_not_configured",
        message: "backups are not configured on this node (no [backups] table)".into(),
    })
}

/// A backup error as an answer: the store's and the engine's troubles are a bad
/// gateway, a backup already running a conflict, the rest the daemon's own.
pub(super) fn answer(e: BackupError) -> ApiError {
    let status = match e.code {
        "backup_in_progress"
        | "restore_in_progress"
        | "restore_session_unknown"
        | "backups_not_configured"
        | "restore_fleet_mismatch" => StatusCode::CONFLICT,
        "backup_not_found" => StatusCode::NOT_FOUND,
        "restore_target_invalid" | "restore_step_invalid" => StatusCode::BAD_REQUEST,
        "restore_engine_unsupported" | "restore_not_isolated" | "restore_no_source" => {
            StatusCode::CONFLICT
        }
        "restore_peer_unreachable" | "restore_peer_failed" | "restore_no_permission" => {
            StatusCode::BAD_GATEWAY
        }
        c if c.starts_with("restore_target_") => StatusCode::CONFLICT,
        "restore_identity_missing" => StatusCode::CONFLICT,
        c if c.starts_with("s3_") || c.starts_with("engine_") => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError {
        status,
        code: e.code,
        message: e.message,
    }
}

pub(super) fn valid_id_or_400(id: &str) -> Result<(), ApiError> {
    if manifest::valid_id(id) {
        return Ok(());
    }
    Err(ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "backup_id_invalid",
        message: format!("`{id}` is not a backup id (yyyymmddThhmmssZ-NODE)"),
    })
}

pub async fn list(Ax(state): Ax<Arc<State>>) -> Result<Response, ApiError> {
    let backups = configured(&state)?;
    let list = backups.list().await.map_err(answer)?;
    Ok(Json(json!({"running": backups.current(), "backups": list})).into_response())
}

pub async fn create(Ax(state): Ax<Arc<State>>) -> Result<Response, ApiError> {
    let backups = configured(&state)?;
    let id = backups.start(state.engine.clone()).map_err(answer)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response())
}

pub async fn show(Ax(state): Ax<Arc<State>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let backups = configured(&state)?;
    valid_id_or_400(&id)?;
    let progress = backups.current().filter(|p| p.id == id);
    if let Some(p) = progress.as_ref().filter(|p| p.state != "complete") {
        return Ok(Json(json!({"id": id, "state": p.state, "progress": p})).into_response());
    }
    match backups.show(&id).await.map_err(answer)? {
        Some(m) => Ok(Json(json!({"id": id, "state": "complete", "manifest": m})).into_response()),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "backup_not_found",
            message: format!(
                "no complete backup `{id}` (a backup is complete once its manifest exists)"
            ),
        }),
    }
}
