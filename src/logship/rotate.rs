//! The rotator worker: watches the log directory (inotify through `notify`, a timer as
//! the fallback), rotates a source by size or age, closes a renamed segment once its
//! writer let go, compresses closed segments one at a time on the blocking pool, and
//! has the budget (`budget.rs`) applied after each pass; and, at start, recovery.

use super::journal::{Segment, State};
use super::{ErrorRecord, Shipper, now_unix, source_index};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often sizes and ages are checked when the directory watch works, and when not.
const TICK_WATCHED: Duration = Duration::from_secs(5);
const TICK_POLLING: Duration = Duration::from_secs(1);
/// A renamed segment is closed at the latest this long after its grace period, even if
/// some process still holds it open (it is then logged).
const MAX_EXTRA_WAIT: Duration = Duration::from_secs(30);
/// While segments are closing, the rotator looks again this often.
const CLOSING_TICK: Duration = Duration::from_millis(200);

/// A segment renamed away from a writer that may still hold it open.
pub(super) struct Closing {
    seq: u64,
    not_before: Instant,
    not_after: Instant,
}

pub(super) async fn run(me: Arc<Shipper>, mut stop: watch::Receiver<bool>) {
    let watcher = watch_dir(&me);
    let tick = if watcher.is_some() {
        TICK_WATCHED
    } else {
        TICK_POLLING
    };
    // Age is measured from when a source was first seen non-empty.
    let mut first_seen: [Option<Instant>; 3] = [None; 3];
    loop {
        let busy = !me
            .closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        let wait = if busy { CLOSING_TICK } else { tick };
        tokio::select! {
            _ = me.wake_rotator.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        {
            let _one_at_a_time = me.rotating.lock().await;
            for (i, seen) in first_seen.iter_mut().enumerate() {
                let size = std::fs::metadata(&me.sources[i].path)
                    .map(|m| m.len())
                    .unwrap_or(0);
                if size == 0 {
                    *seen = None;
                    continue;
                }
                let since = *seen.get_or_insert_with(Instant::now);
                let due =
                    size >= me.cfg.rotate.max_size || since.elapsed() >= me.cfg.rotate.max_age;
                if due && me.rotate_source(i).is_ok() {
                    *seen = None;
                }
            }
        }
        me.close_released();
        while me.compress_one().await {}
        me.enforce_budget();
    }
}

/// Watches the log directory; every event wakes the rotator (coalesced: `Notify` keeps
/// one permit). None when the watch cannot be set up (then the timer polls).
fn watch_dir(me: &Arc<Shipper>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let weak = Arc::downgrade(me);
    let handler = move |_event: notify::Result<notify::Event>| {
        if let Some(me) = weak.upgrade() {
            me.wake_rotator.notify_one();
        }
    };
    let result = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(&me.cfg.dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "log shipping: cannot watch {} ({e}); polling every {TICK_POLLING:?}",
                me.cfg.dir.display()
            );
            None
        }
    }
}

