//! The `keyfleet_logship_*` families, rendered from a log shipping snapshot.

use super::text::{Exposition, Family};
use crate::logship::LogsStatus;

const QUEUE_FILES: Family = Family::gauge(
    "keyfleet_logship_queue_files",
    "Closed log segments not yet uploaded.",
);
const QUEUE_BYTES: Family = Family::gauge(
    "keyfleet_logship_queue_bytes",
    "Bytes on disk of closed log segments not yet uploaded.",
);
const UPLOADED_BYTES: Family = Family::counter(
    "keyfleet_logship_uploaded_bytes_total",
    "Compressed bytes of log segments the store confirmed.",
);
const UPLOADED_SEGMENTS: Family = Family::counter(
    "keyfleet_logship_uploaded_segments_total",
    "Log segments the store confirmed.",
);
const DROPPED_BYTES: Family = Family::counter(
    "keyfleet_logship_dropped_bytes_total",
    "Log bytes (uncompressed) deleted unshipped to stay within the disk budget.",
);
const LAST_SUCCESS: Family = Family::gauge(
    "keyfleet_logship_last_success_timestamp_seconds",
    "Unix time of the last confirmed upload; 0 before the first.",
);
const BUDGET_FULL: Family = Family::gauge(
    "keyfleet_logship_budget_full",
    "1 while the log segments need more than max_local_bytes.",
);

pub(super) fn render(out: &mut Exposition, logs: &LogsStatus) {
    type Figure = fn(&crate::logship::SourceStatus) -> u64;
    let per_source: [(&Family, Figure); 5] = [
        (&QUEUE_FILES, |s| s.queued_segments),
        (&QUEUE_BYTES, |s| s.queued_bytes),
        (&UPLOADED_BYTES, |s| s.uploaded_bytes),
        (&UPLOADED_SEGMENTS, |s| s.uploaded_segments),
        (&DROPPED_BYTES, |s| s.dropped_bytes),
    ];
    for (family, figure) in per_source {
        for s in &logs.sources {
            out.sample(family, &[("source", s.source)], figure(s) as f64);
        }
    }
    out.sample(&LAST_SUCCESS, &[], logs.last_success_at.unwrap_or(0) as f64);
    out.sample(&BUDGET_FULL, &[], if logs.budget.full { 1.0 } else { 0.0 });
}
