//! Which of the fleet's backups to delete: those neither retention rule keeps. The
//! decision is a pure function of what the store holds and the clock; applying it
//! deletes a backup's manifest first (so it stops being complete at once) and then its
//! snapshot. Snapshots without a manifest that are a day old are leftovers of a node
//! that died mid-upload and are deleted too; younger ones may still be uploading.

use super::{BackupError, Backups, manifest};
use jiff::{Timestamp, ToSpan};
use std::collections::BTreeMap;
use std::time::Duration;

/// A backup as the store holds it: its objects, and whether its manifest is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub started: Timestamp,
    pub complete: bool,
    pub objects: Vec<String>,
}

/// Groups a listing of the fleet's directory by backup id, oldest first. Keys that are
/// not a backup's objects are left out (and so never deleted).
pub fn group(dir: &str, keys: impl IntoIterator<Item = String>) -> Vec<Stored> {
    let mut by_id: BTreeMap<String, Stored> = BTreeMap::new();
    for key in keys {
        let Some(name) = key.strip_prefix(dir) else {
            continue;
        };
        let Some((id, ext)) = name.split_once('.') else {
            continue;
        };
        let snapshot = matches!(ext, "rdb" | "rdb.zst" | "rdb.age" | "rdb.zst.age");
        if !manifest::valid_id(id) || !(snapshot || ext == "json") {
            continue;
        }
        let Some(started) = manifest::id_time(id) else {
            continue;
        };
        let entry = by_id.entry(id.to_owned()).or_insert_with(|| Stored {
            id: id.to_owned(),
            started,
            complete: false,
            objects: Vec::new(),
        });
        entry.complete |= ext == "json";
        entry.objects.push(key);
    }
    let mut out: Vec<Stored> = by_id.into_values().collect();
    out.sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
    out
}

/// The backups to delete under `keep_last` and `keep_within` at `now`.
pub fn expired(
    stored: &[Stored],
    keep_last: Option<u32>,
    keep_within: Option<Duration>,
    now: Timestamp,
) -> Vec<Stored> {
    let leftover_after = now.checked_sub(24.hours()).unwrap_or(now);
    let mut out: Vec<Stored> = stored
        .iter()
        .filter(|s| !s.complete && s.started < leftover_after)
        .cloned()
        .collect();
    if keep_last.is_none() && keep_within.is_none() {
        return out;
    }
    let complete: Vec<&Stored> = stored.iter().filter(|s| s.complete).collect();
    let n = complete.len();
    for (i, s) in complete.iter().enumerate() {
        let from_newest = n - 1 - i;
        let by_count = keep_last.is_some_and(|k| (from_newest as u64) < u64::from(k));
        let by_age = keep_within.is_some_and(|d| {
            let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
            now.duration_since(s.started) < span
        });
        if from_newest > 0 && !by_count && !by_age {
            out.push((*s).clone());
        }
    }
    out
}

impl Backups {
    /// What the store holds for this fleet, oldest first.
    pub async fn stored(&self) -> Result<Vec<Stored>, BackupError> {
        let dir = manifest::object_dir(&self.store.prefix, &self.cfg.fleet);
        let listed = self
            .client
            .list(&dir)
            .await
            .map_err(|e| BackupError::s3("listing backups", e))?;
        Ok(group(&dir, listed.into_iter().map(|l| l.key)))
    }

    /// Sets the last-success metric from the newest complete backup in the store,
    /// whichever node made it; a store that cannot be read leaves it as it was.
    pub async fn refresh_last_success(&self) {
        match self.stored().await {
            Ok(stored) => {
                if let Some(newest) = stored.iter().rev().find(|s| s.complete) {
                    self.metrics.backup_seen(newest.started.as_second());
                }
            }
            Err(e) => {
                self.metrics.record_error(e.code);
                tracing::warn!(code = e.code, "backups: {}", e.message);
            }
        }
    }

    /// Deletes what retention no longer keeps; returns the ids deleted.
    pub async fn apply_retention(&self) -> Result<Vec<String>, BackupError> {
        let stored = self.stored().await?;
        let doomed = expired(
            &stored,
            self.cfg.keep_last,
            self.cfg.keep_within,
            Timestamp::now(),
        );
        let mut deleted = Vec::new();
        for s in doomed {
            let mut objects = s.objects.clone();
            // The manifest first: from then on the backup is not complete, whatever
            // happens to the rest.
            objects.sort_by_key(|k| !k.ends_with(".json"));
            for key in &objects {
                self.client
                    .delete_object(key)
                    .await
                    .map_err(|e| BackupError::s3(&format!("deleting backup {}", s.id), e))?;
            }
            tracing::info!(id = %s.id, complete = s.complete, "backup deleted by retention");
            deleted.push(s.id);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "p/backups/f/";

    fn listing(ids: &[(&str, bool)]) -> Vec<Stored> {
        let mut keys = vec![format!("{DIR}notes.txt"), "elsewhere/x.json".to_owned()];
        for (id, complete) in ids {
            keys.push(format!("{DIR}{id}.rdb.zst"));
            if *complete {
                keys.push(format!("{DIR}{id}.json"));
            }
        }
        group(DIR, keys)
    }

    fn ids(v: &[Stored]) -> Vec<&str> {
        v.iter().map(|s| s.id.as_str()).collect()
    }

    const NOW: &str = "2026-11-23T12:00:00Z";

    #[test]
    fn grouping_pairs_snapshots_with_manifests_and_skips_strangers() {
        let s = listing(&[("20261122T000000Z-b", true), ("20261121T000000Z-a", false)]);
        assert_eq!(ids(&s), ["20261121T000000Z-a", "20261122T000000Z-b"]);
        assert!(!s[0].complete && s[1].complete);
        assert_eq!(s[1].objects.len(), 2);
    }

    #[test]
    fn keep_last_and_keep_within_keep_the_union() {
        let s = listing(&[
            ("20261101T000000Z-a", true),
            ("20261110T000000Z-a", true),
            ("20261120T000000Z-b", true),
            ("20261122T000000Z-a", true),
            ("20261123T000000Z-c", true),
        ]);
        let now = NOW.parse().unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(
            ids(&expired(&s, Some(2), None, now)),
            [
                "20261101T000000Z-a",
                "20261110T000000Z-a",
                "20261120T000000Z-b"
            ]
        );
        assert_eq!(
            ids(&expired(&s, None, Some(5 * day), now)),
            ["20261101T000000Z-a", "20261110T000000Z-a"]
        );
        // Either rule keeps: the last 1 plus the 5 days' three.
        assert_eq!(
            ids(&expired(&s, Some(1), Some(5 * day), now)),
            ["20261101T000000Z-a", "20261110T000000Z-a"]
        );
        assert!(expired(&s, None, None, now).is_empty());
    }

    #[test]
    fn the_newest_complete_backup_is_never_deleted() {
        let s = listing(&[("20250101T000000Z-a", true), ("20250102T000000Z-a", false)]);
        let now = NOW.parse().unwrap();
        let doomed = expired(&s, None, Some(Duration::from_secs(3600)), now);
        // The stale partial goes; the only complete one stays however old.
        assert_eq!(ids(&doomed), ["20250102T000000Z-a"]);
    }

    #[test]
    fn a_partial_backup_younger_than_a_day_may_still_be_uploading() {
        let s = listing(&[("20261123T110000Z-a", false), ("20261121T000000Z-a", false)]);
        let doomed = expired(&s, None, None, NOW.parse().unwrap());
        assert_eq!(ids(&doomed), ["20261121T000000Z-a"]);
    }
}
