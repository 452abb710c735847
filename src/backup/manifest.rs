//! A backup's manifest: the small JSON object stored beside the snapshot. A backup is
//! complete exactly when its manifest exists; listing reads manifests only.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `yyyymmddThhmmssZ-NODE`: when and where it was taken; sorts by time.
    pub id: String,
    pub fleet: String,
    pub node: String,
    /// "keydb" or "redis", and the engine's version from INFO.
    pub engine: String,
    pub engine_version: String,
    pub keyfleet_version: String,
    /// RFC 3339, UTC: when the snapshot was asked for.
    pub created_at: String,
    /// The object holding the snapshot, and how it is encoded ("zstd" or "none").
    pub object: String,
    pub compression: String,
    /// "age" (encrypted to the fleet's recipients: `crypt`) or "none".
    #[serde(default = "no_encryption")]
    pub encryption: String,
    /// The RDB file's size and SHA-256, before compression.
    pub rdb_bytes: u64,
    pub rdb_sha256: String,
    /// The object's size and SHA-256, as stored.
    pub stored_bytes: u64,
    pub stored_sha256: String,
    /// Keys per database ("db0": 100000), as INFO counted them at the snapshot, less
    /// the replication canaries (`canary_keys`, in db 0): the user's keys.
    pub keys: BTreeMap<String, u64>,
    /// keyfleet's replication canary keys in the snapshot (`keyfleet:canary:NODE`).
    #[serde(default)]
    pub canary_keys: u64,
    pub duration_seconds: f64,
}

/// Per-db key counts less `canary` keys of db 0 (the replication canaries live there).
pub fn without_canaries(mut keys: BTreeMap<String, u64>, canary: u64) -> BTreeMap<String, u64> {
    if let Some(db0) = keys.get_mut("db0") {
        *db0 = db0.saturating_sub(canary);
    }
    keys
}

impl Manifest {
    pub fn total_keys(&self) -> u64 {
        self.keys.values().sum()
    }
}

fn no_encryption() -> String {
    "none".into()
}

/// The object keys of backup `id`: (snapshot, manifest). The snapshot's extension says
/// how it is stored: `.rdb`, then `.zst` when compressed, then `.age` when encrypted.
pub fn object_keys(
    prefix: &str,
    fleet: &str,
    id: &str,
    compression: &str,
    encrypted: bool,
) -> (String, String) {
    let base = object_dir(prefix, fleet) + id;
    let zst = if compression == "zstd" { ".zst" } else { "" };
    let age = if encrypted { ".age" } else { "" };
    (format!("{base}.rdb{zst}{age}"), format!("{base}.json"))
}

/// Where a fleet's backups live: `PREFIX/backups/FLEET/`.
pub fn object_dir(prefix: &str, fleet: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("backups/{fleet}/")
    } else {
        format!("{prefix}/backups/{fleet}/")
    }
}

/// A backup id is `yyyymmddThhmmssZ-NODE`; anything else is refused before it reaches
/// an object key.
pub fn valid_id(id: &str) -> bool {
    let (stamp, node) = match id.split_once('-') {
        Some(p) => p,
        None => return false,
    };
    stamp.len() == 16
        && stamp.ends_with('Z')
        && !node.is_empty()
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// When backup `id` was started, from the stamp its id begins with.
pub fn id_time(id: &str) -> Option<jiff::Timestamp> {
    let stamp = id.get(..16)?;
    jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids() {
        assert_eq!(
            object_keys("p/q/", "main", "20261123T010203Z-node1", "zstd", false),
            (
                "p/q/backups/main/20261123T010203Z-node1.rdb.zst".into(),
                "p/q/backups/main/20261123T010203Z-node1.json".into()
            )
        );
        assert_eq!(
            object_keys("", "f", "20261123T010203Z-n", "none", true).0,
            "backups/f/20261123T010203Z-n.rdb.age"
        );
        assert_eq!(object_dir("", "f"), "backups/f/");
        assert!(valid_id("20261123T010203Z-node1"));
        assert!(!valid_id("../../etc"));
        assert!(!valid_id("20261123T010203Z-"));
        assert!(!valid_id("20261123T010203Z-a/b"));
        assert_eq!(
            id_time("20261123T010203Z-node1"),
            Some("2026-11-23T01:02:03Z".parse().unwrap())
        );
        assert_eq!(id_time("2026112xT010203Z-node1"), None);
    }
}
