//! What the agent and the daemon (and daemons among themselves) send each other over
//! the API. Both sides are this crate, so one set of types serves both.

use super::policy::GenerationMeta;
use super::record::{Attempt, GateResult};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/upgrades/plan`: the agent says what runs and what it could switch to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub current: GenerationMeta,
    /// The candidate; absent when there is none (the agent still reports what runs).
    #[serde(default)]
    pub candidate: Option<GenerationMeta>,
    /// `current` was switched to by hand from `manual_from`: gate it.
    #[serde(default)]
    pub manual_from: Option<GenerationMeta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Switch now: the lease is held and the attempt recorded.
    Go,
    /// An attempt is under way (the agent restarted): carry it on from its phase.
    Resume,
    /// Gate the generation switched to by hand (`manual_from` was given).
    GateManual,
    /// Go back to the previous generation: an operator asked.
    Rollback,
    Wait,
    Deny,
    /// No candidate, or it already runs.
    Nothing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanAnswer {
    pub decision: Decision,
    pub reason: String,
    #[serde(default)]
    pub attempt: Option<Attempt>,
    pub gate_timeout_seconds: f64,
    pub gate_settle_seconds: f64,
}

/// `POST /api/v1/upgrades/attempts/{id}/events`: one step of an attempt. `seq` numbers
/// the attempt's events from 1; one already applied is acknowledged and ignored.
// No deny_unknown_fields: serde cannot combine it with a flattened enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u32,
    #[serde(flatten)]
    pub step: Step,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Step {
    /// The candidate runs now; its gate starts.
    Switched {
        at_unix: i64,
    },
    /// The switch itself failed (the candidate did not build or activate).
    SwitchFailed {
        message: String,
    },
    GatePassed {
        gate: GateResult,
    },
    GateFailed {
        gate: GateResult,
    },
    /// The previous generation runs again.
    RolledBack {
        at_unix: i64,
    },
    RollbackGate {
        gate: GateResult,
    },
    /// Nothing changed: the agent stopped before switching.
    Aborted {
        reason: String,
    },
}

/// `GET /api/v1/upgrades/gate`: one evaluation of the health gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateCheck {
    pub healthy: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl GateCheck {
    pub fn reasons(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

/// `POST /api/v1/upgrades/lease`: a peer asks for the fleet's upgrade lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub holder: String,
    pub release: String,
    pub ttl_seconds: u64,
}

/// `POST /api/v1/upgrades/lease/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRelease {
    pub holder: String,
}

/// `POST /api/v1/upgrades/{release}/approve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Go without waiting for a window.
    #[serde(default)]
    pub now: bool,
    /// Approve it on every peer too (where it waits).
    #[serde(default)]
    pub fleet: bool,
}
