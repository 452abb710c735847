//! The planner: may this node switch to the agent's candidate now? The version policy
//! and the windows first, then the fleet (every peer answers, healthy, none upgrading,
//! the release failed nowhere, earlier nodes in the order run it already), then the
//! lease. On "go" the attempt is recorded before the answer leaves, so the agent never
//! switches unrecorded. Also the steps the agent reports, approvals, confirmations and
//! rollback requests.

use super::policy::{self, Class, Verdict};
use super::record::{Attempt, Pending, Phase};
use super::wire::{Decision, PlanAnswer, PlanRequest};
use super::{SaveError, lease, now_unix, window};
use crate::daemon::State;

/// A request the planner cannot take (not a "wait": a caller's mistake).
#[derive(Debug)]
pub struct PlanError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl From<SaveError> for PlanError {
    fn from(e: SaveError) -> Self {
        PlanError {
            status: 500,
            code: "upgrade_record_unwritable",
            message: format!("the upgrade record cannot be written: {}", e.0),
        }
    }
}

pub(super) fn disabled() -> PlanError {
    PlanError {
        status: 409,
        code: "upgrades_not_configured",
        message: "upgrades are not configured on this node (no [upgrades] table)".into(),
    }
}

pub async fn plan(state: &State, req: PlanRequest) -> Result<PlanAnswer, PlanError> {
    let up = &state.upgrades;
    let cfg = up.config.as_ref().ok_or_else(disabled)?;
    let answer = |decision, reason: String, attempt| PlanAnswer {
        decision,
        reason,
        attempt,
        gate_timeout_seconds: cfg.gate_timeout.as_secs_f64(),
        gate_settle_seconds: cfg.gate_settle.as_secs_f64(),
    };
    let now = now_unix();
    let rec = up.update(|r| {
        r.current = Some(req.current.clone());
        r.clone()
    })?;
    if let Some(a) = rec.active() {
        return Ok(answer(
            Decision::Resume,
            format!(
                "attempt {} is in phase {}; resume it",
                a.id,
                a.phase.as_str()
            ),
            Some(a.clone()),
        ));
    }
    let divergent = state.safety.report().divergence.divergent_keys;
    if let Some(from) = &req.manual_from {
        let requested = rec.rollback_requested.is_some();
        let class = policy::classify(from, &req.current).unwrap_or(Class::EngineUnchanged);
        let attempt = Attempt::new(
            rec.next_id + 1,
            &req.current,
            from,
            class,
            if requested {
                "requested_rollback"
            } else {
                "manual"
            },
            if requested {
                "rolled back on an operator's request".into()
            } else {
                "switched by hand".into()
            },
            divergent,
        );
        let mut attempt = attempt;
        attempt.phase = Phase::Gate;
        attempt.switched_at_unix = Some(now);
        up.update(|r| {
            r.rollback_requested = None;
            r.next_id += 1;
            r.attempts.push(attempt.clone());
        })?;
        // Another node may not start while this one proves itself.
        if let Err(e) = lease::acquire(state, &req.current.release).await {
            tracing::warn!("hand switch gated without the fleet lease: {e}");
        }
        return Ok(answer(
            Decision::GateManual,
            "a generation switched by hand: its gate runs".into(),
            Some(attempt),
        ));
    }
    if let Some(by) = &rec.rollback_requested {
        return Ok(answer(
            Decision::Rollback,
            format!("{by} asked to go back to the previous generation"),
            None,
        ));
    }
    let Some(cand) = req
        .candidate
        .as_ref()
        .filter(|c| c.release != req.current.release)
    else {
        up.update(|r| r.pending = None)?;
        return Ok(answer(
            Decision::Nothing,
            "no candidate, or it already runs".into(),
            None,
        ));
    };
    let wait = |waiting_for: &str, class: Class, reason: String| {
        let since = rec
            .pending
            .as_ref()
            .filter(|p| p.release == cand.release && p.waiting_for == waiting_for)
            .map_or(now, |p| p.since_unix);
        up.update(|r| {
            r.pending = Some(Pending {
                release: cand.release.clone(),
                candidate: cand.clone(),
                class,
                waiting_for: waiting_for.to_owned(),
                reason: reason.clone(),
                since_unix: since,
                checked_at_unix: now,
            })
        })
        .map(|()| reason)
    };
    if let Some(f) = rec.failed_release(&cand.release) {
        let reason = format!(
            "release {} failed its gate on {} ({}); stage a new one",
            f.release,
            f.node,
            f.reasons.join("; ")
        );
        let class = policy::classify(&req.current, cand).unwrap_or(Class::EngineUnchanged);
        return Ok(answer(Decision::Deny, wait("denied", class, reason)?, None));
    }
    let class = match policy::classify(&req.current, cand) {
        Ok(c) => c,
        Err(e) => {
            return Ok(answer(
                Decision::Deny,
                wait("denied", Class::EngineUnchanged, e)?,
                None,
            ));
        }
    };
    let approval = rec.approvals.get(&cand.release);
    let ts = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let open = window::open_now(&cfg.windows, ts);
    let why_go = match (&approval, &open) {
        (Some(a), _) if a.now => "approved --now".to_owned(),
        (_, Some(Some(o))) => format!("inside the window opened at {}", o.start),
        _ => "the window is always open".to_owned(),
    };
    match policy::decide(&cfg.policy, class, approval, open.is_some()) {
        Verdict::Denied(m) => return Ok(answer(Decision::Deny, wait("denied", class, m)?, None)),
        Verdict::WaitApproval => {
            let reason = format!(
                "a {class} upgrade ({} {} → {}) waits for approval: keyfleet upgrade approve {}",
                cand.engine, req.current.engine_version, cand.engine_version, cand.release
            );
            return Ok(answer(
                Decision::Wait,
                wait("approval", class, reason)?,
                None,
            ));
        }
        Verdict::WaitWindow => {
            let reason = match window::next_opening(&cfg.windows, ts) {
                Some(o) => format!(
                    "outside every maintenance window; the next opens {} ({} UTC)",
                    o.start,
                    o.start.timestamp()
                ),
                None => "no maintenance window is configured ([upgrades] windows); approve it \
                         with --now to go anyway"
                    .to_owned(),
            };
            return Ok(answer(Decision::Wait, wait("window", class, reason)?, None));
        }
        Verdict::Go => {}
    }
    if let Err((deny, reason)) = fleet_allows(state, &cand.release).await {
        let decision = if deny { Decision::Deny } else { Decision::Wait };
        let what = if deny { "denied" } else { "fleet" };
        return Ok(answer(decision, wait(what, class, reason)?, None));
    }
    let backup_id = match backup_first(state, class).await {
        Ok(id) => id,
        Err(reason) => return Ok(answer(Decision::Wait, wait("backup", class, reason)?, None)),
    };
    if let Err(reason) = lease::acquire(state, &cand.release).await {
        let reason = format!("the fleet's upgrade lease is not free: {reason}");
        return Ok(answer(Decision::Wait, wait("fleet", class, reason)?, None));
    }
    let mut attempt = Attempt::new(
        rec.next_id + 1,
        cand,
        &req.current,
        class,
        "planned",
        why_go,
        divergent,
    );
    attempt.backup_id = backup_id;
    let recorded = up.update(|r| {
        r.pending = None;
        r.approvals.remove(&cand.release);
        r.next_id += 1;
        r.attempts.push(attempt.clone());
    });
    if let Err(e) = recorded {
        lease::give_back(state).await;
        return Err(e.into());
    }
    tracing::info!(
        attempt = %attempt.id,
        release = %attempt.release,
        class = %class,
        "upgrade starts: {}",
        attempt.decision
    );
    Ok(answer(
        Decision::Go,
        attempt.decision.clone(),
        Some(attempt),
    ))
}