impl Shipper {
    /// Renames source `i`'s active file into a new segment; None when it is empty.
    pub(super) fn rotate_source(&self, i: usize) -> Result<Option<String>, ErrorRecord> {
        let src = &self.sources[i];
        let size = std::fs::metadata(&src.path).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return Ok(None);
        }
        let now = now_unix();
        let seg = self.journal_update(|j| {
            let seq = j.next_seq;
            j.next_seq += 1;
            let stamp = jiff::Timestamp::from_second(now)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .strftime("%Y%m%dT%H%M%SZ");
            let seg = Segment {
                seq,
                source: src.name.to_owned(),
                name: format!("{stamp}-{seq:06}"),
                rotated_at: now,
                state: State::Rotating,
                raw_bytes: 0,
                stored_bytes: 0,
                ext: String::new(),
                multipart: None,
                uploaded_at: None,
            };
            j.segments.push(seg.clone());
            seg
        })?;
        let to = self.raw_path(&seg);
        let renamed = match &src.writer {
            Some(w) => w.rotate_to(&to),
            None => std::fs::rename(&src.path, &to).map(|()| true).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(false)
                } else {
                    Err(e)
                }
            }),
        };
        match renamed {
            Ok(true) => {}
            Ok(false) => {
                let _ = self.journal_update(|j| j.remove(seg.seq));
                return Ok(None);
            }
            Err(e) => {
                let _ = self.journal_update(|j| j.remove(seg.seq));
                return Err(self.record_error(
                    Some(i),
                    "logship_rotate_failed",
                    format!(
                        "cannot rename {} to {}: {e}",
                        src.path.display(),
                        to.display()
                    ),
                ));
            }
        }
        if src.writer.is_some() {
            // Renamed under the writer's lock: nothing can append any more.
            self.mark_closed(seg.seq, &to);
        } else {
            self.start_closing(seg.seq);
        }
        Ok(Some(seg.name))
    }

    /// Waits for the engine to let go of a renamed segment (see `close_released`).
    fn start_closing(&self, seq: u64) {
        let now = Instant::now();
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Closing {
                seq,
                not_before: now + self.cfg.writer_grace,
                not_after: now + self.cfg.writer_grace + MAX_EXTRA_WAIT,
            });
    }

    /// After a restart: segments caught mid-rotation get a new grace period, and files
    /// left by a crash between two steps are put right.
    pub(super) fn recover(&self) {
        // A compression killed half-way leaves its temporary file behind.
        for source in super::SOURCES {
            for e in std::fs::read_dir(self.segments_dir.join(source))
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let segs: Vec<Segment> = self.lock_journal().segments.clone();
        for seg in segs {
            let raw = self.raw_path(&seg);
            match seg.state {
                State::Rotating if raw.exists() => self.start_closing(seg.seq),
                // The rename never happened: the lines are still in the active file.
                State::Rotating => {
                    let _ = self.journal_update(|j| j.remove(seg.seq));
                }
                State::Closed => {
                    let out =
                        raw.with_extension(format!("log.{}", self.cfg.compression.extension()));
                    if !raw.exists() && out.exists() {
                        // Compressed and renamed, then killed before the journal said so.
                        let stored = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
                        let ext = self.cfg.compression.extension().to_owned();
                        let _ = self.journal_update(|j| {
                            if let Some(s) = j.get_mut(seg.seq) {
                                s.state = State::Compressed;
                                s.stored_bytes = stored;
                                s.ext = ext;
                            }
                        });
                    }
                }
                State::Compressed | State::Uploaded => {
                    // Killed between journaling the compression and removing the raw file.
                    let _ = std::fs::remove_file(&raw);
                }
            }
        }
    }

    fn mark_closed(&self, seq: u64, path: &Path) {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let _ = self.journal_update(|j| {
            if let Some(s) = j.get_mut(seq) {
                s.state = State::Closed;
                s.raw_bytes = size;
            }
        });
    }

    /// Closes every renamed segment whose writer has let go: at once when the engine's
    /// open files can be read and do not hold it, else once `writer_grace` is over and
    /// no process this daemon can see holds it (or `MAX_EXTRA_WAIT` later, regardless).
    fn close_released(&self) {
        let now = Instant::now();
        let candidates: Vec<(u64, bool, bool)> = {
            let closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
            closing
                .iter()
                .map(|c| (c.seq, now >= c.not_before, now >= c.not_after))
                .collect()
        };
        for (seq, graced, overdue) in candidates {
            let Some(seg) = self
                .lock_journal()
                .segments
                .iter()
                .find(|s| s.seq == seq)
                .cloned()
            else {
                self.forget_closing(seq);
                continue;
            };
            let raw = self.raw_path(&seg);
            let release = match self.engine_holds(&raw) {
                Some(held) => !held,
                None => graced && !held_open(&raw),
            };
            if !release && !overdue {
                continue;
            }
            if !release {
                tracing::warn!(
                    "log shipping: {} is still open in some process; closing it anyway",
                    raw.display()
                );
            }
            self.mark_closed(seq, &raw);
            self.forget_closing(seq);
        }
    }

    /// Whether the engine holds `path` open, from its open files in /proc; None when they
    /// cannot be read (another user's process, as on NixOS) or the engine's pid is not
    /// known yet.
    fn engine_holds(&self, path: &Path) -> Option<bool> {
        let pid = self.engine_pid.load(std::sync::atomic::Ordering::Relaxed);
        if pid == 0 {
            return None;
        }
        // The pid comes from the engine's INFO: make sure it names the engine here (a
        // different pid namespace would make it someone else's).
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if !(comm.starts_with("keydb") || comm.starts_with("redis")) {
            return None;
        }
        fd_open(Path::new(&format!("/proc/{pid}")), path)
    }

    fn forget_closing(&self, seq: u64) {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| c.seq != seq);
    }

    /// Compresses the oldest closed segment; false when there was none (or it failed,
    /// to be tried again on the next pass).
    async fn compress_one(&self) -> bool {
        let Some(seg) = self
            .lock_journal()
            .segments
            .iter()
            .find(|s| s.state == State::Closed)
            .cloned()
        else {
            return false;
        };
        let how = self.cfg.compression;
        let raw = self.raw_path(&seg);
        let out = self.compressed_path(&seg, how.extension());
        let (r, o) = (raw.clone(), out.clone());
        let result =
            tokio::task::spawn_blocking(move || super::compress::compress_file(&r, &o, how))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        let i = source_index(&seg.source);
        match result {
            Ok(stored) => {
                let ok = self.journal_update(|j| {
                    if let Some(s) = j.get_mut(seg.seq) {
                        s.state = State::Compressed;
                        s.stored_bytes = stored;
                        s.ext = how.extension().to_owned();
                    }
                });
                if ok.is_err() {
                    return false;
                }
                let _ = std::fs::remove_file(&raw);
                // A failing uploader keeps its backoff; a flush wakes it.
                if !self.lock_stats().failing {
                    self.wake_uploader.notify_one();
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !raw.exists() => {
                self.forget_missing(&seg, format!("{} is gone", raw.display()));
                true
            }
            Err(e) => {
                self.record_error(
                    Some(i),
                    "logship_compress_failed",
                    format!("cannot compress {}: {e}", raw.display()),
                );
                false
            }
        }
    }
}

/// Whether any process this one can inspect holds `path` open (through /proc).
fn held_open(path: &Path) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let pid = p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit());
        pid && fd_open(&p.path(), path) == Some(true)
    })
}

/// Whether the process at `/proc/PID` (`proc_dir`) has `path` open; None when its open
/// files cannot be read.
fn fd_open(proc_dir: &Path, path: &Path) -> Option<bool> {
    let fds = std::fs::read_dir(proc_dir.join("fd")).ok()?;
    Some(
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path)),
    )
}
