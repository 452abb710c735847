//! The upgrade families (`crate::upgrade`): the state, what a waiting candidate waits
//! for, the last result, rollbacks, time in the gate, approvals waiting and the next
//! window, all from the daemon's upgrade record.

use super::text::{Exposition, Family};
use crate::upgrade::record::{Outcome, Phase};
use crate::upgrade::{Upgrades, now_unix, window};

const STATE: Family = Family::gauge(
    "keyfleet_upgrade_state",
    "1 for this node's upgrade state (idle, waiting, switching, gate, rolling_back, rollback_gate), 0 for the others.",
);
const WAITING: Family = Family::gauge(
    "keyfleet_upgrade_waiting",
    "1 while a candidate waits, by what it waits for (window, approval, fleet, backup, denied).",
);
const LAST_RESULT: Family = Family::gauge(
    "keyfleet_upgrade_last_result",
    "1 for the outcome of this node's newest finished upgrade attempt, 0 for the other outcomes.",
);
const ATTEMPTS: Family = Family::counter(
    "keyfleet_upgrade_attempts_total",
    "Finished upgrade attempts on this node, by outcome.",
);
const ROLLBACKS: Family = Family::counter(
    "keyfleet_upgrade_rollbacks_total",
    "Generations this node rolled back because their health gate failed (or their switch did).",
);
const LAST_GATE: Family = Family::gauge(
    "keyfleet_upgrade_last_gate_seconds",
    "How long the newest finished health gate took, passed or not.",
);
const IN_GATE: Family = Family::gauge(
    "keyfleet_upgrade_in_gate_seconds",
    "Seconds the generation under its health gate has been running; 0 when no gate runs.",
);
const APPROVAL_WAIT: Family = Family::gauge(
    "keyfleet_upgrade_pending_approval_seconds",
    "Seconds a release has waited for a person's approval on this node.",
);
const WINDOW_OPEN: Family = Family::gauge(
    "keyfleet_upgrade_window_open",
    "1 while a maintenance window of this node is open.",
);
const NEXT_WINDOW: Family = Family::gauge(
    "keyfleet_upgrade_next_window_timestamp_seconds",
    "When this node's next maintenance window opens (Unix time).",
);

const STATES: [&str; 6] = [
    "idle",
    "waiting",
    "switching",
    "gate",
    "rolling_back",
    "rollback_gate",
];

pub(super) fn render(out: &mut Exposition, up: &Upgrades) {
    let Some(cfg) = &up.config else { return };
    let rec = up.snapshot();
    let now = now_unix();
    let state = Upgrades::state_name(&rec);
    for s in STATES {
        out.sample(&STATE, &[("state", s)], if s == state { 1.0 } else { 0.0 });
    }
    if let Some(p) = &rec.pending {
        out.sample(&WAITING, &[("reason", &p.waiting_for)], 1.0);
        if p.waiting_for == "approval" {
            out.sample(
                &APPROVAL_WAIT,
                &[("release", &p.release)],
                (now - p.since_unix).max(0) as f64,
            );
        }
    }
    let last = Upgrades::last_outcome(&rec);
    if last.is_some() {
        for o in Outcome::ALL {
            let v = if Some(o) == last { 1.0 } else { 0.0 };
            out.sample(&LAST_RESULT, &[("result", o.as_str())], v);
        }
    }
    for o in Outcome::ALL {
        let n = rec.outcomes_total.get(o.as_str()).copied().unwrap_or(0);
        out.sample(&ATTEMPTS, &[("outcome", o.as_str())], n as f64);
    }
    out.sample(&ROLLBACKS, &[], rec.rollbacks_total as f64);
    let finished_gate = rec
        .attempts
        .iter()
        .rev()
        .find_map(|a| a.rollback_gate.as_ref().or(a.gate.as_ref()));
    if let Some(g) = finished_gate {
        out.sample(&LAST_GATE, &[], g.seconds);
    }
    let in_gate = rec
        .active()
        .filter(|a| matches!(a.phase, Phase::Gate | Phase::RollbackGate))
        .map_or(0.0, |a| {
            let since = a.rolled_back_at_unix.or(a.switched_at_unix).unwrap_or(now);
            (now - since).max(0) as f64
        });
    out.sample(&IN_GATE, &[], in_gate);
    let ts = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let open = window::open_now(&cfg.windows, ts).is_some();
    out.sample(&WINDOW_OPEN, &[], if open { 1.0 } else { 0.0 });
    if let Some(o) = window::next_opening(&cfg.windows, ts) {
        out.sample(&NEXT_WINDOW, &[], o.start.timestamp().as_second() as f64);
    }
}
