//! The daemon's local HTTP API (v1). Handlers stay thin: they call `fleet` or `metrics`
//! and translate the result; errors become JSON responses in exactly one place,
//! `ApiError::into_response` (or `front::reject` for requests turned away before a
//! handler). This module owns the listener (`server`), what every request passes
//! (`front`), routing (`routes`), the concurrency limits and the OpenAPI document; it
//! must not talk to the engine or to peers itself.

mod access_log;
mod backups;
mod conns;
pub mod front;
mod handlers;
mod logs;
mod rejections;
mod restores;
pub mod routes;
pub mod server;
mod sockets;
mod upgrades;

use crate::daemon::State;
use axum::extract::{MatchedPath, Request, State as Ax};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use front::{RouteTag, reject};
use routes::Class;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Semaphore;

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
        // A client's mistake is the client's to read (and the access log's to keep);
        // logging each would let any client fill the log. The daemon's own failures
        // are logged.
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, status = %self.status, "{}", self.message);
        } else {
            tracing::debug!(code = self.code, status = %self.status, "{}", self.message);
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

/// Requests of each class running at once, `[api.limits]`.
struct Limiter {
    cheap: Arc<Semaphore>,
    fanout: Arc<Semaphore>,
    heavy: Arc<Semaphore>,
}

impl Limiter {
    fn class(&self, class: Class) -> &Arc<Semaphore> {
        match class {
            Class::Cheap => &self.cheap,
            Class::Fanout => &self.fanout,
            Class::Heavy => &self.heavy,
        }
    }
}

/// The routes of `routes::ROUTES`, each behind its class's limit and tagged with its
/// template; `front` handles the rest.
pub fn router(state: Arc<State>) -> Router {
    let limits = &state.config.api.limits;
    let limiter = Arc::new(Limiter {
        cheap: Arc::new(Semaphore::new(limits.cheap)),
        fanout: Arc::new(Semaphore::new(limits.fanout)),
        heavy: Arc::new(Semaphore::new(limits.heavy)),
    });
    routes::router()
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(middleware::from_fn_with_state(limiter, guard))
        .with_state(state)
}

/// Past a class's limit, 503 `overloaded` at once with `Retry-After`; the response
/// carries its route template for the request counter.
async fn guard(Ax(limiter): Ax<Arc<Limiter>>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
    // axum answers HEAD with a GET route's handler, so it counts as that GET.
    let method = match req.method().as_str() {
        "HEAD" => "GET",
        m => m,
    };
    let declared = matched.and_then(|p| routes::find(method, p));
    let Some(route) = declared else {
        // A known path with a method it does not serve (405), or no route (404).
        let tag = matched.and_then(routes::template_of);
        let mut resp = next.run(req).await;
        if let Some(tag) = tag {
            resp.extensions_mut().insert(RouteTag(tag));
        }
        return resp;
    };
    let mut resp = match limiter.class(route.class).clone().try_acquire_owned() {
        Ok(permit) => {
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => {
            let mut r = reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "too many {} requests at once on this daemon (api.limits.{}); retry in a second",
                    route.class.as_str(),
                    route.class.as_str()
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    };
    resp.extensions_mut().insert(RouteTag(route.path));
    resp
}
