//! The shipping journal: every closed segment's state, and an open multipart upload's id
//! and confirmed parts, in one small JSON file written atomically (write to a temporary
//! file, fsync, rename, fsync the directory). Each state change is journaled before its
//! effect can be lost, so a daemon killed at any point resumes where it was.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a segment is in its life. Files: `Rotating` and `Closed` have the raw
/// `NAME.log`; `Compressed` and `Uploaded` have `NAME.log.EXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Renamed away from the active file; a writer may still hold it open.
    Rotating,
    /// No writer left; waiting for compression.
    Closed,
    /// Compressed; waiting for (or in) upload.
    Compressed,
    /// Confirmed by the store; kept locally for `local_retention`.
    Uploaded,
}

/// An open multipart upload: its id and the ETags of the parts the store confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Multipart {
    pub upload_id: String,
    /// The part size the upload was started with; later parts keep it.
    pub part_size: u64,
    pub etags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Unique and increasing within this node; orders segments.
    pub seq: u64,
    /// "engine", "access" or "daemon".
    pub source: String,
    /// `yyyymmddThhmmssZ-SEQ`, fixed at rotation: the object key derives from it.
    pub name: String,
    /// Unix seconds of the rotation.
    pub rotated_at: i64,
    pub state: State,
    /// Log bytes (uncompressed), known once closed.
    #[serde(default)]
    pub raw_bytes: u64,
    /// Compressed bytes, known once compressed.
    #[serde(default)]
    pub stored_bytes: u64,
    /// The compressed file's extension ("zst" or "gz"), fixed at compression.
    #[serde(default)]
    pub ext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Multipart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<i64>,
}

/// A multipart upload that must still be aborted (its segment was dropped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub key: String,
    pub upload_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub next_seq: u64,
    /// Unix seconds of the last confirmed upload; 0 before the first.
    #[serde(default)]
    pub last_success_at: i64,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub orphans: Vec<Orphan>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the shipping journal {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the shipping journal {path} is corrupt ({message}); it was left in place")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write the shipping journal {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Journal {
    /// Reads the journal at `path`; a missing file is an empty journal.
    pub fn load(path: &Path) -> Result<Journal, JournalError> {
        load_json(path)
    }

    /// Replaces the file at `path` with this journal, atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), JournalError> {
        save_json(self, path)
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.seq == seq)
    }

    pub fn remove(&mut self, seq: u64) -> Option<Segment> {
        let i = self.segments.iter().position(|s| s.seq == seq)?;
        Some(self.segments.remove(i))
    }
}

/// Reads a journal-like JSON file (this one, or backups'); a missing file is the
/// default value, an unreadable or corrupt one an error (never silently empty).
pub fn load_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, JournalError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(JournalError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces the file at `path` with `value` as JSON, atomically and durably: write a
/// temporary file, fsync it, rename it over, fsync the directory.
pub fn save_json<T: Serialize>(value: &T, path: &Path) -> Result<(), JournalError> {
    let err = |source| JournalError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).expect("a journal serializes");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(err)
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomic_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logship.json");
        assert_eq!(Journal::load(&path).unwrap(), Journal::default());
        let mut j = Journal {
            next_seq: 3,
            ..Journal::default()
        };
        j.segments.push(Segment {
            seq: 2,
            source: "engine".into(),
            name: "20261123T044000Z-000002".into(),
            rotated_at: 1,
            state: State::Compressed,
            raw_bytes: 10,
            stored_bytes: 5,
            ext: "zst".into(),
            multipart: Some(Multipart {
                upload_id: "u".into(),
                part_size: 5 << 20,
                etags: vec!["e1".into()],
            }),
            uploaded_at: None,
        });
        j.save(&path).unwrap();
        assert_eq!(Journal::load(&path).unwrap(), j);
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn a_corrupt_journal_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logship.json");
        std::fs::write(&path, b"{\"next_seq\": 4, \"segme").unwrap();
        let e = Journal::load(&path).unwrap_err();
        assert!(matches!(e, JournalError::Corrupt { .. }), "{e}");
        assert!(path.exists(), "a corrupt journal is left for the operator");
    }
}