/// Ok when the fleet lets this node start `release`; Err((deny, why)) otherwise.
async fn fleet_allows(state: &State, release: &str) -> Result<(), (bool, String)> {
    let me = &state.config.node_name;
    let problems = crate::fleet::local_node(state).await.problems();
    if !problems.is_empty() {
        return Err((
            false,
            format!("this node is not healthy: {}", problems.join("; ")),
        ));
    }
    let earlier: Vec<&String> = state
        .upgrades
        .order
        .iter()
        .take_while(|n| *n != me)
        .collect();
    let mut waits = Vec::new();
    for (name, summary) in lease::peer_summaries(state).await {
        let s = match summary {
            Ok(s) => s,
            Err(e) => {
                waits.push(format!(
                    "{name} cannot be asked ({e}); a peer that cannot be asked blocks upgrades"
                ));
                continue;
            }
        };
        if s.failed_releases.iter().any(|r| r == release) {
            return Err((true, format!("release {release} failed its gate on {name}")));
        }
        if s.state != "idle" && s.state != "waiting" {
            waits.push(format!("{name} is upgrading ({})", s.state));
        } else if !s.healthy {
            waits.push(format!("{name} is not healthy: {}", s.problems.join("; ")));
        } else if earlier.contains(&&name) && s.current_release.as_deref() != Some(release) {
            waits.push(format!(
                "{name} comes before this node in the upgrade order and does not run {release} yet"
            ));
        }
    }
    if waits.is_empty() {
        Ok(())
    } else {
        Err((false, waits.join("; ")))
    }
}

/// Before a minor or major upgrade, with backups configured and `backup_before`, a
/// backup completes first; Ok(None) when none is due.
async fn backup_first(state: &State, class: Class) -> Result<Option<String>, String> {
    let wanted = state
        .upgrades
        .config
        .as_ref()
        .is_some_and(|c| c.backup_before)
        && matches!(class, Class::Minor | Class::Major);
    let Some(backups) = state.backups.as_ref().filter(|_| wanted) else {
        return Ok(None);
    };
    backups.wait().await;
    let id = backups
        .start(state.engine.clone())
        .map_err(|e| format!("the backup before the upgrade cannot start: {}", e.message))?;
    // The task takes the running guard before this returns; wait for it to finish.
    tokio::task::yield_now().await;
    backups.wait().await;
    match backups.current() {
        Some(p) if p.id == id && p.state == "complete" => Ok(Some(id)),
        Some(p) if p.id == id => Err(format!(
            "the backup before the upgrade ({id}) ended {}: {}",
            p.state,
            p.error.map_or_else(String::new, |e| e.message)
        )),
        _ => Err(format!(
            "the backup before the upgrade ({id}) left no result"
        )),
    }
}
