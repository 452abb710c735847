//! `POST /api/v1/backups/{id}/restore` and `GET /api/v1/restores`: thin calls into
//! `backup::restore`. The request's password, if any, goes to the target engine and
//! nowhere else: not into the history, the log or an answer.

use super::ApiError;
use super::backups::{answer, configured, valid_id_or_400};
use crate::backup::restore::Request;
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
            "the body must be JSON {{\"mode\": \"to\", \"target\": \"HOST:PORT\"}}: {e}"
        ))
    })?;
    if body.mode != "to" {
        return Err(bad(format!(
            "mode `{}` is not one this daemon runs; the modes are: to",
            body.mode
        )));
    }
    let target = body.target.ok_or_else(|| {
        bad("mode `to` needs `target`: HOST:PORT of an engine outside the mesh".into())
    })?;
    let c = &state.config;
    let mut mesh = vec![(c.engine_host(), c.engine.port)];
    mesh.extend(c.peers.iter().map(|p| (p.address.clone(), p.engine_port)));
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
