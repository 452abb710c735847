//! S3: a small client for any S3-compatible store (AWS, garage, MinIO, s3s-fs), the
//! operations log shipping and backups need, each with a content checksum the store
//! verifies (`Content-MD5`, signed into the request) and an ETag the client checks.
//!
//! Requests are signed by `rusty-s3` (sans-IO SigV4 presigning) and sent by the hyper
//! client the daemon already links, with rustls for `https://` endpoints; BENCHMARKS.md
//! says why this pair rather than `object_store`. Every failure is an [`S3Error`] with a
//! stable code (see [`S3Error::code`]); nothing here logs, retries or holds a secret in
//! an error message.

mod error;
mod http;
mod read;

pub use error::{ErrorKind, S3Error};
pub use read::Listed;

use crate::config::{S3Config, S3Keys};
use base64::Engine as _;
use hyper::body::Bytes;
use md5::{Digest, Md5};

use rusty_s3::actions::CreateMultipartUpload;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::time::Duration;

/// Lower-case hex of a digest (ETags, manifests' checksums).
/// `bytes` random bytes from the kernel, as hex: generated keys, one-time passwords.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(hex(&buf))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long past the request timeout a signed request stays valid (clock skew, queueing).
const SIGNATURE_MARGIN: Duration = Duration::from_secs(300);

/// A connection to one bucket. Cheap to share behind an `Arc`; requests run concurrently.
pub struct Client {
    bucket: Bucket,
    credentials: Credentials,
    http: http::Transport,
    timeout: Duration,
}

impl Client {
    pub fn new(config: &S3Config, keys: &S3Keys) -> Result<Client, S3Error> {
        let endpoint: url::Url = config.endpoint.parse().map_err(|e| {
            S3Error::new(
                ErrorKind::Config,
                format!("endpoint `{}`: {e}", config.endpoint),
            )
        })?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| {
            S3Error::new(
                ErrorKind::Config,
                format!("bucket `{}`: {e}", config.bucket),
            )
        })?;
        Ok(Client {
            bucket,
            credentials: Credentials::new(&keys.access_key_id, &keys.secret_access_key),
            http: http::Transport::new(config.endpoint.starts_with("https://")),
            timeout: config.timeout,
        })
    }

    /// A signed URL is good for the request's timeout and a margin, not longer: it may be
    /// kept in a store's or a proxy's access log.
    fn signature_lifetime(&self) -> Duration {
        self.timeout + SIGNATURE_MARGIN
    }

    /// The bucket's name, for messages.
    pub fn bucket_name(&self) -> &str {
        self.bucket.name()
    }

    /// Succeeds when the bucket exists and these credentials may use it.
    pub async fn head_bucket(&self) -> Result<(), S3Error> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(self.signature_lifetime());
        self.send("HEAD", url, &[], Bytes::new())
            .await
            .map(drop)
            .map_err(S3Error::bucket_not_found)
    }

    /// Creates the bucket; one that already exists and is ours is not an error.
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        let url = self
            .bucket
            .create_bucket(&self.credentials)
            .sign(self.signature_lifetime());
        match self.send("PUT", url, &[], Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(e) if e.s3_code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Uploads `body` as `key` in one request; returns the ETag the store confirmed.
    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<String, S3Error> {
        let action = self.bucket.put_object(Some(&self.credentials), key);
        self.put_checked(action, body).await
    }

    /// PUTs `body` with its `Content-MD5` signed in (the store refuses other bytes) and
    /// checks the ETag the store answers; returns it.
    async fn put_checked<'a>(
        &self,
        mut action: impl S3Action<'a>,
        body: Bytes,
    ) -> Result<String, S3Error> {
        let md5 = Md5::digest(&body);
        let content_md5 = base64::engine::general_purpose::STANDARD.encode(md5);
        action
            .headers_mut()
            .insert("content-md5", content_md5.clone());
        let url = action.sign(self.signature_lifetime());
        let resp = self
            .send("PUT", url, &[("content-md5", &content_md5)], body)
            .await?;
        resp.checked_etag(&md5)
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_multipart(&self, key: &str) -> Result<String, S3Error> {
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key)
            .sign(self.signature_lifetime());
        let resp = self.send("POST", url, &[], Bytes::new()).await?;
        let parsed = CreateMultipartUpload::parse_response(&resp.text()?)
            .map_err(|e| S3Error::bad_response(format!("CreateMultipartUpload: {e}")))?;
        Ok(parsed.upload_id().to_owned())
    }

    /// Uploads part `number` (from 1) of an upload; returns the part's confirmed ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: Bytes,
    ) -> Result<String, S3Error> {
        let action = self
            .bucket
            .upload_part(Some(&self.credentials), key, number, upload_id);
        self.put_checked(action, body).await
    }

    /// Completes an upload from its parts' ETags in part order; returns the object's ETag.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<String, S3Error> {
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(self.signature_lifetime());
        let body = action.body();
        let resp = self.send("POST", url, &[], Bytes::from(body)).await?;
        // S3 can answer 200 and still fail, with an <Error> document in the body.
        let text = resp.text()?;
        if text.contains("<Error>") {
            return Err(S3Error::from_body(200, &text));
        }
        let parsed = rusty_s3::actions::CompleteMultipartUploadResponse::parse(&text)
            .map_err(|e| S3Error::bad_response(format!("CompleteMultipartUpload: {e}")))?;
        Ok(parsed.etag().trim_matches('"').to_owned())
    }

    /// Aborts an upload, freeing its parts; an upload already gone is not an error.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), key, upload_id)
            .sign(self.signature_lifetime());
        match self.send("DELETE", url, &[], Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(e) if e.s3_code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The object's size, or None when there is no such object.
    pub async fn head_object(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign(self.signature_lifetime());
        match self.send("HEAD", url, &[], Bytes::new()).await {
            Ok(resp) => Ok(resp.content_length),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn send(
        &self,
        method: &'static str,
        url: url::Url,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<http::Answer, S3Error> {
        let answer =
            tokio::time::timeout(self.timeout, self.http.send(method, &url, headers, body))
                .await
                .map_err(|_| {
                    S3Error::new(
                        ErrorKind::Unreachable,
                        format!(
                            "{method} {} took longer than {:?}",
                            http::redacted(&url),
                            self.timeout
                        ),
                    )
                })??;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(S3Error::from_body(
                answer.status,
                &String::from_utf8_lossy(&answer.body),
            ))
        }
    }
}

impl http::Answer {
    fn text(&self) -> Result<String, S3Error> {
        String::from_utf8(self.body.to_vec())
            .map_err(|_| S3Error::bad_response("the answer is not UTF-8".into()))
    }

    /// The answer's ETag, checked against the MD5 of what was sent where the store uses
    /// MD5 ETags (a 32-digit hex ETag; encrypted objects have other forms).
    fn checked_etag(&self, md5: &[u8]) -> Result<String, S3Error> {
        let etag = self
            .etag
            .as_deref()
            .ok_or_else(|| S3Error::bad_response("the answer has no ETag".into()))?
            .trim_matches('"')
            .to_owned();
        let expected = hex(md5);
        let looks_md5 = etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit());
        if looks_md5 && !etag.eq_ignore_ascii_case(&expected) {
            return Err(S3Error::bad_response(format!(
                "the store stored different bytes: ETag {etag}, MD5 sent {expected}"
            )));
        }
        Ok(etag)
    }
}
