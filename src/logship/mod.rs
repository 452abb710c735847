//! Log rotation and shipping to S3 with at-least-once delivery: a segment is deleted
//! locally only after the store confirmed it.
//!
//! Three sources live in the log directory: the engine's `engine.log` (written by another
//! process, which opens the file for every line), and the daemon's own `access.log` and
//! `daemon.log` ([`writer::LogFile`]). A segment's life: the active file is renamed into
//! `segments/SOURCE/NAME.log` (rotation), closed once no writer can append to it,
//! compressed, uploaded to `PREFIX/NODE/SOURCE/yyyy/mm/dd/NAME.log.EXT`, and deleted after
//! `local_retention`. The [`journal`] records every step first, so a crash at any point
//! resumes: nothing lost, nothing half-written, no multipart upload left open.
//!
//! Two named workers share the journal: the rotator (rotation, closing, compression,
//! disk budget, retention) and the uploader (uploads, retries with capped exponential
//! backoff and jitter). Their wake-ups are `Notify`s, which hold at most one permit, so
//! a burst of file events coalesces into one pass instead of queueing. The pending
//! segments themselves are the queue, bounded by `max_local_bytes`.

mod budget;
mod compress;
pub mod journal;
mod layout;
mod rotate;
mod status;
mod upload;
pub mod writer;

pub use status::{LogsStatus, SourceStatus};

use crate::config::{LogsConfig, S3Keys};
use crate::metrics::Metrics;
use crate::s3;
use journal::{Journal, JournalError, Segment, State};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};
use writer::LogFile;

/// The names of the sources, in the order the API lists them.
pub const SOURCES: [&str; 3] = ["engine", "access", "daemon"];

/// One log file the shipper rotates.
pub struct Source {
    pub name: &'static str,
    pub path: PathBuf,
    /// The in-process writer, for the daemon's own files; None for the engine's log.
    pub writer: Option<Arc<LogFile>>,
}

/// An error worth showing: its stable code, message and Unix time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorRecord {
    pub code: &'static str,
    pub message: String,
    pub at: i64,
}

/// The last confirmed upload of a source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadRecord {
    pub segment: String,
    pub object: String,
    pub bytes: u64,
    pub at: i64,
}

/// Figures since the daemon started, per source (index as in `SOURCES`).
#[derive(Debug, Default)]
struct Stats {
    uploaded_segments: [u64; 3],
    uploaded_bytes: [u64; 3],
    dropped_bytes: [u64; 3],
    last_upload: [Option<UploadRecord>; 3],
    last_error: [Option<ErrorRecord>; 3],
    /// The last error of any source or of the store itself.
    last_error_any: Option<ErrorRecord>,
    budget_full: bool,
    /// The uploader's last attempt failed.
    failing: bool,
    /// The segment the uploader is working on; the budget never drops it. Set and read
    /// holding `journal_writer`, so a segment is never chosen and dropped at once.
    in_flight: Option<u64>,
}

/// What a flush queued: wait until no segment up to `through_seq` is pending.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlushTicket {
    pub through_seq: Option<u64>,
    pub rotated: Vec<String>,
    pub pending_segments: u64,
    pub pending_bytes: u64,
}

pub struct Shipper {
    cfg: LogsConfig,
    node: String,
    segments_dir: PathBuf,
    journal_path: PathBuf,
    /// The journal as last written. Held only to read or swap, never across a write,
    /// so the API's status never waits on the disk.
    journal: Mutex<Journal>,
    /// Held by whoever changes the journal, from the copy to the swap: one writer at a
    /// time, each starting from the last one's result.
    journal_writer: Mutex<()>,
    sources: Vec<Source>,
    client: s3::Client,
    metrics: Arc<Metrics>,
    stats: Mutex<Stats>,
    /// Segments renamed away from a writer that may still hold them (rotator state).
    closing: Mutex<Vec<rotate::Closing>>,
    wake_rotator: Notify,
    wake_uploader: Notify,
    /// One rotation at a time: the rotator's and a flush's.
    rotating: tokio::sync::Mutex<()>,
    /// The engine's pid, from its INFO (0 until known): to see whether it still holds a
    /// renamed log file open.
    engine_pid: std::sync::atomic::AtomicU32,
}

