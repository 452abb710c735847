//! Where a segment lives: its files under `DIR/segments/SOURCE/`, its object key, and
//! the bytes it takes on disk.

use super::Shipper;
use super::journal::{Segment, State};
use std::path::{Path, PathBuf};

impl Shipper {
    /// The raw (`NAME.log`) file of a segment.
    pub(super) fn raw_path(&self, seg: &Segment) -> PathBuf {
        self.segments_dir
            .join(&seg.source)
            .join(format!("{}.log", seg.name))
    }

    /// The compressed (`NAME.log.EXT`) file of a segment.
    pub(super) fn compressed_path(&self, seg: &Segment, ext: &str) -> PathBuf {
        self.segments_dir
            .join(&seg.source)
            .join(format!("{}.log.{ext}", seg.name))
    }

    /// The file a segment is in now: raw before compression, compressed after.
    pub(super) fn segment_path(&self, seg: &Segment) -> PathBuf {
        match seg.state {
            State::Rotating | State::Closed => self.raw_path(seg),
            State::Compressed | State::Uploaded => self.compressed_path(seg, &seg.ext),
        }
    }

    /// `PREFIX/NODE/SOURCE/yyyy/mm/dd/NAME.log.EXT`: fixed by the segment, so a retried
    /// upload overwrites its own object and never makes a second one.
    pub fn object_key(&self, seg: &Segment) -> String {
        let day = jiff::Timestamp::from_second(seg.rotated_at)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y/%m/%d");
        let key = format!(
            "{}/{}/{day}/{}.log.{}",
            self.node, seg.source, seg.name, seg.ext
        );
        if self.cfg.s3.prefix.is_empty() {
            key
        } else {
            format!("{}/{key}", self.cfg.s3.prefix)
        }
    }
}

/// The bytes a segment holds on disk now.
pub(super) fn disk_bytes(seg: &Segment, path: &Path) -> u64 {
    match seg.state {
        State::Rotating | State::Closed => std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(seg.raw_bytes),
        State::Compressed | State::Uploaded => seg.stored_bytes,
    }
}
