//! One node at a time: the fleet's upgrade lease. A node that wants to change takes it
//! from itself and from every peer; a peer grants it only while it holds no other
//! node's lease, is not upgrading itself and is healthy. A lease expires unless its
//! holder renews it, so a holder that dies frees the fleet after `lease_ttl`. A peer
//! that cannot be asked refuses by silence: the upgrade waits.

use super::record::Lease;
use super::wire::{LeaseRelease, LeaseRequest};
use super::{Upgrades, now_unix};
use crate::config::Peer;
use crate::daemon::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Why a lease was refused, for the API (409) and the planner's reason.
#[derive(Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// What a peer tells others about its upgrades (`GET /api/v1/upgrades/peer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSummary {
    pub node: String,
    pub healthy: bool,
    pub problems: Vec<String>,
    pub state: String,
    pub current_release: Option<String>,
    pub failed_releases: Vec<String>,
    pub lease: Option<Lease>,
}

pub async fn summary(state: &State) -> PeerSummary {
    let node = crate::fleet::local_node(state).await;
    let problems = node.problems();
    let rec = state.upgrades.snapshot();
    PeerSummary {
        node: state.config.node_name.clone(),
        healthy: problems.is_empty(),
        problems,
        state: Upgrades::state_name(&rec).to_owned(),
        current_release: rec.current.as_ref().map(|c| c.release.clone()),
        failed_releases: rec.failed.iter().map(|f| f.release.clone()).collect(),
        lease: rec.live_lease(now_unix()).cloned(),
    }
}

/// A peer asks for the lease (or renews the one it holds).
pub async fn grant(state: &State, req: &LeaseRequest) -> Result<Lease, Refusal> {
    let now = now_unix();
    let up = &state.upgrades;
    let rec = up.snapshot();
    if let Some(l) = rec.live_lease(now)
        && l.holder != req.holder
    {
        return Err(Refusal {
            code: "lease_held",
            message: format!(
                "{} holds the upgrade lease (release {}) for {} s more",
                l.holder,
                l.release,
                l.expires_at_unix - now
            ),
        });
    }
    if req.holder != state.config.node_name
        && let Some(a) = rec.active()
    {
        return Err(Refusal {
            code: "node_upgrading",
            message: format!(
                "{} is upgrading itself (attempt {}, {})",
                state.config.node_name,
                a.id,
                a.phase.as_str()
            ),
        });
    }
    // A renewal by the holder is granted whatever the health: its gate judges that.
    let renewing = rec.live_lease(now).is_some_and(|l| l.holder == req.holder);
    if !renewing {
        let problems = crate::fleet::local_node(state).await.problems();
        if !problems.is_empty() {
            return Err(Refusal {
                code: "node_unhealthy",
                message: format!(
                    "{} is not healthy: {}",
                    state.config.node_name,
                    problems.join("; ")
                ),
            });
        }
    }
    let lease = Lease {
        holder: req.holder.clone(),
        release: req.release.clone(),
        expires_at_unix: now + req.ttl_seconds.clamp(1, 86_400) as i64,
    };
    up.update(|r| r.lease = Some(lease.clone()))
        .map_err(|e| Refusal {
            code: "upgrade_record_unwritable",
            message: e.0,
        })?;
    Ok(lease)
}

/// The holder gives the lease back.
pub fn release(state: &State, req: &LeaseRelease) -> Result<bool, Refusal> {
    state
        .upgrades
        .update(|r| match &r.lease {
            Some(l) if l.holder == req.holder => {
                r.lease = None;
                true
            }
            _ => false,
        })
        .map_err(|e| Refusal {
            code: "upgrade_record_unwritable",
            message: e.0,
        })
}

/// Takes the lease from this node and every peer for `release`; on any refusal gives
/// back what it got and says who refused and why.
pub async fn acquire(state: &State, release_name: &str) -> Result<(), String> {
    let ttl = ttl(state);
    let req = LeaseRequest {
        holder: state.config.node_name.clone(),
        release: release_name.to_owned(),
        ttl_seconds: ttl,
    };
    grant(state, &req)
        .await
        .map_err(|r| format!("this node: {}", r.message))?;
    let answers = futures::future::join_all(
        state
            .config
            .peers
            .iter()
            .map(|p| ask_peer(state, p, "lease", &req)),
    )
    .await;
    let refused: Vec<String> = answers.into_iter().filter_map(Result::err).collect();
    if refused.is_empty() {
        return Ok(());
    }
    give_back(state).await;
    Err(refused.join("; "))
}

