//! The disk budget and local retention: uploaded segments past `local_retention` are
//! deleted, and while the segments need more than `max_local_bytes`, uploaded ones go
//! first, then (with `drop_oldest`) the oldest unshipped ones, their bytes counted.

use super::journal::{Orphan, Segment, State};
use super::{Shipper, now_unix, source_index};
use crate::config::OnBudgetFull;

impl Shipper {
    /// Deletes uploaded segments past their retention, then, while the segments take more
    /// than `max_local_bytes`: uploaded ones first, then (with `drop_oldest`) the oldest
    /// unshipped ones, counting their bytes as dropped. Never the segment being uploaded
    /// or one a writer may still hold.
    pub(super) fn enforce_budget(&self) {
        let now = now_unix();
        let retention = self.cfg.local_retention.as_secs() as i64;
        let max = self.cfg.max_local_bytes;
        let mut used = 0;
        let mut over = false;
        let plan = self.journal_change(|j| {
            let in_flight = self.lock_stats().in_flight;
            used = j
                .segments
                .iter()
                .map(|s| super::layout::disk_bytes(s, &self.segment_path(s)))
                .sum();
            let mut delete: Vec<Segment> = Vec::new();
            for s in &j.segments {
                let expired = s.uploaded_at.is_some_and(|t| t + retention <= now);
                if s.state == State::Uploaded && (expired || used > max) {
                    used = used.saturating_sub(s.stored_bytes);
                    delete.push(s.clone());
                }
            }
            over = used > max;
            let mut dropped: Vec<Segment> = Vec::new();
            if over && self.cfg.on_budget_full == OnBudgetFull::DropOldest {
                for s in &j.segments {
                    if used <= max {
                        break;
                    }
                    let busy = s.state == State::Rotating || Some(s.seq) == in_flight;
                    if s.state == State::Uploaded || busy {
                        continue;
                    }
                    used = used.saturating_sub(super::layout::disk_bytes(s, &self.segment_path(s)));
                    dropped.push(s.clone());
                }
            }
            if delete.is_empty() && dropped.is_empty() {
                return None;
            }
            for s in delete.iter().chain(&dropped) {
                j.remove(s.seq);
            }
            for s in &dropped {
                if let Some(m) = &s.multipart {
                    j.orphans.push(Orphan {
                        key: self.object_key(s),
                        upload_id: m.upload_id.clone(),
                    });
                }
            }
            Some((delete, dropped))
        });
        // Nothing on disk is deleted unless the journal says so.
        let Ok(plan) = plan else { return };
        self.set_budget_full(over, used);
        let Some((delete, dropped)) = plan else {
            return;
        };
        for s in delete.iter().chain(&dropped) {
            let _ = std::fs::remove_file(self.segment_path(s));
            let _ = std::fs::remove_file(self.raw_path(s));
        }
        if !dropped.is_empty() {
            let mut st = self.lock_stats();
            for s in &dropped {
                st.dropped_bytes[source_index(&s.source)] += s.raw_bytes;
            }
            drop(st);
            let bytes: u64 = dropped.iter().map(|s| s.raw_bytes).sum();
            self.record_error(
                None,
                "logship_budget_dropped",
                format!(
                    "the local budget of {max} bytes is reached; dropped the {} oldest unshipped segments ({bytes} log bytes)",
                    dropped.len()
                ),
            );
        }
    }

    fn set_budget_full(&self, full: bool, used: u64) {
        let was = std::mem::replace(&mut self.lock_stats().budget_full, full);
        if full && !was && self.cfg.on_budget_full == OnBudgetFull::Keep {
            self.record_error(
                None,
                "logship_budget_full",
                format!(
                    "the local budget of {} bytes is reached ({used} bytes queued); keeping everything (on_budget_full = \"keep\")",
                    self.cfg.max_local_bytes
                ),
            );
        }
    }
}
