//! The transport under the S3 client: hyper's pooled HTTP/1.1 client, with rustls for
//! `https://` endpoints. The system's CA certificates (`SSL_CERT_FILE`, or the usual
//! bundle) are loaded only for an https endpoint, and a plain-http store gets a pool
//! without TLS, so it runs no TLS code and keeps no TLS state (resident memory,
//! BENCHMARKS.md). Answers are read whole up to a cap.

use super::{ErrorKind, S3Error};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An answer larger than this is refused rather than buffered.
const MAX_ANSWER: usize = 256 << 20;

pub(super) enum Transport {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// The parts of an answer the S3 client reads.
pub(super) struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub content_length: Option<u64>,
    pub body: Bytes,
}

impl Transport {
    pub fn new(https: bool) -> Transport {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(4);
        if !https {
            return Transport::Plain(builder.build(HttpConnector::new()));
        }
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let _ = roots.add_parsable_certificates(found.certs);
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Transport::Tls(builder.build(connector))
    }

    pub async fn send(
        &self,
        method: &'static str,
        url: &url::Url,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, S3Error> {
        let what = || format!("{method} {}", redacted(url));
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(hyper::header::CONTENT_LENGTH, body.len());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| S3Error::new(ErrorKind::Config, format!("{}: {e}", what())))?;
        let resp = match self {
            Transport::Plain(c) => c.request(req).await,
            Transport::Tls(c) => c.request(req).await,
        };
        let resp = resp.map_err(|e| {
            S3Error::new(
                ErrorKind::Unreachable,
                format!("{}: {}", what(), crate::http_client::error_chain(&e)),
            )
        })?;
        let status = resp.status().as_u16();
        let header = |name: hyper::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(hyper::header::ETAG);
        let content_length = header(hyper::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                S3Error::new(
                    ErrorKind::Unreachable,
                    format!("{}: reading the answer: {e}", what()),
                )
            })?
            .to_bytes();
        Ok(Answer {
            status,
            etag,
            content_length,
            body,
        })
    }
}

/// The URL without its query, which holds the signature.
pub(super) fn redacted(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}
