//! The node and fleet views: this node's status from its engine, every peer's from its
//! daemon (asked concurrently, each bounded by `fleet.peer_timeout`), and the fleet's
//! health. A peer that does not answer is listed down with an error code, never dropped
//! and never waited on past its timeout. Knows nothing about HTTP routing.

use crate::config::{Config, EngineKind, Peer};
use crate::daemon::State;
use crate::engine::info::Info;
use crate::engine::status::{NodeError, NodeStatus, PeerRef};
use serde::Serialize;
use serde_json::{Value, json};
use std::time::{Instant, SystemTime};

#[path = "fleet_shared.rs"]
mod shared;
pub use shared::Coalesced;

/// The peers this node should hold a replication link with: all of them for KeyDB
/// multi-master; for Redis, the primary on a replica, every replica on the primary.
pub fn expected_links(config: &Config) -> Vec<PeerRef> {
    match (config.engine.kind, config.engine.primary.as_deref()) {
        (EngineKind::Redis, Some(primary)) if primary != config.node_name => config
            .peers
            .iter()
            .filter(|p| p.name == primary)
            .map(PeerRef::from)
            .collect(),
        _ => config.peers.iter().map(PeerRef::from).collect(),
    }
}

/// Reads the local engine once; the `Info` is returned too, for `/metrics`.
pub async fn read_local(state: &State) -> (NodeStatus, Option<Info>) {
    let c = &state.config;
    let peers = expected_links(c);
    let started = Instant::now();
    let result = state.engine.info().await;
    state.metrics.observe_info_duration(started.elapsed());
    match result {
        Ok(info) => {
            if let (crate::daemon::Logs::On(shipper), Some(pid)) =
                (&state.logs, info.get_u64("process_id"))
            {
                shipper.set_engine_pid(u32::try_from(pid).unwrap_or(0));
            }
            let mut status = NodeStatus::from_info(
                &c.node_name,
                c.engine.kind,
                &info,
                &peers,
                SystemTime::now(),
            );
            state.safety.observe(&status, info.get_u64("sync_full"));
            state.safety.annotate(&mut status);
            (status, Some(info))
        }
        Err(e) => {
            // Before the engine has first answered, the daemon is only early (both start
            // together); STATUS= says it is waiting instead (see `summary_line`).
            if state.engine.has_answered() {
                state.metrics.record_error(e.code());
            }
            let error = NodeError {
                code: e.code(),
                message: e.to_string(),
            };
            let status = NodeStatus::down(
                &c.node_name,
                c.engine.kind,
                error,
                &peers,
                SystemTime::now(),
            );
            state.safety.observe(&status, None);
            (status, None)
        }
    }
}

pub async fn local_node(state: &State) -> NodeStatus {
    read_local(state).await.0
}

/// One line for systemd's STATUS= and the log. `engine_answered`: whether the engine
/// has ever answered; until then a down engine is awaited, not failed.
pub fn summary_line(node: &NodeStatus, reasons: &[String], engine_answered: bool) -> String {
    if !node.up && !engine_answered {
        let why = node.error.as_ref().map_or("", |e| e.code);
        format!("starting: waiting for the engine to answer ({why})")
    } else if reasons.is_empty() {
        let up = node.links.len();
        format!(
            "ready: {} {}, {up}/{up} links up, {} keys",
            node.engine,
            node.role.as_deref().unwrap_or("?"),
            node.keys.unwrap_or(0)
        )
    } else {
        format!("not ready: {}", reasons.join("; "))
    }
}

#[derive(Serialize)]
pub struct FleetView {
    pub healthy: bool,
    /// Where writes that must be atomic go (`safety::atomic`); null when no node is fit.
    pub atomic_writes_node: Option<String>,
    pub nodes: Vec<Value>,
}

/// This node and every peer, asked concurrently.
pub async fn fleet(state: &State) -> FleetView {
    let local =
        async { serde_json::to_value(local_node(state).await).expect("node status is JSON") };
    let peers = futures::future::join_all(state.config.peers.iter().map(|p| peer_node(state, p)));
    let (local, peers) = tokio::join!(local, peers);
    let mut nodes = vec![local];
    nodes.extend(peers);
    let healthy = nodes.iter().all(node_healthy);
    let atomic = crate::safety::atomic::decide(state, &nodes);
    FleetView {
        healthy,
        atomic_writes_node: atomic.node,
        nodes,
    }
}

fn node_healthy(n: &Value) -> bool {
    n["up"] == true
        && n["links"]
            .as_array()
            .is_some_and(|links| links.iter().all(|l| l["status"] == "up"))
}

/// Asks one peer's daemon for its node status; failures become a down entry. The
/// whole exchange, body included, is bounded by `fleet.peer_timeout`.
pub async fn peer_node(state: &State, peer: &Peer) -> Value {
    let timeout = state.config.fleet.peer_timeout;
    let url = format!("{}/api/v1/node", peer.api_url());
    let result = match tokio::time::timeout(timeout, ask_peer(state, peer, &url)).await {
        Ok(r) => r,
        Err(_) => Err((
            "peer_timeout",
            format!("{url}: no answer within {timeout:?}"),
        )),
    };
    result.unwrap_or_else(|(code, message)| {
        state.metrics.record_error(code);
        json!({
            "name": peer.name,
            "up": false,
            "api_url": peer.api_url(),
            "error": {"code": code, "message": message},
        })
    })
}

async fn ask_peer(state: &State, peer: &Peer, url: &str) -> Result<Value, (&'static str, String)> {
    let resp = crate::http_client::get(url, state.token.as_deref())
        .await
        .map_err(|e| {
            (
                "peer_unreachable",
                format!("{url}: {}", crate::http_client::error_chain(&e)),
            )
        })?;
    if resp.status == 401 {
        return Err((
            "peer_unauthorized",
            format!("{url}: the peer refused this fleet's token"),
        ));
    }
    if resp.status != 200 {
        return Err((
            "peer_bad_status",
            format!("{url}: answered HTTP {}", resp.status),
        ));
    }
    let v: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        (
            "peer_bad_response",
            format!("{url}: not a node status: {e}"),
        )
    })?;
    if v["name"] != peer.name.as_str() {
        return Err((
            "peer_wrong_node",
            format!(
                "{url}: answers as node {}, configured as {}",
                v["name"], peer.name
            ),
        ));
    }
    Ok(v)
}

/// The Prometheus exposition for one scrape, from a fresh read of the engine.
pub async fn metrics_text(state: &State) -> String {
    let (status, info) = read_local(state).await;
    let logs = match &state.logs {
        crate::daemon::Logs::On(shipper) => Some(shipper.status()),
        _ => None,
    };
    state.metrics.render_with(
        &status,
        info.as_ref(),
        logs.as_ref(),
        Some(&state.safety),
        Some(&state.upgrades),
    )
}
