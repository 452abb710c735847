//! What operators do to upgrades through the API: approve a release (on every node
//! where it waits, by default), confirm a generation switched by hand, ask for a
//! rollback.

use super::now_unix;
use super::plan::{PlanError, disabled};
use super::policy::Approval;
use crate::daemon::State;
use serde_json::{Value, json};

/// Approves `release` here and, with `fleet`, on every peer; one entry per node.
pub async fn approve_fleet(
    state: &State,
    release: &str,
    now: bool,
    fleet: bool,
) -> Result<Value, PlanError> {
    state.upgrades.config.as_ref().ok_or_else(disabled)?;
    let mut nodes = vec![match approve(state, release, now) {
        Ok(a) => json!({"node": state.config.node_name, "approved": true, "approval": a}),
        Err(e) => {
            json!({"node": state.config.node_name, "approved": false, "error": {"code": e.code, "message": e.message}})
        }
    }];
    if fleet {
        let body = json!({"now": now});
        let path = format!("{release}/approve");
        let asks = state.config.peers.iter().map(|p| {
            let (body, path) = (&body, &path);
            async move {
                match super::lease::ask_peer(state, p, path, body).await {
                    Ok(()) => json!({"node": p.name, "approved": true}),
                    Err(message) => json!({"node": p.name, "approved": false,
                        "error": {"code": "peer_refused", "message": message}}),
                }
            }
        });
        nodes.extend(futures::future::join_all(asks).await);
    }
    let approved = nodes.iter().filter(|n| n["approved"] == true).count();
    if approved == 0 {
        let first = nodes[0]["error"].clone();
        return Err(PlanError {
            status: 404,
            code: "upgrade_not_pending",
            message: format!(
                "release {release} waits for approval on no node{}",
                first["message"]
                    .as_str()
                    .map_or(String::new(), |m| format!(" ({m})"))
            ),
        });
    }
    Ok(json!({"release": release, "now": now, "approved_nodes": approved, "nodes": nodes}))
}

/// `POST /api/v1/upgrades/{release}/approve`.
pub fn approve(state: &State, release: &str, now: bool) -> Result<Approval, PlanError> {
    let up = &state.upgrades;
    up.config.as_ref().ok_or_else(disabled)?;
    let rec = up.snapshot();
    let pending = rec.pending.as_ref().filter(|p| p.release == release);
    if pending.is_none() {
        return Err(PlanError {
            status: 404,
            code: "upgrade_not_pending",
            message: format!(
                "release {release} is not waiting on this node{}",
                rec.pending.as_ref().map_or_else(
                    || " (nothing is)".to_owned(),
                    |p| format!(" (release {} is)", p.release)
                )
            ),
        });
    }
    let approval = Approval {
        release: release.to_owned(),
        now,
        at_unix: now_unix(),
    };
    up.update(|r| r.approvals.insert(release.to_owned(), approval.clone()))?;
    up.wake_agent();
    Ok(approval)
}

/// `POST /api/v1/upgrades/confirm`: keep the generation running even if its gate fails.
pub fn confirm(state: &State) -> Result<String, PlanError> {
    let up = &state.upgrades;
    up.config.as_ref().ok_or_else(disabled)?;
    let rec = up.snapshot();
    let release = rec
        .active()
        .filter(|a| a.kind == "manual")
        .map(|a| a.release.clone())
        .or_else(|| rec.current.as_ref().map(|c| c.release.clone()))
        .ok_or_else(|| PlanError {
            status: 409,
            code: "upgrade_nothing_to_confirm",
            message: "the agent has not reported which generation runs yet".into(),
        })?;
    up.update(|r| r.confirmed = Some(release.clone()))?;
    Ok(release)
}

/// `POST /api/v1/upgrades/rollback`: the agent goes back to the previous generation.
pub fn request_rollback(state: &State, by: &str) -> Result<(), PlanError> {
    let up = &state.upgrades;
    up.config.as_ref().ok_or_else(disabled)?;
    if let Some(a) = up.snapshot().active() {
        return Err(PlanError {
            status: 409,
            code: "upgrade_in_progress",
            message: format!(
                "attempt {} is in phase {}: it rolls back by itself if its gate fails",
                a.id,
                a.phase.as_str()
            ),
        });
    }
    up.update(|r| r.rollback_requested = Some(by.to_owned()))?;
    up.wake_agent();
    Ok(())
}
