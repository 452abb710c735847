//! The daemon's own log files (`access.log`, `daemon.log`): an append-only file that the
//! shipper can rotate without losing or cutting a line. Every line is written with one
//! `write` under a lock, and rotation renames the file under the same lock, so a line
//! lands whole in the old segment or whole in the new file, never across both.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct LogFile {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Lines that could not be written (a full disk, a removed directory).
    failed_writes: AtomicU64,
}

impl LogFile {
    pub fn new(path: PathBuf) -> LogFile {
        LogFile {
            path,
            file: Mutex::new(None),
            failed_writes: AtomicU64::new(0),
        }
    }

    /// Appends one whole line (`line` ends with '\n'). A failure is counted, never
    /// raised: a log line that cannot be written must not stop the daemon.
    pub fn write_line(&self, line: &[u8]) {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => *guard = Some(f),
                Err(_) => {
                    self.failed_writes.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        if let Some(f) = guard.as_mut()
            && f.write_all(line).is_err()
        {
            self.failed_writes.fetch_add(1, Ordering::Relaxed);
            // Reopen next time: the file may have been removed under us.
            *guard = None;
        }
    }

    /// Renames the file to `to`; the next line starts a new file. Returns false when
    /// there was no file (nothing written since the last rotation).
    pub fn rotate_to(&self, to: &Path) -> std::io::Result<bool> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        *guard = None;
        match std::fs::rename(&self.path, to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn failed_writes(&self) -> u64 {
        self.failed_writes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn rotation_under_concurrent_writers_loses_and_cuts_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(LogFile::new(dir.path().join("access.log")));
        // The writers meet the rotating thread half way, so that rotations fall among the
        // writes however fast the machine is.
        let first = Arc::new(std::sync::Barrier::new(5));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (log, first) = (log.clone(), first.clone());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        if i == 1000 {
                            first.wait();
                        }
                        log.write_line(
                            format!("writer {w} line {i:05} {}\n", "x".repeat(100)).as_bytes(),
                        );
                    }
                })
            })
            .collect();
        // Every first half is written: this rotation meets the second halves.
        first.wait();
        let mut rotated = 0;
        loop {
            if log
                .rotate_to(&dir.path().join(format!("seg-{rotated:04}")))
                .unwrap()
            {
                rotated += 1;
            }
            if writers.iter().all(|w| w.is_finished()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(rotated >= 1, "the test must rotate while writing");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() >= 2,
            "a segment and the active file"
        );
        let mut lines = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        // The active file (if any) holds the newest lines: it comes after every segment.
        files.sort_by_key(|p| (p.ends_with("access.log"), p.clone()));
        for f in files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "a cut line");
            lines.extend(text.lines().map(str::to_owned));
        }
        assert_eq!(lines.len(), 4 * 2000);
        for w in 0..4 {
            let mine: Vec<_> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("writer {w} ")))
                .collect();
            assert_eq!(mine.len(), 2000);
            for (i, l) in mine.iter().enumerate() {
                assert!(
                    l.starts_with(&format!("writer {w} line {i:05} ")),
                    "order: {l}"
                );
            }
        }
        assert_eq!(log.failed_writes(), 0);
    }
}
