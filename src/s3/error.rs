//! What can go wrong talking to a store, sorted into the few kinds an operator acts on
//! differently; each kind has one stable error code.

/// The kind of an S3 failure; [`S3Error::code`] names each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The settings cannot make a request (an endpoint that is no URL, ...).
    Config,
    /// No answer: refused connection, DNS, TLS, timeout.
    Unreachable,
    /// Wrong credentials, or credentials without the right to do this.
    AccessDenied,
    /// The bucket does not exist.
    NoSuchBucket,
    /// An answer that is not what S3 answers: not XML, no ETag, a checksum mismatch.
    BadResponse,
    /// An S3 error not covered above (a 5xx, SlowDown, NoSuchUpload, ...).
    Refused,
}

/// One failed S3 request. The message names the request and the store's own error code
/// and message when it sent them; never a credential or a signed URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct S3Error {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    s3_code: Option<String>,
}

impl S3Error {
    pub fn new(kind: ErrorKind, message: String) -> S3Error {
        S3Error {
            kind,
            message,
            status: None,
            s3_code: None,
        }
    }

    pub fn bad_response(message: String) -> S3Error {
        S3Error::new(ErrorKind::BadResponse, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code for the API, logs and `keyfleet_errors_total{code}`.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Config => "s3_config_invalid",
            ErrorKind::Unreachable => "s3_unreachable",
            ErrorKind::AccessDenied => "s3_access_denied",
            ErrorKind::NoSuchBucket => "s3_no_such_bucket",
            ErrorKind::BadResponse => "s3_bad_response",
            ErrorKind::Refused => "s3_refused",
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The store's own error code (`NoSuchUpload`, `SlowDown`, ...), when it sent one.
    pub fn s3_code(&self) -> Option<&str> {
        self.s3_code.as_deref()
    }

    /// Classifies a non-2xx answer (or a 200 carrying an `<Error>` document).
    pub fn from_body(status: u16, body: &str) -> S3Error {
        let code = xml_element(body, "Code");
        let store_message = xml_element(body, "Message").unwrap_or_default();
        let kind = match code.as_deref() {
            Some(
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidSecurity"
                | "ExpiredToken"
                | "InvalidToken",
            ) => ErrorKind::AccessDenied,
            Some("NoSuchBucket") => ErrorKind::NoSuchBucket,
            Some(_) => ErrorKind::Refused,
            None if !body.trim().is_empty() => ErrorKind::BadResponse,
            None if status == 403 => ErrorKind::AccessDenied,
            None => ErrorKind::Refused,
        };
        let message = match (&code, kind) {
            (Some(c), _) => format!("the store answered HTTP {status} {c}: {store_message}"),
            (None, ErrorKind::BadResponse) => format!(
                "the store answered HTTP {status} without an S3 error document: {:?}",
                excerpt(body)
            ),
            (None, _) => format!("the store answered HTTP {status}"),
        };
        S3Error {
            kind,
            message,
            status: Some(status),
            s3_code: code,
        }
    }

    /// The same error with `context` (what was being done) in front of its message.
    pub fn context(mut self, context: &str) -> S3Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// A 404 from a HEAD on the bucket (which carries no body) means no such bucket.
    pub(super) fn bucket_not_found(self) -> S3Error {
        if self.status == Some(404) && self.s3_code.is_none() {
            S3Error {
                kind: ErrorKind::NoSuchBucket,
                message: "the store answered HTTP 404: no such bucket".into(),
                ..self
            }
        } else {
            self
        }
    }
}

/// The text of the first `<name>` element, unescaped for the five XML entities.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    let text = body[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    Some(excerpt(&text))
}

/// At most 160 characters of `s`, control characters replaced, and the value of any
/// `X-Amz-...=` parameter a proxy may echo (the signature) cut out, for a message.
fn excerpt(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s.trim();
    while let Some(at) = rest.find("X-Amz-") {
        out.push_str(&rest[..at]);
        out.push_str("X-Amz-...");
        rest = &rest[at..];
        rest = &rest[rest.find(['&', '"', ' ', '<']).unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out.chars()
        .take(160)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_into_the_kinds_an_operator_acts_on() {
        let doc = |code: &str| {
            format!(
                "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m &amp; n</Message></Error>"
            )
        };
        for (status, body, code) in [
            (403, doc("InvalidAccessKeyId"), "s3_access_denied"),
            (403, doc("SignatureDoesNotMatch"), "s3_access_denied"),
            (403, String::new(), "s3_access_denied"),
            (404, doc("NoSuchBucket"), "s3_no_such_bucket"),
            (503, doc("SlowDown"), "s3_refused"),
            (500, String::new(), "s3_refused"),
            (404, "<html>Not Found</html>".into(), "s3_bad_response"),
        ] {
            let e = S3Error::from_body(status, &body);
            assert_eq!(e.code(), code, "{status} {body}");
            assert_eq!(e.status(), Some(status));
        }
        let e = S3Error::from_body(404, &doc("NoSuchUpload"));
        assert_eq!(
            (e.code(), e.s3_code()),
            ("s3_refused", Some("NoSuchUpload"))
        );
        assert!(e.to_string().contains("NoSuchUpload: m & n"), "{e}");
        let echo =
            "<html>GET /b/k?X-Amz-Credential=AKID%2F1&X-Amz-Signature=abcdef0123 failed</html>";
        let e = S3Error::from_body(502, echo).to_string();
        assert!(!e.contains("abcdef0123") && !e.contains("AKID"), "{e}");
        let e = S3Error::from_body(404, "").bucket_not_found();
        assert_eq!(e.code(), "s3_no_such_bucket");
    }
}
