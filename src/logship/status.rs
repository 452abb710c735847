//! What `GET /api/v1/logs` answers and `/metrics` exports about log shipping: one
//! snapshot of the journal and the counters, taken under their locks and then released.

use super::journal::State;
use super::layout::disk_bytes;
use super::{ErrorRecord, SOURCES, Shipper, UploadRecord};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LogsStatus {
    pub enabled: bool,
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub compression: &'static str,
    pub sources: Vec<SourceStatus>,
    pub budget: Budget,
    /// Unix time of the last confirmed upload (kept across restarts); null before one.
    pub last_success_at: Option<i64>,
    pub last_error: Option<ErrorRecord>,
    /// True while the uploader's last attempt failed.
    pub failing: bool,
    /// The lowest sequence number not yet uploaded; `logs flush` waits on it.
    pub oldest_pending_seq: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: &'static str,
    pub file: String,
    pub active_bytes: u64,
    pub queued_segments: u64,
    pub queued_bytes: u64,
    pub uploaded_segments: u64,
    pub uploaded_bytes: u64,
    pub dropped_bytes: u64,
    pub last_upload: Option<UploadRecord>,
    pub last_error: Option<ErrorRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub max_local_bytes: u64,
    pub used_bytes: u64,
    pub full: bool,
    pub on_full: crate::config::OnBudgetFull,
}

impl Shipper {
    pub fn status(&self) -> LogsStatus {
        // Both locks at once (journal first, as everywhere): the queue and the counters
        // describe the same moment.
        let j = self.lock_journal();
        let st = self.lock_stats();
        let mut sources: Vec<SourceStatus> = SOURCES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let file = &self.sources[i].path;
                SourceStatus {
                    source: name,
                    file: file.display().to_string(),
                    active_bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
                    queued_segments: 0,
                    queued_bytes: 0,
                    uploaded_segments: st.uploaded_segments[i],
                    uploaded_bytes: st.uploaded_bytes[i],
                    dropped_bytes: st.dropped_bytes[i],
                    last_upload: st.last_upload[i].clone(),
                    last_error: st.last_error[i].clone(),
                }
            })
            .collect();
        let mut used = 0;
        for s in &j.segments {
            let bytes = disk_bytes(s, &self.segment_path(s));
            used += bytes;
            if s.state != State::Uploaded {
                let src = &mut sources[super::source_index(&s.source)];
                src.queued_segments += 1;
                src.queued_bytes += bytes;
            }
        }
        let last_success_at = (j.last_success_at > 0).then_some(j.last_success_at);
        LogsStatus {
            enabled: true,
            endpoint: self.cfg.s3.endpoint.clone(),
            bucket: self.cfg.s3.bucket.clone(),
            prefix: self.cfg.s3.prefix.clone(),
            compression: self.cfg.compression.extension(),
            sources,
            budget: Budget {
                max_local_bytes: self.cfg.max_local_bytes,
                used_bytes: used,
                full: st.budget_full,
                on_full: self.cfg.on_budget_full,
            },
            last_success_at,
            last_error: st.last_error_any.clone(),
            failing: st.failing,
            oldest_pending_seq: j
                .segments
                .iter()
                .filter(|s| s.state != State::Uploaded)
                .map(|s| s.seq)
                .min(),
        }
    }
}
