//! The `[backups]` table: snapshots of the engine's data to S3. Schema, defaults and
//! the checks that need no files.

use super::S3Config;
use super::units;
use crate::schedule::Schedule;
use serde::{Deserialize, Deserializer, de};
use std::time::Duration;

/// Backups of the local engine. Present means enabled (on demand through the API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsConfig {
    /// Names the fleet in object keys: `PREFIX/backups/FLEET/...`. Every node of a
    /// fleet must give the same one.
    #[serde(default = "default_fleet")]
    pub fleet: String,
    /// "zstd" (default) or "none".
    #[serde(default)]
    pub compression: BackupCompression,
    /// How long `BGSAVE` may take before the backup gives up.
    #[serde(
        default = "default_bgsave_timeout",
        deserialize_with = "units::duration"
    )]
    pub bgsave_timeout: Duration,
    /// When scheduled backups run (`every 6h`, `daily 02:30 Asia/Kolkata`); absent
    /// means on demand only. One node of the fleet takes each run.
    #[serde(default, deserialize_with = "schedule")]
    pub schedule: Option<Schedule>,
    /// Retention: keep the newest N complete backups of the fleet ...
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// ... and/or those younger than this. A backup either rule keeps is kept; with
    /// neither set nothing is deleted. The newest complete backup is never deleted.
    #[serde(default, deserialize_with = "optional_duration")]
    pub keep_within: Option<Duration>,
    /// Encrypt backups with age to the recipients (public keys, `age1...`) in this file.
    #[serde(default)]
    pub age_recipients_file: Option<std::path::PathBuf>,
    /// The age identity (`AGE-SECRET-KEY-1...`) that restores encrypted backups; only
    /// nodes that restore need it. A secret: a relative path is looked up in
    /// `$CREDENTIALS_DIRECTORY`.
    #[serde(default)]
    pub age_identity_file: Option<std::path::PathBuf>,
    /// The engine user fleet restores and node rebuilds act as (the rules in
    /// `src/engine/restore.acl`, a user for nothing else); absent means the daemon's
    /// own engine user, which then needs those rules (a dev fleet has no ACL at all).
    #[serde(default)]
    pub restore_user: Option<String>,
    /// Its password. A secret: a relative path is looked up in `$CREDENTIALS_DIRECTORY`.
    #[serde(default)]
    pub restore_password_file: Option<std::path::PathBuf>,
    /// The store; absent means the one `[logs.s3]` names, with its credentials.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

fn schedule<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Schedule>, D::Error> {
    String::deserialize(d)?
        .parse()
        .map(Some)
        .map_err(de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    units::duration(d).map(Some)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupCompression {
    #[default]
    Zstd,
    None,
}

fn default_fleet() -> String {
    "default".into()
}
fn default_bgsave_timeout() -> Duration {
    Duration::from_secs(3600)
}

impl BackupsConfig {
    /// The first problem with these settings as (key under `backups.`, message).
    pub(super) fn problem(&self, logs_s3: Option<&S3Config>) -> Option<(String, String)> {
        let p = |k: &str, m: String| Some((k.to_owned(), m));
        let f = &self.fleet;
        if f.is_empty()
            || !f
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return p(
                "fleet",
                format!(
                    "`{f}` must be letters, digits, `-`, `_` or `.` (it is part of object keys)"
                ),
            );
        }
        if self.restore_user.is_some() != self.restore_password_file.is_some() {
            return p(
                "restore_user",
                "restore_user and restore_password_file go together".into(),
            );
        }
        if self.bgsave_timeout < Duration::from_secs(1) {
            return p("bgsave_timeout", "must be at least 1s".into());
        }
        if self.keep_last == Some(0) {
            return p(
                "keep_last",
                "must be at least 1 (leave it out to keep every backup)".into(),
            );
        }
        if self
            .keep_within
            .is_some_and(|d| d < Duration::from_secs(3600))
        {
            return p("keep_within", "must be at least 1h".into());
        }
        match (&self.s3, logs_s3) {
            (Some(s3), _) => s3.problem().map(|(k, m)| (format!("s3.{k}"), m)),
            (None, Some(_)) => None,
            (None, None) => p(
                "s3",
                "no store: give [backups.s3], or [logs.s3] for both to share".into(),
            ),
        }
    }

    /// The store backups go to: their own, or the logs' one.
    pub fn store<'a>(&'a self, logs_s3: Option<&'a S3Config>) -> Option<&'a S3Config> {
        self.s3.as_ref().or(logs_s3)
    }
}
