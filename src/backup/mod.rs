//! Backups of the local engine to S3: `BGSAVE`, then the RDB file streamed by multipart
//! upload (zstd, checksummed part by part), then a manifest beside it. A backup is
//! complete only when its manifest exists. The upload's id is journaled (the logship
//! journal's atomic JSON file), so a daemon killed mid-upload aborts it on the next
//! start and leaves no half object and no open upload; the next backup runs whole.
//!
//! One backup at a time per node.

mod catalog;
pub mod crypt;
pub mod manifest;
pub mod restore;
pub mod retention;
pub mod scheduled;
mod snapshot;
mod stream;
mod upload;

use crate::config::{BackupsConfig, Config, S3Config, S3Keys};
use crate::engine::Engine;
use crate::logship::journal::{JournalError, load_json, save_json};
use crate::logship::{ErrorRecord, now_unix};
use crate::metrics::Metrics;
use crate::s3;
pub use manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A failed backup or restore step: a stable code and a message for people.
#[derive(Debug, Clone)]
pub struct BackupError {
    pub code: &'static str,
    pub message: String,
}

impl BackupError {
    pub fn new(code: &'static str, message: String) -> BackupError {
        BackupError { code, message }
    }
    fn engine(e: crate::engine::EngineError) -> BackupError {
        BackupError::new(e.code(), e.to_string())
    }
    fn s3(what: &str, e: s3::S3Error) -> BackupError {
        BackupError::new(e.code(), format!("{what}: {e}"))
    }
}

/// The journal: the multipart upload a backup has open, until it is completed or
/// aborted.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open: Option<OpenUpload>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenUpload {
    id: String,
    key: String,
    upload_id: String,
}

/// Where a backup is, for `GET /api/v1/backups/{id}` while it runs and after.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub id: String,
    /// "snapshot", "upload", "complete" or "failed".
    pub state: &'static str,
    pub started_at: i64,
    pub rdb_bytes: u64,
    pub uploaded_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
}

/// What restores inside the fleet act with: this node's engine as the restore user,
/// and the fleet's API token for the peers.
pub struct RestoreAccess {
    pub engine: Arc<Engine>,
    pub token: Option<String>,
}

pub struct Backups {
    cfg: BackupsConfig,
    store: S3Config,
    client: s3::Client,
    node: String,
    engine_kind: &'static str,
    rdb_path: PathBuf,
    journal_path: PathBuf,
    metrics: Arc<Metrics>,
    /// The backup running or last run on this node since the daemon started.
    current: Mutex<Option<Progress>>,
    running: Arc<tokio::sync::Mutex<()>>,
    restores: restore::Restores,
    /// The age keys: recipients to encrypt to, identities to restore with.
    age: Arc<crypt::Keys>,
    /// The replication canary keys of every node, which manifests leave out of `keys`.
    canary_keys: Vec<String>,
}

