//! `POST /api/v1/backups/{id}/restore` (modes `to` and `fleet`), `POST
//! /api/v1/restores` (mode `rebuild`), `GET /api/v1/restores`, and the peers' `POST
//! /api/v1/restores/steps`: thin calls into `backup::restore`. The request's password,
//! if any, goes to the target engine and nowhere else: not into the history, the log
//! or an answer. A restore that changes the fleet needs `"confirm": true`.

use super::ApiError;
use super::backups::{answer, configured, valid_id_or_400};
use crate::backup::restore::Request;
use crate::backup::restore::session::StepRequest;
use crate::daemon::State;
use crate::engine::Secret;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State as Ax};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    mode: String,
    target: Option<String>,
    user: Option<String>,
    password: Option<String>,
    #[serde(default)]
    confirm: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildBody {
    mode: String,
    from: Option<String>,
    #[serde(default)]
    confirm: bool,
}

fn unconfirmed(what: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "restore_unconfirmed",
        message: format!(
            "{what} changes the data of the fleet; send \"confirm\": true (the CLI's --yes) to run it"
        ),
    }
}

fn bad(message: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "restore_request_invalid",
        message,
    }
}

/// The client's address and, when it says, its user (`X-Keyfleet-User`, as the CLI
/// sends `$USER@host`), cut to something safe to record.
fn requested_by(peer: SocketAddr, headers: &HeaderMap) -> String {
    let user: String = headers
        .get("x-keyfleet-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    if user.is_empty() {
        peer.ip().to_string()
    } else {
        format!("{user} from {}", peer.ip())
    }
}

pub async fn start(
    Ax(state): Ax<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let backups = configured(&state)?;
    valid_id_or_400(&id)?;
    let body: Body = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body must be JSON {{\"mode\": \"to\", \"target\": \"HOST:PORT\"}} or {{\"mode\": \"fleet\", \"confirm\": true}}: {e}"
        ))
    })?;
    match body.mode.as_str() {
        "to" => {}
        "fleet" => {
            if body.target.is_some() || body.user.is_some() || body.password.is_some() {
                return Err(bad(
                    "mode `fleet` restores every node of the fleet; it takes no target, user or password".into(),
                ));
            }
            if !body.confirm {
                return Err(unconfirmed("a fleet restore"));
            }
            let by = requested_by(peer, &headers);
            let record = backups.restore_fleet(&id, &by).await.map_err(answer)?;
            return Ok((StatusCode::ACCEPTED, Json(json!({"restore": record}))).into_response());
        }
        "rebuild" => {
            return Err(bad(
                "mode `rebuild` copies a peer, not a backup: POST /api/v1/restores {\"mode\": \"rebuild\", \"confirm\": true}".into(),
            ));
        }
        other => {
            return Err(bad(format!(
                "mode `{other}` is not one this daemon runs; the modes are: to, fleet"
            )));
        }
    }
    let target = body.target.ok_or_else(|| {
        bad("mode `to` needs `target`: HOST:PORT of an engine outside the mesh".into())
    })?;
    let c = &state.config;
    let mut mesh = vec![(c.engine_host(), c.engine.port)];
    for p in &c.peers {
        mesh.push((p.address.clone(), p.engine_port));
        mesh.push((p.address.clone(), p.replication_port()));
    }
    let request = Request {
        backup: id,
        target,
        user: body.user,
        password: body.password.map(Secret::new),
        requested_by: requested_by(peer, &headers),
    };
    let record = backups.restore_to(request, &mesh).await.map_err(answer)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"restore": record}))).into_response())
}

pub async fn list(Ax(state): Ax<Arc<State>>) -> Result<Response, ApiError> {
    let backups = configured(&state)?;
    Ok(Json(json!({"restores": backups.restore_history()})).into_response())
}

/// `POST /api/v1/restores`: rebuild this node from a peer.
pub async fn create(
    Ax(state): Ax<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let backups = configured(&state)?;
    let body: RebuildBody = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body must be JSON {{\"mode\": \"rebuild\", \"from\": \"PEER\" (optional), \"confirm\": true}}: {e}"
        ))
    })?;
    if body.mode != "rebuild" {
        return Err(bad(format!(
            "mode `{}` restores a backup: POST /api/v1/backups/{{id}}/restore; here the mode is: rebuild",
            body.mode
        )));
    }
    if !body.confirm {
        return Err(unconfirmed("a node rebuild"));
    }
    let by = requested_by(peer, &headers);
    let record = backups
        .rebuild(body.from.as_deref(), &by)
        .await
        .map_err(answer)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"restore": record}))).into_response())
}

/// `POST /api/v1/restores/steps`: one step of an in-fleet restore another node (or
/// this one) coordinates.
pub async fn step(Ax(state): Ax<Arc<State>>, body: Bytes) -> Result<Response, ApiError> {
    let backups = configured(&state)?;
    let req: StepRequest = serde_json::from_slice(&body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "restore_step_invalid",
        message: format!("not a restore step: {e}"),
    })?;
    let answer = backups.restore_step(&req).await.map_err(answer)?;
    Ok(Json(answer).into_response())
}
