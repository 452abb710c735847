//! What the daemon remembers about upgrades, in `STATE_DIR/upgrades.json` (written
//! atomically after every change): each attempt and how it went, approvals, the
//! candidate waiting here, the generation running, the lease this node granted, and
//! releases that failed their gate. The agent reports each step as an event; an event
//! it repeats (it resends what it could not confirm) changes nothing the second time.

use super::policy::{Approval, Class, GenerationMeta};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many finished attempts are kept.
pub const HISTORY_MAX: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The lease is held and the agent is switching to the candidate.
    Switching,
    /// Switched: the new generation is proving healthy.
    Gate,
    /// The gate failed: switching back to the previous generation.
    RollingBack,
    /// Back on the previous generation: proving it healthy.
    RollbackGate,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Switching => "switching",
            Phase::Gate => "gate",
            Phase::RollingBack => "rolling_back",
            Phase::RollbackGate => "rollback_gate",
            Phase::Done => "done",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The candidate passed its gate and runs.
    Succeeded,
    /// The gate failed and the previous generation runs again, healthy.
    RolledBack,
    /// The gate failed and the previous generation did not prove healthy either.
    RollbackUnhealthy,
    /// A hand switch that failed its gate, kept because an operator confirmed it.
    Confirmed,
    /// Stopped before anything changed (the agent died before switching).
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackUnhealthy => "rollback_unhealthy",
            Outcome::Confirmed => "confirmed",
            Outcome::Aborted => "aborted",
        }
    }
    pub const ALL: [Outcome; 5] = [
        Outcome::Succeeded,
        Outcome::RolledBack,
        Outcome::RollbackUnhealthy,
        Outcome::Confirmed,
        Outcome::Aborted,
    ];
}

/// One gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub passed: bool,
    pub seconds: f64,
    /// What failed, from the last check before the deadline.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// One upgrade attempt on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: String,
    pub release: String,
    pub from: GenerationMeta,
    pub to: GenerationMeta,
    pub class: Class,
    /// "planned" (the agent's decision) or "manual" (a generation switched by hand).
    pub kind: String,
    /// Why it could go: "window Sun 02:00-03:00 Asia/Kolkata", "approved --now", ...
    pub decision: String,
    pub phase: Phase,
    pub started_at_unix: i64,
    pub switched_at_unix: Option<i64>,
    pub gate: Option<GateResult>,
    pub rollback_reason: Option<String>,
    #[serde(default)]
    pub rolled_back_at_unix: Option<i64>,
    pub rollback_gate: Option<GateResult>,
    pub outcome: Option<Outcome>,
    pub finished_at_unix: Option<i64>,
    /// Divergent keys when it started: the gate allows no more.
    pub divergent_keys_at_start: u64,
    /// The last agent event applied (events are numbered from 1).
    pub events_applied: u32,
    /// A backup taken before it, when the policy asks for one.
    #[serde(default)]
    pub backup_id: Option<String>,
}

impl Attempt {
    /// A new attempt from `from` to `to`, started now, numbered `n` on this node.
    pub fn new(
        n: u64,
        to: &GenerationMeta,
        from: &GenerationMeta,
        class: Class,
        kind: &str,
        decision: String,
        divergent_keys_at_start: u64,
    ) -> Attempt {
        let now = super::now_unix();
        let stamp = jiff::Timestamp::from_second(now)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .strftime("%Y%m%dT%H%M%SZ");
        Attempt {
            id: format!("{stamp}-{n}"),
            release: to.release.clone(),
            from: from.clone(),
            to: to.clone(),
            class,
            kind: kind.to_owned(),
            decision,
            phase: Phase::Switching,
            started_at_unix: now,
            switched_at_unix: None,
            gate: None,
            rollback_reason: None,
            rolled_back_at_unix: None,
            rollback_gate: None,
            outcome: None,
            finished_at_unix: None,
            divergent_keys_at_start,
            events_applied: 0,
            backup_id: None,
        }
    }
}

/// A release or attempt id as the API takes it: letters, digits, `.`, `_`, `-`, `+`,
/// at most 128.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
}

/// A lease this node granted (to a peer or to itself): while it holds, no other node
/// may start an upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub release: String,
    pub expires_at_unix: i64,
}

/// A candidate the agent offered that waits (for a window, an approval, the fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub release: String,
    pub candidate: GenerationMeta,
    pub class: Class,
    /// "window", "approval", "fleet" or "denied".
    pub waiting_for: String,
    pub reason: String,
    pub since_unix: i64,
    pub checked_at_unix: i64,
}

/// A release that failed its gate somewhere: no node tries it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub release: String,
    pub node: String,
    pub at_unix: i64,
    pub reasons: Vec<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// Newest last; the active attempt, if any, is the last one.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub approvals: BTreeMap<String, Approval>,
    #[serde(default)]
    pub pending: Option<Pending>,
    /// The generation running, as the agent last reported it.
    #[serde(default)]
    pub current: Option<GenerationMeta>,
    #[serde(default)]
    pub lease: Option<Lease>,
    #[serde(default)]
    pub failed: Vec<Failed>,
    /// The release an operator confirmed (`keyfleet upgrade confirm`): a hand switch to
    /// it is kept even if its gate fails.
    #[serde(default)]
    pub confirmed: Option<String>,
    /// An operator asked to go back to the previous generation.
    #[serde(default)]
    pub rollback_requested: Option<String>,
    #[serde(default)]
    pub rollbacks_total: u64,
    /// Finished attempts by outcome, for `keyfleet_upgrade_attempts_total`.
    #[serde(default)]
    pub outcomes_total: BTreeMap<String, u64>,
    #[serde(default)]
    pub next_id: u64,
}

impl Record {
    pub fn active(&self) -> Option<&Attempt> {
        self.attempts.last().filter(|a| a.phase != Phase::Done)
    }

    pub fn active_mut(&mut self) -> Option<&mut Attempt> {
        self.attempts.last_mut().filter(|a| a.phase != Phase::Done)
    }

    pub fn attempt_mut(&mut self, id: &str) -> Option<&mut Attempt> {
        self.attempts.iter_mut().rev().find(|a| a.id == id)
    }

    pub fn failed_release(&self, release: &str) -> Option<&Failed> {
        self.failed.iter().find(|f| f.release == release)
    }

    /// Drops the oldest finished attempts past [`HISTORY_MAX`].
    pub fn trim(&mut self) {
        let excess = self.attempts.len().saturating_sub(HISTORY_MAX);
        if excess > 0 {
            self.attempts.drain(..excess);
        }
        let excess = self.failed.len().saturating_sub(HISTORY_MAX);
        if excess > 0 {
            self.failed.drain(..excess);
        }
    }

    /// The lease, if it has not expired at `now`.
    pub fn live_lease(&self, now: i64) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| l.expires_at_unix > now)
    }
}
