//! Reading the store: listing keys, fetching an object whole (a manifest) or a byte
//! range of it (a backup, range by range, so memory stays bounded), deleting one.

use super::{Client, S3Error};
use hyper::body::Bytes;
use rusty_s3::S3Action;
use rusty_s3::actions::ListObjectsV2;

/// One object a listing returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

impl Client {
    /// Every object whose key starts with `prefix`, in key order (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let url = action.sign(self.signature_lifetime());
            let resp = self.send("GET", url, &[], Bytes::new()).await?;
            let page = ListObjectsV2::parse_response(&resp.text()?)
                .map_err(|e| S3Error::bad_response(format!("ListObjectsV2: {e}")))?;
            out.extend(page.contents.into_iter().map(|c| Listed {
                key: c.key,
                size: c.size.unwrap_or(0),
            }));
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The whole object, or None when there is no such key.
    pub async fn get_object(&self, key: &str) -> Result<Option<Bytes>, S3Error> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(self.signature_lifetime());
        match self.send("GET", url, &[], Bytes::new()).await {
            Ok(resp) => Ok(Some(resp.body)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes `start..start + len` of an object (fewer at its end).
    pub async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes, S3Error> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(self.signature_lifetime());
        let range = format!("bytes={start}-{}", start + len.max(1) - 1);
        let resp = self
            .send("GET", url, &[("range", &range)], Bytes::new())
            .await?;
        if resp.status == 200 && resp.body.len() as u64 > len {
            // A store that ignores Range sends the whole object: take the asked part.
            let end = (start + len).min(resp.body.len() as u64) as usize;
            return Ok(resp.body.slice((start as usize).min(end)..end));
        }
        Ok(resp.body)
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(self.signature_lifetime());
        self.send("DELETE", url, &[], Bytes::new()).await.map(drop)
    }
}
