//! Reading the store's backups back: the fleet's complete backups (those with a
//! manifest) and one by id.

use super::{BackupError, Backups, Manifest, manifest};

impl Backups {
    /// The complete backups of this fleet (those with a manifest), oldest first.
    pub async fn list(&self) -> Result<Vec<Manifest>, BackupError> {
        let dir = manifest::object_dir(&self.store.prefix, &self.cfg.fleet);
        let mut out = Vec::new();
        for stored in self.stored().await?.iter().filter(|s| s.complete) {
            if let Some(m) = self
                .fetch_manifest(&format!("{dir}{}.json", stored.id))
                .await?
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// One backup's manifest, or None when there is no complete backup `id`.
    pub async fn show(&self, id: &str) -> Result<Option<Manifest>, BackupError> {
        let key = manifest::object_dir(&self.store.prefix, &self.cfg.fleet) + id + ".json";
        self.fetch_manifest(&key).await
    }

    async fn fetch_manifest(&self, key: &str) -> Result<Option<Manifest>, BackupError> {
        let Some(body) = self
            .client
            .get_object(key)
            .await
            .map_err(|e| BackupError::s3("reading a manifest", e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| BackupError::new("backup_manifest_corrupt", format!("{key}: {e}")))
    }
}
