//! The `[logs]` table (log rotation and shipping) and the S3 settings it shares with
//! later concerns (backups). Schema, defaults and the checks that need no files.

use super::units;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Log rotation and shipping to S3. Present means enabled: the engine then logs to
/// `DIR/engine.log` instead of stdout, and the daemon writes `access.log` and
/// `daemon.log` beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// The log directory: the active files and, under `segments/`, the closed ones.
    #[serde(default = "default_log_dir")]
    pub dir: PathBuf,
    #[serde(default)]
    pub rotate: RotateConfig,
    /// "zstd" (default) or "gzip".
    #[serde(default)]
    pub compression: Compression,
    /// Disk budget for closed segments not yet deleted (shipped or not).
    #[serde(default = "default_max_local", deserialize_with = "units::size")]
    pub max_local_bytes: u64,
    /// What happens when the budget is reached: "drop_oldest" or "keep".
    #[serde(default)]
    pub on_budget_full: OnBudgetFull,
    /// How long an uploaded segment stays on disk (0: deleted once confirmed).
    #[serde(default, deserialize_with = "units::duration")]
    pub local_retention: Duration,
    /// After renaming a file another process writes (the engine's log), how long to
    /// wait for its writer to let go before the segment is closed.
    #[serde(default = "default_grace", deserialize_with = "units::duration")]
    pub writer_grace: Duration,
    /// Failed uploads are retried with exponential backoff and jitter, capped here.
    #[serde(default = "default_retry_max", deserialize_with = "units::duration")]
    pub retry_max_interval: Duration,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateConfig {
    /// An active file is rotated once it is this large...
    #[serde(default = "default_max_size", deserialize_with = "units::size")]
    pub max_size: u64,
    /// ...or once its oldest unshipped line is this old.
    #[serde(default = "default_max_age", deserialize_with = "units::duration")]
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
}

impl Compression {
    /// The file name extension of a compressed segment.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => "zst",
            Compression::Gzip => "gz",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBudgetFull {
    /// Delete the oldest unshipped segments (and count their bytes) so logs can never
    /// fill the disk under the database.
    #[default]
    DropOldest,
    /// Keep everything and raise the error.
    Keep,
}

/// An S3-compatible store: AWS, garage, MinIO, s3s-fs, ...
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `https://host[:port]` (or `http://` for a store on a trusted network).
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// Prefix of every object key, without leading or trailing `/`; may be empty.
    #[serde(default)]
    pub prefix: String,
    /// `https://endpoint/bucket/key` (true) or `https://bucket.endpoint/key` (false).
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// File holding the access key id (relative: in `$CREDENTIALS_DIRECTORY`).
    pub access_key_id_file: PathBuf,
    /// File holding the secret access key (relative: in `$CREDENTIALS_DIRECTORY`).
    pub secret_access_key_file: PathBuf,
    /// Objects larger than this are sent as multipart uploads of parts this large.
    #[serde(default = "default_part_size", deserialize_with = "units::size")]
    pub part_size: u64,
    /// One request to the store gives up after this long.
    #[serde(default = "default_s3_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
}

/// S3 refuses parts smaller than this (except the last one).
pub const MIN_PART_SIZE: u64 = 5 << 20;

fn default_log_dir() -> PathBuf {
    "/var/log/keydb".into()
}
fn default_max_local() -> u64 {
    1 << 30
}
fn default_grace() -> Duration {
    Duration::from_secs(2)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}
fn default_max_size() -> u64 {
    64 << 20
}
fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_part_size() -> u64 {
    16 << 20
}
fn default_s3_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for RotateConfig {
    fn default() -> Self {
        RotateConfig {
            max_size: default_max_size(),
            max_age: default_max_age(),
        }
    }
}

impl LogsConfig {
    /// The first problem with these settings as (key under `logs.`, message).
    pub(super) fn problem(&self) -> Option<(String, String)> {
        let p = |k: &str, m: String| Some((k.to_owned(), m));
        if !self.dir.is_absolute() {
            return p("dir", format!("`{}` is not absolute", self.dir.display()));
        }
        if self.rotate.max_size < 4096 {
            return p("rotate.max_size", "must be at least 4KiB".into());
        }
        if self.rotate.max_age < Duration::from_secs(1) {
            return p("rotate.max_age", "must be at least 1s".into());
        }
        if self.max_local_bytes < 2 * self.rotate.max_size {
            return p(
                "max_local_bytes",
                "must be at least twice rotate.max_size, or every segment would be dropped".into(),
            );
        }
        if self.retry_max_interval < Duration::from_secs(1) {
            return p("retry_max_interval", "must be at least 1s".into());
        }
        self.s3.problem().map(|(k, m)| (format!("s3.{k}"), m))
    }
}

impl S3Config {
    /// The first problem with these settings as (key under the S3 table, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let e = &self.endpoint;
        let rest = e
            .strip_prefix("https://")
            .or_else(|| e.strip_prefix("http://"));
        match rest {
            None => {
                return Some((
                    "endpoint",
                    format!("`{e}` is not an http:// or https:// URL"),
                ));
            }
            Some(r)
                if r.trim_end_matches('/').is_empty() || r.trim_end_matches('/').contains('/') =>
            {
                return Some((
                    "endpoint",
                    format!("`{e}` must be scheme://host[:port], without a path"),
                ));
            }
            _ => {}
        }
        if self.region.is_empty()
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Some(("region", format!("`{}` is not a region name", self.region)));
        }
        let b = &self.bucket;
        let bucket_ok = (3..=63).contains(&b.len())
            && b.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !b.starts_with(['-', '.'])
            && !b.ends_with(['-', '.']);
        if !bucket_ok {
            return Some((
                "bucket",
                format!("`{b}` is not a bucket name (3-63 of a-z, 0-9, `-`, `.`)"),
            ));
        }
        let p = &self.prefix;
        if p.starts_with('/')
            || p.ends_with('/')
            || p.contains("//")
            || p.chars().any(char::is_control)
        {
            return Some((
                "prefix",
                format!("`{p}` must not start or end with `/`, hold `//` or control characters"),
            ));
        }
        if self.part_size < MIN_PART_SIZE {
            return Some((
                "part_size",
                "must be at least 5MiB (S3's smallest part)".into(),
            ));
        }
        if self.timeout < Duration::from_secs(1) {
            return Some(("timeout", "must be at least 1s".into()));
        }
        None
    }
}
