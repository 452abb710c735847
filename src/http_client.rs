//! A small HTTP/1.1 GET and POST client for keyfleet's own APIs: a daemon asking its peers, and
//! `keyfleet status` asking a daemon. Plain `http://host:port` only, one connection per
//! request, the body read whole up to a cap. It is this small on purpose: a general
//! client (URL parsing, IDNA tables, pools, TLS) would be most of the daemon's resident
//! memory. Callers bound the whole exchange with their own timeout.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A peer answer larger than this is refused rather than buffered.
const MAX_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is not an http://host:port URL")]
    BadUrl(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Exchange { addr: String, source: hyper::Error },
    #[error("reading the answer of {addr} failed: {message}")]
    Body { addr: String, message: String },
}

/// An error and its causes on one line ("client error (Connect): tcp connect error: ...").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// GETs `url` (http://host:port/path), with `Authorization: Bearer` when a token is given.
pub async fn get(url: &str, bearer: Option<&str>) -> Result<Response, HttpError> {
    request(hyper::Method::GET, url, bearer, Bytes::new(), &[]).await
}

/// POSTs an empty body to `url`, as [`get`] does otherwise.
pub async fn post(url: &str, bearer: Option<&str>) -> Result<Response, HttpError> {
    request(hyper::Method::POST, url, bearer, Bytes::new(), &[]).await
}

/// POSTs a JSON body to `url`, with extra headers, as [`post`] does otherwise.
pub async fn post_json(
    url: &str,
    bearer: Option<&str>,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Result<Response, HttpError> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(hyper::Method::POST, url, bearer, body, &all).await
}

async fn request(
    method: hyper::Method,
    url: &str,
    bearer: Option<&str>,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Result<Response, HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::BadUrl(url.into()))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || !authority.contains(':') {
        return Err(HttpError::BadUrl(url.into()));
    }
    let path = if path.is_empty() { "/" } else { path };
    let addr = authority.to_owned();
    // tokio parses "[::1]:9850" and "10.0.0.2:9850" itself and resolves "host:port".
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|source| HttpError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| HttpError::Exchange {
            addr: addr.clone(),
            source,
        })?;
    // The connection task ends when the exchange does (or when the caller's timeout
    // drops this future, which drops `sender` and so closes the connection).
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    if let Some(token) = bearer {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|_| HttpError::BadUrl(url.into()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|source| HttpError::Exchange {
            addr: addr.clone(),
            source,
        })?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| HttpError::Body {
            addr,
            message: e.to_string(),
        })?
        .to_bytes();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_what_it_cannot_speak() {
        for url in ["https://127.0.0.1:1/x", "http:///x", "http://localhost/x"] {
            assert!(
                matches!(get(url, None).await, Err(HttpError::BadUrl(_))),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn speaks_to_an_ipv6_literal() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipped: no IPv6 loopback here");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await.unwrap();
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
        });
        let resp = get(&format!("http://[::1]:{port}/healthz"), None)
            .await
            .unwrap();
        assert_eq!((resp.status, &resp.body[..]), (200, &b"ok"[..]));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = get(&format!("http://127.0.0.1:{port}/healthz"), None)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, HttpError::Connect { .. }), "{e}");
    }
}
