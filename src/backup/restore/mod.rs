//! Restoring a backup into an engine outside the mesh (`mode = "to"`), for inspection
//! or to copy single keys back; the fleet is untouched. The backup is read from the
//! store, checked, and loaded by replication (`feed`): no file of the target is touched
//! and it is not restarted, so this works on any engine keyfleet can reach with a user
//! allowed `REPLICAOF`, `CONFIG SET masterauth` and `INFO`. The target must be empty,
//! a master, and neither this node's engine nor a peer's.
//!
//! The in-fleet modes are `fleet` (every node to the backup) and `rebuild` (one node
//! emptied and copied from a peer): see `fleet`, `rebuild`, and `session` for what each
//! node does when asked.
//!
//! One restore at a time per node; each is recorded in the history (`history`).

mod feed;
mod fetch;
mod fleet;
pub mod history;
mod hold;
mod local;
mod members;
mod rebuild;
pub mod session;
mod to;

use super::{BackupError, Backups, Manifest};
use crate::config::Peer;
use crate::engine::{Engine, Secret};
use crate::metrics::Metrics;
use history::{Failure, History, Record};
use hyper::body::Bytes;
use members::Members;
use session::Sessions;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// A restore asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub backup: String,
    /// `HOST:PORT` of the target engine.
    pub target: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub requested_by: String,
}

/// What the node keeps of restores.
pub struct Restores {
    pub history: History,
    running: Arc<tokio::sync::Mutex<()>>,
    /// This node's part in in-fleet restores.
    pub sessions: Sessions,
    /// The fleet's API token, sent to peers.
    token: Option<String>,
    node: String,
    /// The bytes of RDB the running restore has sent to its engine: (id, sent, total).
    sent: std::sync::Mutex<Option<(String, Arc<AtomicU64>, u64)>>,
}

impl Restores {
    /// `engine`: this node's engine as the restore user.
    pub fn new(
        state_dir: &std::path::Path,
        node: &str,
        engine: Arc<Engine>,
        peers: Vec<Peer>,
        token: Option<String>,
    ) -> Restores {
        let history = History::new(state_dir);
        history.mark_interrupted(crate::logship::now_unix());
        Restores {
            history,
            running: Arc::new(tokio::sync::Mutex::new(())),
            sessions: Sessions::new(node, engine, peers),
            token,
            node: node.into(),
            sent: std::sync::Mutex::new(None),
        }
    }