/// Renews the lease everywhere (while an attempt runs).
pub async fn renew(state: &State) {
    let Some(active) = state.upgrades.snapshot().active().cloned() else {
        return;
    };
    let req = LeaseRequest {
        holder: state.config.node_name.clone(),
        release: active.release.clone(),
        ttl_seconds: ttl(state),
    };
    if let Err(r) = grant(state, &req).await {
        tracing::warn!("cannot renew this node's own upgrade lease: {}", r.message);
    }
    for p in &state.config.peers {
        if let Err(e) = ask_peer(state, p, "lease", &req).await {
            tracing::warn!("cannot renew the upgrade lease: {e}");
        }
    }
}

/// Gives the lease back here and at every peer (best effort: it expires anyway).
pub async fn give_back(state: &State) {
    let req = LeaseRelease {
        holder: state.config.node_name.clone(),
    };
    let _ = release(state, &req);
    futures::future::join_all(
        state
            .config
            .peers
            .iter()
            .map(|p| ask_peer(state, p, "lease/release", &req)),
    )
    .await;
}

fn ttl(state: &State) -> u64 {
    state
        .upgrades
        .config
        .as_ref()
        .map_or(120, |c| c.lease_ttl.as_secs())
}

/// POSTs `body` to a peer's `/api/v1/upgrades/{path}`; Err says who refused and why.
pub(super) async fn ask_peer<T: Serialize>(
    state: &State,
    peer: &Peer,
    path: &str,
    body: &T,
) -> Result<(), String> {
    let url = format!("{}/api/v1/upgrades/{path}", peer.api_url());
    let body = serde_json::to_vec(body).expect("json").into();
    let call = crate::http_client::post_json(&url, state.token.as_deref(), body, &[]);
    let resp = tokio::time::timeout(state.config.fleet.peer_timeout * 3, call)
        .await
        .map_err(|_| format!("{}: no answer from {url}", peer.name))?
        .map_err(|e| {
            format!(
                "{}: cannot be asked: {}",
                peer.name,
                crate::http_client::error_chain(&e)
            )
        })?;
    if resp.status == 200 {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    Err(format!(
        "{} refused ({}): {}",
        peer.name,
        v["error"]["code"].as_str().unwrap_or("http_error"),
        v["error"]["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", resp.status), str::to_owned)
    ))
}

/// Asks every peer for its summary; a peer that does not answer is an Err with why.
pub async fn peer_summaries(state: &State) -> Vec<(String, Result<PeerSummary, String>)> {
    let timeout = state.config.fleet.peer_timeout * 3;
    futures::future::join_all(state.config.peers.iter().map(|p| async move {
        let url = format!("{}/api/v1/upgrades/peer", p.api_url());
        let r = match tokio::time::timeout(
            timeout,
            crate::http_client::get(&url, state.token.as_deref()),
        )
        .await
        {
            Err(_) => Err(format!("no answer from {url} within {timeout:?}")),
            Ok(Err(e)) => Err(crate::http_client::error_chain(&e)),
            Ok(Ok(resp)) if resp.status != 200 => {
                Err(format!("{url} answered HTTP {}", resp.status))
            }
            Ok(Ok(resp)) => serde_json::from_slice(&resp.body)
                .map_err(|e| format!("{url}: not an upgrade summary: {e}")),
        };
        (p.name.clone(), r)
    }))
    .await
}

/// How often the holder renews: a quarter of the lease's life.
pub fn renew_every(state: &State) -> Duration {
    Duration::from_secs((ttl(state) / 4).max(1))
}

/// The daemon's worker that keeps the lease alive at every peer while an attempt of
/// this node runs (a restarted daemon picks it up from the record).
pub async fn renew_loop(
    state: std::sync::Arc<State>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if state.upgrades.config.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(renew_every(&state));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        renew(&state).await;
    }
}
