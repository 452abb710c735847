//! The steps the agent reports on an attempt: each moves its phase on, records a
//! gate's verdict or a rollback, and on the last one gives the fleet's lease back. An
//! event already applied (the agent resends what it could not confirm) changes nothing.

use super::plan::{PlanError, disabled};
use super::record::{Attempt, Failed, Outcome, Phase};
use super::wire::{Event, Step};
use super::{lease, now_unix};
use crate::daemon::State;

/// Applies one step the agent reports; returns the attempt as it now stands.
pub async fn event(state: &State, id: &str, ev: Event) -> Result<Attempt, PlanError> {
    let up = &state.upgrades;
    up.config.as_ref().ok_or_else(disabled)?;
    let now = now_unix();
    let node = state.config.node_name.clone();
    let result = up.update(|r| -> Result<(Attempt, bool), PlanError> {
        let confirmed = r.confirmed.clone();
        let Some(a) = r.attempt_mut(id) else {
            return Err(PlanError {
                status: 404,
                code: "upgrade_attempt_not_found",
                message: format!("no upgrade attempt {id} on this node"),
            });
        };
        if ev.seq <= a.events_applied {
            return Ok((a.clone(), false));
        }
        if ev.seq != a.events_applied + 1 {
            return Err(PlanError {
                status: 409,
                code: "upgrade_event_out_of_order",
                message: format!(
                    "attempt {id} has applied {} events; event {} cannot come next",
                    a.events_applied, ev.seq
                ),
            });
        }
        let mut failed = None;
        match &ev.step {
            Step::Switched { at_unix } => {
                a.phase = Phase::Gate;
                a.switched_at_unix = Some(*at_unix);
            }
            Step::SwitchFailed { message } => {
                a.phase = Phase::RollingBack;
                a.rollback_reason = Some(format!("the switch failed: {message}"));
                failed = Some(vec![message.clone()]);
            }
            Step::GatePassed { gate } => {
                a.gate = Some(gate.clone());
                a.phase = Phase::Done;
                a.outcome = Some(Outcome::Succeeded);
            }
            Step::GateFailed { gate } => {
                a.gate = Some(gate.clone());
                if a.kind == "manual" && confirmed.as_deref() == Some(a.release.as_str()) {
                    a.phase = Phase::Done;
                    a.outcome = Some(Outcome::Confirmed);
                } else if a.kind == "requested_rollback" {
                    a.phase = Phase::Done;
                    a.outcome = Some(Outcome::RollbackUnhealthy);
                } else {
                    a.phase = Phase::RollingBack;
                    a.rollback_reason = Some(format!(
                        "the gate failed after {:.1} s: {}",
                        gate.seconds,
                        gate.reasons.join("; ")
                    ));
                    failed = Some(gate.reasons.clone());
                }
            }
            Step::RolledBack { at_unix } => {
                a.phase = Phase::RollbackGate;
                a.rolled_back_at_unix = Some(*at_unix);
            }
            Step::RollbackGate { gate } => {
                a.rollback_gate = Some(gate.clone());
                a.phase = Phase::Done;
                a.outcome = Some(if gate.passed {
                    Outcome::RolledBack
                } else {
                    Outcome::RollbackUnhealthy
                });
            }
            Step::Aborted { .. } => {
                a.phase = Phase::Done;
                a.outcome = Some(Outcome::Aborted);
            }
        }
        a.events_applied = ev.seq;
        if a.phase == Phase::Done {
            a.finished_at_unix = Some(now);
        }
        let out = a.clone();
        if let Some(reasons) = failed {
            r.rollbacks_total += 1;
            if r.failed_release(&out.release).is_none() {
                r.failed.push(Failed {
                    release: out.release.clone(),
                    node: node.clone(),
                    at_unix: now,
                    reasons,
                });
            }
        }
        if let Some(o) = out.outcome.filter(|_| out.phase == Phase::Done) {
            *r.outcomes_total.entry(o.as_str().to_owned()).or_default() += 1;
        }
        if out.outcome == Some(Outcome::Succeeded) {
            r.current = Some(out.to.clone());
        }
        Ok((out.clone(), out.phase == Phase::Done))
    })?;
    let (attempt, done) = result?;
    if done {
        tracing::info!(
            attempt = %attempt.id,
            outcome = attempt.outcome.map_or("?", |o| o.as_str()),
            "upgrade attempt finished"
        );
        lease::give_back(state).await;
    }
    Ok(attempt)
}