    /// A channel for restore `id`'s RDB on its way to the engine, counting the bytes
    /// through it, so that the history shows the transfer while it runs.
    fn counted(&self, id: &str, total: u64) -> (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
        let (tx, mut from_store) = mpsc::channel::<Bytes>(2);
        let (to_engine, rx) = mpsc::channel(2);
        let sent = Arc::new(AtomicU64::new(0));
        *self.sent.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((id.to_owned(), sent.clone(), total));
        tokio::spawn(async move {
            while let Some(chunk) = from_store.recv().await {
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if to_engine.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        (tx, rx)
    }

    /// `r` with the bytes its transfer has sent, when it is the one running or last run.
    fn with_progress(&self, mut r: Record) -> Record {
        if let Some((id, sent, total)) = &*self.sent.lock().unwrap_or_else(|p| p.into_inner())
            && *id == r.id
        {
            r.sent_bytes = Some(sent.load(Ordering::Relaxed));
            r.rdb_bytes = Some(*total);
        }
        r
    }

    fn one_at_a_time(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, BackupError> {
        self.running.clone().try_lock_owned().map_err(|_| {
            refused(
                "restore_in_progress",
                "a restore is already running on this node".into(),
            )
        })
    }

    /// Starts the record of restore `id` as running.
    fn record(
        &self,
        id: &str,
        backup: &str,
        mode: &str,
        target: &str,
        requested_by: &str,
        backup_keys: BTreeMap<String, u64>,
    ) -> Record {
        let record = Record {
            id: id.into(),
            backup: backup.into(),
            mode: mode.into(),
            target: target.into(),
            phase: None,
            sent_bytes: None,
            rdb_bytes: None,
            requested_by: requested_by.into(),
            requested_at: crate::logship::now_unix(),
            finished_at: None,
            outcome: "running".into(),
            error: None,
            keys: BTreeMap::new(),
            backup_keys,
        };
        self.history.put(&record);
        record
    }

    fn phase(&self, id: &str, phase: &str) {
        if let Some(mut r) = self.history.get(id) {
            r.phase = Some(phase.into());
            self.history.put(&r);
        }
        tracing::info!(restore = id, phase, "restore phase");
    }

    /// Records how restore `id` ended.
    fn finished(
        &self,
        metrics: &Metrics,
        id: &str,
        result: Result<BTreeMap<String, u64>, BackupError>,
    ) {
        let Some(r) = self.history.get(id) else {
            return;
        };
        let mut r = self.with_progress(r);
        r.finished_at = Some(crate::logship::now_unix());
        match result {
            Ok(keys) => {
                r.outcome = "complete".into();
                r.keys = keys;
                tracing::info!(restore = id, mode = %r.mode, target = %r.target, "restore complete");
            }
            Err(e) => {
                tracing::warn!(restore = id, code = e.code, mode = %r.mode, "restore failed: {}", e.message);
                metrics.record_error(e.code);
                r.outcome = "failed".into();
                r.error = Some(Failure {
                    code: e.code.to_owned(),
                    message: e.message,
                });
            }
        }
        self.history.put(&r);
    }

    /// The members of a new in-fleet restore session `id`, coordinated here.
    fn members(&self, id: String) -> Members<'_> {
        Members {
            sessions: &self.sessions,
            token: self.token.as_deref(),
            session: id,
            me: self.node.clone(),
        }
    }
}

/// A restore step that did not work out; `restore_failed`.
fn failed(message: String) -> BackupError {
    BackupError::new("restore_failed", message)
}

fn new_id() -> Result<String, BackupError> {
    crate::s3::random_hex(8).map_err(|e| refused("restore_failed", e))
}

fn refused(code: &'static str, message: String) -> BackupError {
    BackupError::new(code, message)
}

/// `HOST:PORT` (`[V6]:PORT` for an IPv6 address) as a target.
pub fn parse_target(text: &str) -> Result<(String, u16), BackupError> {
    let bad = || {
        refused(
            "restore_target_invalid",
            format!("`{text}` is not HOST:PORT"),
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

impl Backups {
    /// Runs one step of an in-fleet restore on this node.
    pub async fn restore_step(
        &self,
        req: &session::StepRequest,
    ) -> Result<session::StepAnswer, BackupError> {
        self.restores.sessions.step(req).await
    }

    /// The restores recorded on this node, oldest first.
    pub fn restore_history(&self) -> Vec<Record> {
        let all = self.restores.history.all();
        all.into_iter()
            .map(|r| self.restores.with_progress(r))
            .collect()
    }

    /// The complete backup `id`, if this node can read it.
    async fn restorable(&self, id: &str) -> Result<Manifest, BackupError> {
        let Some(manifest) = self.show(id).await? else {
            return Err(refused(
                "backup_not_found",
                format!("no complete backup `{id}`"),
            ));
        };
        if manifest.encryption == "age" && !self.age.decrypts() {
            return Err(refused(
                "restore_identity_missing",
                format!(
                    "backup {id} is encrypted with age and this node has no identity to decrypt it ([backups] age_identity_file)"
                ),
            ));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("127.0.0.1:6379").unwrap(),
            ("127.0.0.1".into(), 6379)
        );
        assert_eq!(parse_target("[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert_eq!(
            parse_target("db.example:1").unwrap(),
            ("db.example".into(), 1)
        );
        for bad in ["", "host", "host:", ":1", "h:0", "h:99999", "a b:1"] {
            assert_eq!(
                parse_target(bad).unwrap_err().code,
                "restore_target_invalid",
                "{bad}"
            );
        }
    }
}
