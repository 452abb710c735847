//! The `keyfleet_backup_*` families: figures of this node's backups since the daemon
//! started, and the fleet's newest backup and schedule period, which the alert reads.

use super::Metrics;
use super::text::{Exposition, Family};

const LAST_SUCCESS: Family = Family::gauge(
    "keyfleet_backup_last_success_timestamp_seconds",
    "Unix time of the newest complete backup of the fleet this node knows of: its own, or one read from the store at start and at each scheduled slot; 0 before any.",
);
const PERIOD: Family = Family::gauge(
    "keyfleet_backup_schedule_period_seconds",
    "The time between two scheduled backups of the fleet (absent when backups run on demand only).",
);
const DURATION: Family = Family::gauge(
    "keyfleet_backup_duration_seconds",
    "How long the last complete backup took, snapshot to manifest.",
);
const BYTES: Family = Family::gauge(
    "keyfleet_backup_bytes",
    "Bytes stored by the last complete backup (compressed).",
);
const FAILURES: Family = Family::counter(
    "keyfleet_backup_failures_total",
    "Backups on this node that failed (the error codes are in keyfleet_errors_total).",
);

/// What the registry keeps of backups.
#[derive(Debug, Default)]
pub(super) struct Figures {
    enabled: bool,
    last_success: i64,
    period: Option<f64>,
    duration: f64,
    bytes: u64,
    failures: u64,
}

impl Metrics {
    /// Backups are configured: their families are rendered from now on.
    pub fn enable_backups(&self) {
        self.lock_backup().enabled = true;
    }

    /// Backups run on a schedule with this period (the alert compares against it).
    pub fn backup_scheduled(&self, period: std::time::Duration) {
        self.lock_backup().period = Some(period.as_secs_f64());
    }

    /// A complete backup started at `at` exists (read from the store).
    pub fn backup_seen(&self, at: i64) {
        let mut f = self.lock_backup();
        f.last_success = f.last_success.max(at);
    }

    pub fn backup_succeeded(&self, bytes: u64, seconds: f64) {
        let mut f = self.lock_backup();
        f.last_success = f.last_success.max(crate::logship::now_unix());
        f.duration = seconds;
        f.bytes = bytes;
    }

    pub fn backup_failed(&self) {
        self.lock_backup().failures += 1;
    }

    fn lock_backup(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.backup.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn render_backup(&self, out: &mut Exposition) {
        let f = self.lock_backup();
        if !f.enabled {
            return;
        }
        out.sample(&LAST_SUCCESS, &[], f.last_success as f64);
        if let Some(period) = f.period {
            out.sample(&PERIOD, &[], period);
        }
        out.sample(&DURATION, &[], f.duration);
        out.sample(&BYTES, &[], f.bytes as f64);
        out.sample(&FAILURES, &[], f.failures as f64);
    }
}