/// Why shipping could not start; the daemon keeps serving and reports it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}")]
    S3(s3::S3Error),
}

impl StartError {
    pub fn code(&self) -> &'static str {
        match self {
            StartError::Dir { .. } => "logship_dir_unusable",
            StartError::Journal(_) => "logship_journal_unusable",
            StartError::S3(e) => e.code(),
        }
    }
}

impl Shipper {
    /// Prepares the directories and the journal, and puts right what a crash left, before
    /// the API can ask for a flush. Nothing is uploaded until [`run`].
    pub fn new(
        mut cfg: LogsConfig,
        keys: &S3Keys,
        node: &str,
        state_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Shipper, StartError> {
        let segments_dir = cfg.dir.join("segments");
        for dir in std::iter::once(state_dir.to_owned())
            .chain(SOURCES.iter().map(|s| segments_dir.join(s)))
        {
            std::fs::create_dir_all(&dir).map_err(|source| StartError::Dir {
                path: dir.clone(),
                source,
            })?;
        }
        // /proc shows open files by their real path: compare with the same.
        if let Ok(real) = cfg.dir.canonicalize() {
            cfg.dir = real;
        }
        let segments_dir = cfg.dir.join("segments");
        let journal_path = state_dir.join("logship.json");
        let journal = Journal::load(&journal_path)?;
        let client = s3::Client::new(&cfg.s3, keys).map_err(StartError::S3)?;
        let sources = SOURCES
            .iter()
            .map(|name| {
                let path = cfg.dir.join(format!("{name}.log"));
                let writer = (*name != "engine").then(|| Arc::new(LogFile::new(path.clone())));
                Source { name, path, writer }
            })
            .collect();
        let shipper = Shipper {
            node: node.to_owned(),
            segments_dir,
            journal_path,
            journal: Mutex::new(journal),
            journal_writer: Mutex::new(()),
            sources,
            client,
            metrics,
            stats: Mutex::new(Stats::default()),
            closing: Mutex::new(Vec::new()),
            wake_rotator: Notify::new(),
            wake_uploader: Notify::new(),
            rotating: tokio::sync::Mutex::new(()),
            engine_pid: std::sync::atomic::AtomicU32::new(0),
            cfg,
        };
        shipper.recover();
        Ok(shipper)
    }

    /// The engine's pid, as its INFO `process_id` says.
    pub fn set_engine_pid(&self, pid: u32) {
        self.engine_pid
            .store(pid, std::sync::atomic::Ordering::Relaxed);
    }

    /// The writer of one of the daemon's own sources ("access" or "daemon").
    pub fn writer(&self, source: &str) -> Option<Arc<LogFile>> {
        self.sources
            .iter()
            .find(|s| s.name == source)
            .and_then(|s| s.writer.clone())
    }

    /// Runs the rotator and the uploader until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let check = {
            let me = self.clone();
            async move {
                if let Err(e) = me.client.head_bucket().await {
                    me.record_error(
                        None,
                        e.code(),
                        format!("bucket `{}`: {e}", me.client.bucket_name()),
                    );
                }
            }
        };
        let rotator = tokio::spawn(rotate::run(self.clone(), stop.clone()));
        let uploader = tokio::spawn(upload::run(self.clone(), stop));
        check.await;
        let _ = tokio::join!(rotator, uploader);
    }

    /// Rotates every non-empty source now and wakes the uploader; the ticket says what
    /// to wait for. Segments already queued are part of the wait. The renames and
    /// journal writes run on the blocking pool, off the caller's (the API's) thread.
    pub async fn flush(self: &Arc<Self>) -> Result<FlushTicket, ErrorRecord> {
        let rotated = {
            let _one_at_a_time = self.rotating.lock().await;
            let me = self.clone();
            tokio::task::spawn_blocking(move || {
                let mut rotated = Vec::new();
                for i in 0..me.sources.len() {
                    if let Some(name) = me.rotate_source(i)? {
                        rotated.push(name);
                    }
                }
                Ok(rotated)
            })
            .await
            .unwrap_or_else(|e| {
                Err(self.record_error(None, "logship_rotate_failed", format!("rotation: {e}")))
            })?
        };
        self.wake_rotator.notify_one();
        self.wake_uploader.notify_one();
        let j = self.lock_journal();
        let pending: Vec<&Segment> = j
            .segments
            .iter()
            .filter(|s| s.state != State::Uploaded)
            .collect();
        Ok(FlushTicket {
            through_seq: pending.iter().map(|s| s.seq).max(),
            rotated,
            pending_segments: pending.len() as u64,
            pending_bytes: pending
                .iter()
                .map(|s| layout::disk_bytes(s, &self.segment_path(s)))
                .sum(),
        })
    }

    fn lock_journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to the journal and writes it; on a failed write the error is
    /// recorded and returned, and the caller must not do what the change announces.
    fn journal_update<R>(&self, change: impl FnOnce(&mut Journal) -> R) -> Result<R, ErrorRecord> {
        self.journal_change(|j| Some(change(j)))
            .map(|r| r.expect("the change always happens"))
    }

    /// [`journal_update`](Self::journal_update) for a change that may turn out to be
    /// none (`change` returns None): then nothing is written.
    fn journal_change<R>(
        &self,
        change: impl FnOnce(&mut Journal) -> Option<R>,
    ) -> Result<Option<R>, ErrorRecord> {
        let writer = self.lock_writer();
        // The change is made on a copy that replaces the journal only once written, so
        // a failed write (a full disk) leaves memory and disk saying the same. The
        // write's fsyncs can take seconds: they hold only `journal_writer`.
        let mut next = self.lock_journal().clone();
        let Some(r) = change(&mut next) else {
            return Ok(None);
        };
        match next.save(&self.journal_path) {
            Ok(()) => {
                *self.lock_journal() = next;
                Ok(Some(r))
            }
            Err(e) => {
                drop(writer);
                Err(self.record_error(None, "logship_journal_write_failed", e.to_string()))
            }
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.journal_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets a segment whose file is gone (removed by hand?): nothing is left to ship,
    /// its bytes count as dropped, and an upload it had open is aborted with the orphans.
    fn forget_missing(&self, seg: &Segment, message: String) {
        let i = source_index(&seg.source);
        let key = self.object_key(seg);
        let _ = self.journal_update(|j| {
            if let Some(m) = j.remove(seg.seq).and_then(|s| s.multipart) {
                j.orphans.push(journal::Orphan {
                    key,
                    upload_id: m.upload_id,
                });
            }
        });
        self.lock_stats().dropped_bytes[i] += seg.raw_bytes;
        self.record_error(Some(i), "logship_segment_missing", message);
    }

    /// Records an error for the API and the metrics and logs it; returns the record.
    fn record_error(
        &self,
        source: Option<usize>,
        code: &'static str,
        message: String,
    ) -> ErrorRecord {
        let rec = ErrorRecord {
            code,
            message,
            at: now_unix(),
        };
        tracing::warn!(
            code,
            source = source.map(|i| SOURCES[i]).unwrap_or("-"),
            "log shipping: {}",
            rec.message
        );
        self.metrics.record_error(code);
        let mut st = self.lock_stats();
        if let Some(i) = source {
            st.last_error[i] = Some(rec.clone());
        }
        st.last_error_any = Some(rec.clone());
        rec
    }
}

fn source_index(name: &str) -> usize {
    SOURCES.iter().position(|s| *s == name).unwrap_or(0)
}

pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}
