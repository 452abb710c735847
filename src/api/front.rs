//! What every request passes before the router, in order: HTTP/1.1 needs exactly one
//! `Host` (400); on a token-guarded daemon every route but `/healthz` needs exactly one
//! `Authorization: Bearer` with the token (400 for two, 401 otherwise, before any
//! routing detail such as 404 or 405); a body must fit `api.max_body` (413) and arrive
//! within `api.header_timeout` (408). After the router, every answer is counted in
//! `keyfleet_http_requests_total{route,status}`; accepted requests go to the access
//! log, rejected ones to `rejections`.

use super::rejections::{self, Rejections};
use super::{ErrorCode, access_log, routes};
use crate::daemon::State;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tower_service::Service;

/// The route template a response answered, set by the router's layer; absent for a
/// request no route matched.
#[derive(Debug, Clone, Copy)]
pub struct RouteTag(pub &'static str);

/// Marks a response as a rejection: counted and summarised, not logged on its own.
#[derive(Debug, Clone, Copy)]
pub struct Rejected;

/// The label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

pub struct Front {
    state: Arc<State>,
    router: Router,
    pub rejections: Rejections,
    /// The number of the access log's next line.
    access_seq: std::sync::atomic::AtomicU64,
}

impl Front {
    pub fn new(state: Arc<State>) -> Arc<Front> {
        Arc::new(Front {
            router: super::router(state.clone()),
            rejections: Rejections::new(
                state.config.api.rejections_log_interval,
                state.access_log.is_some(),
            ),
            state,
            access_seq: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// A request hyper turned away itself (a head too large or malformed).
    pub fn note_unrouted(&self, status: u16) {
        self.state.metrics.http.request(UNMATCHED, status);
        self.rejected(status, None, "");
    }

    /// Counts a rejection for its summary; true when the access log keeps it (the
    /// ones it leaves out are counted).
    fn rejected(&self, status: u16, peer: Option<std::net::IpAddr>, path: &str) -> bool {
        let keep = self.rejections.note(status, peer, path);
        if !keep && self.state.access_log.is_some() {
            self.state.metrics.http.log_skipped();
        }
        keep
    }
}

/// A rejection's answer: the error body every route uses, marked `Rejected`.
pub fn reject(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    let mut resp = (status, axum::Json(body)).into_response();
    resp.extensions_mut().insert(ErrorCode(code));
    resp.extensions_mut().insert(Rejected);
    resp
}

pub async fn handle<B>(front: &Front, peer: SocketAddr, req: Request<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = rejections::cut(req.uri().path()).to_owned();
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = match admit(&front.state, req).await {
        Ok(req) => {
            let mut router = front.router.clone();
            match router.call(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
        Err(resp) => resp,
    };
    let route = resp
        .extensions()
        .get::<RouteTag>()
        .map(|t| t.0)
        .or_else(|| routes::template_of(&path));
    let status = resp.status().as_u16();
    front
        .state
        .metrics
        .http
        .request(route.unwrap_or(UNMATCHED), status);
    let logged = resp.extensions().get::<Rejected>().is_none()
        || front.rejected(status, Some(peer.ip()), &path);
    if logged && let Some(log) = &front.state.access_log {
        access_log::write(
            log,
            access_log::Line {
                seq: front
                    .access_seq
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                peer,
                method: method.as_str(),
                route: route.unwrap_or(&path),
                status,
                started,
                error: resp.extensions().get::<ErrorCode>().map(|c| c.0),
            },
        );
    }
    resp
}

async fn admit(state: &State, req: Request<Body>) -> Result<Request<Body>, Response> {
    if req.version() == Version::HTTP_11 {
        let hosts = req.headers().get_all(header::HOST).iter().count();
        if hosts != 1 {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "host_invalid",
                format!("an HTTP/1.1 request needs exactly one Host header, not {hosts}"),
            ));
        }
    }
    if let Some(token) = &state.token
        && req.uri().path() != routes::HEALTHZ
    {
        authorize(&req, token).map_err(|r| *r)?;
    }
    read_body(state, req).await
}

/// Exactly one `Authorization` header whose scheme is `Bearer` in any case (RFC 7235
/// §2.1) and whose credentials are the token, compared in constant time.
fn authorize(req: &Request<Body>, token: &str) -> Result<(), Box<Response>> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        return Err(Box::new(reject(
            StatusCode::BAD_REQUEST,
            "authorization_repeated",
            "send one Authorization header, not several".into(),
        )));
    }
    let given = first.and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, credentials) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| credentials.trim_start_matches(' '))
    });
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Box::new(reject(
            StatusCode::UNAUTHORIZED,
            "token_invalid",
            "the bearer token does not match".into(),
        ))),
        None => {
            let mut r = reject(
                StatusCode::UNAUTHORIZED,
                "token_missing",
                "this API requires `Authorization: Bearer <token>`".into(),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(r))
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

/// Reads the whole body, bounded in size and time, so that no handler waits on a slow
/// client or holds more than `api.max_body` of it.
async fn read_body(state: &State, req: Request<Body>) -> Result<Request<Body>, Response> {
    let max = state.config.api.max_body;
    let too_large = || {
        reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a request body may be at most {max} bytes (api.max_body)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    if declared == Some(0)
        || (declared.is_none() && !req.headers().contains_key(header::TRANSFER_ENCODING))
    {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    let timeout = state.config.api.header_timeout;
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(reject(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            "the request body ended early or was malformed".into(),
        )),
        Err(_) => Err(reject(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} (api.header_timeout)",
                crate::config::show_duration(timeout)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(values: &[&str]) -> Request<Body> {
        let mut b = Request::builder().uri("/api/v1/node");
        for v in values {
            b = b.header(header::AUTHORIZATION, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    fn code(r: Result<(), Box<Response>>) -> Option<(u16, &'static str)> {
        r.err().map(|r| {
            (
                r.status().as_u16(),
                r.extensions().get::<ErrorCode>().unwrap().0,
            )
        })
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_one_header_only() {
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR  s3cret",
        ] {
            assert_eq!(code(authorize(&with_auth(&[ok]), "s3cret")), None, "{ok}");
        }
        assert_eq!(
            code(authorize(
                &with_auth(&["Bearer s3cret", "Bearer s3cret"]),
                "s3cret"
            )),
            Some((400, "authorization_repeated"))
        );
        for bad in ["Bearer s3cre", "Bearer s3cretX", "Bearer S3CRET"] {
            assert_eq!(
                code(authorize(&with_auth(&[bad]), "s3cret")),
                Some((401, "token_invalid")),
                "{bad}"
            );
        }
        for missing in ["Basic czNjcmV0", "Bearers3cret", "s3cret", ""] {
            assert_eq!(
                code(authorize(&with_auth(&[missing]), "s3cret")),
                Some((401, "token_missing")),
                "{missing:?}"
            );
        }
        assert_eq!(
            code(authorize(&with_auth(&[]), "s3cret")),
            Some((401, "token_missing"))
        );
    }
}
