//! The set of keys deleted during a partition, as persisted and shown by the API: what
//! `delete_listener` records and `resurrection_check` settles (`deletes.rs`).

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};

/// Resurrected keys kept for the API; more are counted only.
const RESURRECTED_MAX: usize = 1000;
/// A key deleted here while a link was down.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tracked {
    pub db: u32,
    pub key: String,
    /// "del" or "expired".
    pub event: String,
    pub at_unix: f64,
    /// The peers whose links were down then.
    pub links_down: Vec<String>,
}

/// A tracked key that existed again after the heal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resurrected {
    #[serde(flatten)]
    pub deleted: Tracked,
    pub found_at_unix: f64,
}

/// What is persisted, and what the API shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tracker {
    pub tracked: Vec<Tracked>,
    /// Deletes during a partition that were not kept: the set was full, or the key's
    /// name is not UTF-8 text.
    pub untracked: u64,
    pub resurrected: VecDeque<Resurrected>,
    pub resurrected_total: u64,
    /// Tracked keys found still deleted after a heal (as they should be).
    pub stayed_deleted_total: u64,
    /// Tracked keys written again on this node while the partition lasted: the
    /// application's own write, not a resurrection; no longer tracked.
    #[serde(default)]
    pub rewritten_here_total: u64,
    /// (db, key) → index in `tracked`, so a delete is recorded in constant time.
    #[serde(skip)]
    index: HashMap<(u32, String), usize>,
}

impl Tracker {
    /// Rebuilds the index after loading.
    pub(super) fn reindex(&mut self) {
        self.index = self
            .tracked
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.db, t.key.clone()), i))
            .collect();
    }

    /// Records one delete; false when it was counted instead (the set is full).
    pub fn record(&mut self, entry: Tracked, max: usize) -> bool {
        if let Some(i) = self.index.get(&(entry.db, entry.key.clone())) {
            self.tracked[*i] = entry;
            return true;
        }
        if self.tracked.len() >= max {
            self.untracked += 1;
            return false;
        }
        self.index
            .insert((entry.db, entry.key.clone()), self.tracked.len());
        self.tracked.push(entry);
        true
    }

    /// Takes `batch` out of the set (one pass).
    pub(super) fn remove(&mut self, batch: &[Tracked]) {
        let gone: HashSet<(u32, &str)> = batch.iter().map(|t| (t.db, t.key.as_str())).collect();
        self.tracked
            .retain(|x| !gone.contains(&(x.db, x.key.as_str())));
        self.reindex();
    }

    /// During the partition: the keys of `batch` that exist again here were written
    /// again on this side and leave the set.
    pub fn rewritten(&mut self, batch: &[Tracked], exists: &[bool]) {
        let again: Vec<Tracked> = batch
            .iter()
            .zip(exists)
            .filter(|(_, e)| **e)
            .map(|(t, _)| t.clone())
            .collect();
        self.rewritten_here_total += again.len() as u64;
        self.remove(&again);
    }

    /// The checked keys' fate: `exists[i]` for `batch[i]`, which leaves the set.
    pub fn settle(&mut self, batch: &[Tracked], exists: &[bool], now: f64) -> Vec<Resurrected> {
        self.remove(batch);
        let mut found = Vec::new();
        for (t, e) in batch.iter().zip(exists) {
            if *e {
                let r = Resurrected {
                    deleted: t.clone(),
                    found_at_unix: now,
                };
                self.resurrected_total += 1;
                self.resurrected
                    .retain(|x| !(x.deleted.db == t.db && x.deleted.key == t.key));
                self.resurrected.push_back(r.clone());
                while self.resurrected.len() > RESURRECTED_MAX {
                    self.resurrected.pop_front();
                }
                found.push(r);
            } else {
                self.stayed_deleted_total += 1;
            }
        }
        found
    }
}
