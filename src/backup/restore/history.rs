//! The record of restores on this node: who asked, when, what, and how it ended. Kept
//! in `STATE_DIR/restores.json` (written atomically), the newest `KEEP` entries.

use crate::logship::journal::{load_json, save_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const KEEP: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Names the restore (and its session on every node); empty in records written
    /// before it existed.
    #[serde(default)]
    pub id: String,
    /// The backup restored; empty for a node rebuild, which copies a peer.
    pub backup: String,
    /// "to" (an engine outside the mesh), "fleet" or "rebuild".
    pub mode: String,
    /// Where it went: `HOST:PORT`, the fleet's nodes, or the node rebuilt and its source.
    pub target: String,
    /// The step running (fence, load, wipe, remesh, verify, finish), or where it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Who asked: the client's address and the user it named (`X-Keyfleet-User`).
    pub requested_by: String,
    pub requested_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// "running", "complete" or "failed".
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Keys per db in the target once loaded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, u64>,
    /// RDB bytes sent to the engine so far, and in all (while a backup loads, and after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_bytes: Option<u64>,
    /// Keys per db the backup's manifest counted when it was taken.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backup_keys: BTreeMap<String, u64>,
}

/// Why a restore failed: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    restores: Vec<Record>,
}

pub struct History {
    path: PathBuf,
    lock: Mutex<()>,
}

impl History {
    pub fn new(state_dir: &Path) -> History {
        History {
            path: state_dir.join("restores.json"),
            lock: Mutex::new(()),
        }
    }

    /// Marks the restores a stopped daemon left running as failed: whatever they were
    /// doing stopped with it.
    pub fn mark_interrupted(&self, now: i64) {
        for mut r in self.all().into_iter().filter(|r| r.outcome == "running") {
            r.outcome = "failed".into();
            r.finished_at = Some(now);
            let next = if r.mode == "to" {
                "the target may hold part of the backup; empty it and restore again"
            } else {
                "the nodes may be left read-only: run it again, or `keyfleet backup release --yes` on each node"
            };
            r.error = Some(Failure {
                code: "restore_interrupted".into(),
                message: format!(
                    "the daemon stopped during phase {}; {next}",
                    r.phase.as_deref().unwrap_or("?")
                ),
            });
            self.put(&r);
        }
    }

    /// Every record, oldest first. An unreadable file reads as empty (and is logged):
    /// the history must never stop a restore.
    pub fn all(&self) -> Vec<Record> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.load()
    }

    fn load(&self) -> Vec<Record> {
        match load_json::<File>(&self.path) {
            Ok(f) => f.restores,
            Err(e) => {
                tracing::warn!(code = "restore_history", "{e}");
                Vec::new()
            }
        }
    }

    /// The record of restore `id`.
    pub fn get(&self, id: &str) -> Option<Record> {
        self.all().into_iter().rev().find(|r| r.id == id)
    }

    /// Adds `record`, or replaces the one with the same id (records from before ids by
    /// backup and request time).
    pub fn put(&self, record: &Record) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.load();
        let same = |r: &Record| {
            r.id == record.id
                && (!r.id.is_empty()
                    || r.backup == record.backup && r.requested_at == record.requested_at)
        };
        match all.iter_mut().find(|r| same(r)) {
            Some(r) => *r = record.clone(),
            None => all.push(record.clone()),
        }
        let skip = all.len().saturating_sub(KEEP);
        let file = File {
            restores: all.into_iter().skip(skip).collect(),
        };
        if let Err(e) = save_json(&file, &self.path) {
            tracing::warn!(code = "restore_history", "{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(backup: &str, at: i64) -> Record {
        Record {
            id: format!("{backup}-{at}"),
            phase: None,
            sent_bytes: None,
            rdb_bytes: None,
            backup: backup.into(),
            mode: "to".into(),
            target: "127.0.0.1:1".into(),
            requested_by: "127.0.0.1 (alice)".into(),
            requested_at: at,
            finished_at: None,
            outcome: "running".into(),
            error: None,
            keys: BTreeMap::new(),
            backup_keys: BTreeMap::new(),
        }
    }

    #[test]
    fn records_are_updated_in_place_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path());
        assert!(h.all().is_empty());
        let mut r = record("b1", 1);
        h.put(&r);
        r.outcome = "complete".into();
        h.put(&r);
        assert_eq!(h.all(), vec![r]);
        for i in 0..KEEP as i64 + 5 {
            h.put(&record("b2", 10 + i));
        }
        let all = History::new(dir.path()).all();
        assert_eq!(all.len(), KEEP);
        assert_eq!(all.last().unwrap().requested_at, 10 + KEEP as i64 + 4);
    }

    #[test]
    fn a_corrupt_file_reads_as_empty_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("restores.json"), "{not json").unwrap();
        let h = History::new(dir.path());
        assert!(h.all().is_empty());
        h.put(&record("b", 1));
        assert_eq!(h.all().len(), 1);
    }

    #[test]
    fn running_restores_are_failed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path());
        let mut done = record("a", 1);
        done.outcome = "complete".into();
        h.put(&done);
        let mut running = record("b", 2);
        running.phase = Some("wipe".into());
        h.put(&running);
        h.mark_interrupted(9);
        let b = h.get("b-2").unwrap();
        assert_eq!(b.outcome, "failed");
        assert_eq!(b.error.unwrap().code, "restore_interrupted");
        assert_eq!(h.get("a-1").unwrap(), done);
    }
}