impl Backups {
    pub fn new(
        config: &Config,
        keys: &S3Keys,
        age: crypt::Keys,
        metrics: Arc<Metrics>,
        restore: RestoreAccess,
    ) -> Result<Option<Backups>, BackupError> {
        let Some(cfg) = config.backups.clone() else {
            return Ok(None);
        };
        let store = cfg
            .store(config.logs.as_ref().map(|l| &l.s3))
            .expect("validated: backups have a store")
            .clone();
        let client = s3::Client::new(&store, keys).map_err(|e| BackupError::s3("backups.s3", e))?;
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            BackupError::new(
                "backup_state_dir",
                format!("{}: {e}", config.state_dir.display()),
            )
        })?;
        Ok(Some(Backups {
            cfg,
            store,
            client,
            node: config.node_name.clone(),
            engine_kind: config.engine.kind.as_str(),
            rdb_path: config.engine_rdb_path(),
            journal_path: config.state_dir.join("backup.json"),
            metrics,
            current: Mutex::new(None),
            running: Arc::new(tokio::sync::Mutex::new(())),
            restores: restore::Restores::new(
                &config.state_dir,
                &config.node_name,
                restore.engine,
                config.peers.clone(),
                restore.token,
            ),
            age: Arc::new(age),
            canary_keys: config
                .node_names()
                .into_iter()
                .map(crate::safety::canary_key)
                .collect(),
        }))
    }

    /// Whether an in-fleet restore holds this node now.
    pub fn restore_session_active(&self) -> bool {
        self.restores.sessions.active()
    }

    /// Aborts the upload a killed daemon left open, so no half object stays behind.
    pub async fn clean_up_interrupted(&self) {
        let journal: Journal = match load_json(&self.journal_path) {
            Ok(j) => j,
            Err(e) => return self.fail_quietly("backup_journal", e),
        };
        let Some(open) = journal.open else { return };
        match self
            .client
            .abort_multipart(&open.key, &open.upload_id)
            .await
        {
            Ok(()) => {
                tracing::warn!(id = %open.id, "backup {} was interrupted; its upload is aborted", open.id);
                if let Err(e) = save_json(&Journal::default(), &self.journal_path) {
                    self.fail_quietly("backup_journal", e);
                }
            }
            Err(e) => tracing::warn!(
                code = e.code(),
                "backup {}: cannot abort the interrupted upload yet: {e}",
                open.id
            ),
        }
    }

    fn fail_quietly(&self, code: &'static str, e: JournalError) {
        tracing::warn!(code, "backups: {e}");
        self.metrics.record_error(code);
    }

    pub fn current(&self) -> Option<Progress> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            f(p);
        }
    }

    /// Returns once no backup is running on this node.
    pub async fn wait(&self) {
        drop(self.running.lock().await);
    }

    /// Starts a backup; its id comes back at once and the work goes on in a task.
    pub fn start(self: &Arc<Self>, engine: Arc<Engine>) -> Result<String, BackupError> {
        let guard = self.running.clone().try_lock_owned().map_err(|_| {
            BackupError::new(
                "backup_in_progress",
                "a backup is already running on this node".into(),
            )
        })?;
        // One clock reading names the backup and dates its manifest.
        let started = std::time::SystemTime::now();
        let now = started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let stamp = jiff::Timestamp::from_second(now)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y%m%dT%H%M%SZ");
        let id = format!("{stamp}-{}", self.node);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Progress {
            id: id.clone(),
            state: "snapshot",
            started_at: now,
            rdb_bytes: 0,
            uploaded_bytes: 0,
            error: None,
        });
        let me = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            let _one_at_a_time = guard;
            let t0 = Instant::now();
            match me.run(&run_id, &engine, started, t0).await {
                Ok(m) => {
                    me.metrics
                        .backup_succeeded(m.stored_bytes, t0.elapsed().as_secs_f64());
                    me.set(|p| p.state = "complete");
                    tracing::info!(id = %run_id, bytes = m.stored_bytes, "backup complete");
                }
                Err(e) => {
                    tracing::warn!(code = e.code, id = %run_id, "backup failed: {}", e.message);
                    me.metrics.record_error(e.code);
                    me.metrics.backup_failed();
                    me.set(|p| {
                        p.state = "failed";
                        p.error = Some(ErrorRecord {
                            code: e.code,
                            message: e.message,
                            at: now_unix(),
                        });
                    });
                }
            }
        });
        Ok(id)
    }

    async fn run(
        &self,
        id: &str,
        engine: &Engine,
        started: std::time::SystemTime,
        t0: Instant,
    ) -> Result<Manifest, BackupError> {
        let info = snapshot::bgsave(engine, self.cfg.bgsave_timeout).await?;
        // Canary keys only appear (one per node), so those present now were in the
        // snapshot; a failed count leaves them in `keys`, and says 0.
        let canary_keys = crate::safety::count_canaries(engine, &self.canary_keys)
            .await
            .unwrap_or(0);
        let file = std::fs::File::open(&self.rdb_path).map_err(|e| {
            BackupError::new(
                "backup_rdb_unreadable",
                format!("the engine's RDB file {}: {e}", self.rdb_path.display()),
            )
        })?;
        let rdb_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.set(|p| {
            p.state = "upload";
            p.rdb_bytes = rdb_bytes;
        });
        let compression = match self.cfg.compression {
            crate::config::BackupCompression::Zstd => "zstd",
            crate::config::BackupCompression::None => "none",
        };
        let (object, manifest_key) = manifest::object_keys(
            &self.store.prefix,
            &self.cfg.fleet,
            id,
            compression,
            self.age.encrypts(),
        );
        let totals = self
            .upload(id, &object, file, compression == "zstd")
            .await?;
        let manifest = Manifest {
            id: id.to_owned(),
            fleet: self.cfg.fleet.clone(),
            node: self.node.clone(),
            engine: self.engine_kind.to_owned(),
            engine_version: info.get("redis_version").unwrap_or("unknown").to_owned(),
            keyfleet_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: crate::engine::status::rfc3339(started),
            object,
            compression: compression.to_owned(),
            encryption: if self.age.encrypts() { "age" } else { "none" }.to_owned(),
            rdb_bytes: totals.rdb_bytes,
            rdb_sha256: totals.rdb_sha256,
            stored_bytes: totals.stored_bytes,
            stored_sha256: totals.stored_sha256,
            keys: manifest::without_canaries(
                info.dbs()
                    .map(|d| (format!("db{}", d.db), d.keys))
                    .collect(),
                canary_keys,
            ),
            canary_keys,
            duration_seconds: t0.elapsed().as_secs_f64(),
        };
        let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        self.client
            .put_object(&manifest_key, body.into())
            .await
            .map_err(|e| BackupError::s3("writing the manifest", e))?;
        Ok(manifest)
    }
}
