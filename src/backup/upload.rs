//! The multipart upload of a backup's snapshot: journaled while open, aborted on any
//! failure, parts retried on transient errors.

use super::{BackupError, Backups, Journal, OpenUpload, stream};
use crate::logship::journal::save_json;
use crate::s3;

impl Backups {
    /// Streams the file to `object` by multipart upload; the upload is journaled while
    /// open and aborted on any failure.
    pub(super) async fn upload(
        &self,
        id: &str,
        object: &str,
        file: std::fs::File,
        zstd: bool,
    ) -> Result<stream::Totals, BackupError> {
        let upload_id = self
            .client
            .create_multipart(object)
            .await
            .map_err(|e| BackupError::s3("starting the upload", e))?;
        let open = OpenUpload {
            id: id.to_owned(),
            key: object.to_owned(),
            upload_id: upload_id.clone(),
        };
        if let Err(e) = save_json(&Journal { open: Some(open) }, &self.journal_path) {
            let _ = self.client.abort_multipart(object, &upload_id).await;
            return Err(BackupError::new("backup_journal", e.to_string()));
        }
        let result = self.send_parts(object, &upload_id, file, zstd).await;
        if result.is_err()
            && self
                .client
                .abort_multipart(object, &upload_id)
                .await
                .is_err()
        {
            // Left in the journal: the next start aborts it.
            return result;
        }
        if let Err(e) = save_json(&Journal::default(), &self.journal_path) {
            self.fail_quietly("backup_journal", e);
        }
        result
    }

    async fn send_parts(
        &self,
        object: &str,
        upload_id: &str,
        file: std::fs::File,
        zstd: bool,
    ) -> Result<stream::Totals, BackupError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let path = self.rdb_path.clone();
        let age = self.age.encryptor()?;
        let reader =
            tokio::task::spawn_blocking(move || stream::read_parts(file, path, zstd, age, tx));
        let mut etags = Vec::new();
        let mut sent = 0u64;
        while let Some(part) = rx.recv().await {
            let number = etags.len() as u16 + 1;
            let len = part.len() as u64;
            let etag = self
                .part_with_retries(object, upload_id, number, part.into())
                .await?;
            etags.push(etag);
            sent += len;
            self.set(|p| p.uploaded_bytes = sent);
        }
        let totals = reader
            .await
            .map_err(|e| BackupError::new("backup_rdb_unreadable", e.to_string()))?
            .map_err(|e| BackupError::new("backup_rdb_unreadable", e))?;
        self.client
            .complete_multipart(object, upload_id, &etags)
            .await
            .map_err(|e| BackupError::s3("completing the upload", e))?;
        Ok(totals)
    }

    async fn part_with_retries(
        &self,
        object: &str,
        upload_id: &str,
        number: u16,
        body: hyper::body::Bytes,
    ) -> Result<String, BackupError> {
        let mut wait = std::time::Duration::from_millis(500);
        for attempt in 1.. {
            match self
                .client
                .upload_part(object, upload_id, number, body.clone())
                .await
            {
                Ok(etag) => return Ok(etag),
                Err(e) if attempt < 4 && e.kind() == s3::ErrorKind::Unreachable => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(BackupError::s3(&format!("part {number}"), e)),
            }
        }
        unreachable!("the loop returns")
    }
}
