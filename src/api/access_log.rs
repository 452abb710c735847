//! The API's access log: one JSON line per request in `access.log` (time, peer address,
//! method, route, status, duration, error code). Only what is safe to keep: the matched
//! route or, for an unknown one, the path without its query string (capped), and never a
//! header, so no token reaches it.

use super::ErrorCode;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::logship::writer::LogFile;

/// The longest path kept for a request that matched no route.
const MAX_PATH: usize = 200;

pub async fn record(log: Arc<LogFile>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = match req.extensions().get::<MatchedPath>() {
        Some(m) => m.as_str().to_owned(),
        None => req.uri().path().chars().take(MAX_PATH).collect(),
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let resp = next.run(req).await;
    let line = serde_json::json!({
        "time": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "peer": peer,
        "method": method,
        "route": route,
        "status": resp.status().as_u16(),
        "duration_ms": (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "error": resp.extensions().get::<ErrorCode>().map(|c| c.0),
    });
    let mut bytes = serde_json::to_vec(&line).expect("a JSON value serializes");
    bytes.push(b'\n');
    log.write_line(&bytes);
    resp
}
