//! One node's typed status, built from its parsed INFO and the peers it should be linked
//! with: the body of `GET /api/v1/node` and the input of readiness and metrics. It covers
//! KeyDB active-replica multi-master and Redis primary/replica. It never talks to the
//! engine or to peers, and knows nothing about HTTP.

use super::info::Info;
use super::links::{master_links, replica_links};
use crate::config::EngineKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// A peer this node should have a replication link with, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRef {
    pub name: String,
    pub host: String,
    /// The peer's engine port, which it announces when it replicates from this node.
    pub engine_port: u16,
    /// Where this node's engine dials the peer to replicate from it (`replication_port()`).
    pub replication_port: u16,
}

impl From<&crate::config::Peer> for PeerRef {
    fn from(peer: &crate::config::Peer) -> Self {
        PeerRef {
            name: peer.name.clone(),
            host: peer.address.clone(),
            engine_port: peer.engine_port,
            replication_port: peer.replication_port(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    Up,
    Down,
}

/// One replication link of this node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerLink {
    /// The configured peer's name, or "host:port" for a link to an unconfigured address.
    pub peer: String,
    pub host: String,
    pub port: u16,
    pub status: LinkStatus,
    /// Seconds since the engine last heard from this peer; null while the link is down.
    pub last_io_seconds: Option<u64>,
    /// Seconds the link has been down; null while up or when the engine does not know.
    pub down_since_seconds: Option<u64>,
    /// Why the link is in this state, when the numbers alone do not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// What the replication-safety checks measured on this link (`crate::safety`).
    #[serde(flatten)]
    pub safety: LinkSafety,
}

/// The replication-safety figures of one link, filled in by `safety` (absent when the
/// checks are off or have not measured yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkSafety {
    /// Seconds from the peer's latest canary write until it arrived here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Seconds since the newest canary of the peer visible here was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_age_seconds: Option<f64>,
    /// The peer engine's clock minus this node's, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<f64>,
}

/// The answer of `GET /api/v1/node`. Figures are null when the engine is down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// "keydb" or "redis".
    pub engine: &'static str,
    pub version: Option<String>,
    pub up: bool,
    /// "active-replica", "master" or "replica".
    pub role: Option<String>,
    pub uptime_seconds: Option<u64>,
    pub connected_clients: Option<u64>,
    pub used_memory_bytes: Option<u64>,
    pub maxmemory_bytes: Option<u64>,
    pub keys: Option<u64>,
    pub keys_per_db: BTreeMap<u32, u64>,
    pub ops_per_sec: Option<u64>,
    /// KeyDB only: "up" when every master link is up.
    pub master_global_link_status: Option<String>,
    /// KeyDB only: masters with a live link.
    pub connected_masters: Option<u64>,
    pub links: Vec<PeerLink>,
    /// Replication canary keys (`keyfleet:canary:*`) in db 0, which `keys` and
    /// `keys_per_db` leave out: they are keyfleet's, not the user's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_keys: Option<u64>,
    /// RFC 3339, UTC.
    pub checked_at: String,
    pub checked_at_unix: f64,
    /// Why the engine is down, as in a fleet entry: a stable code and a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
}

/// Why a node's engine did not answer: `code` is an `EngineError` code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeError {
    pub code: &'static str,
    pub message: String,
}

const ENGINE_DOWN: &str = "the local engine is unreachable";

impl NodeStatus {
    /// Builds the status from one INFO reply. `peers` are the nodes this one should be
    /// linked with: every peer for KeyDB multi-master; for Redis, the primary on a replica
    /// and the replicas on the primary.
    pub fn from_info(
        name: &str,
        configured: EngineKind,
        info: &Info,
        peers: &[PeerRef],
        checked_at: SystemTime,
    ) -> NodeStatus {
        let role = info.get("role").map(|role| match role {
            "slave" => "replica".to_owned(),
            other => other.to_owned(),
        });
        let keys_per_db: BTreeMap<u32, u64> = info.dbs().map(|d| (d.db, d.keys)).collect();
        let links = match role.as_deref() {
            Some("master") => replica_links(info, peers),
            _ => master_links(info, peers),
        };
        NodeStatus {
            name: name.to_owned(),
            engine: detect_engine(info, configured).as_str(),
            version: info.get("redis_version").map(str::to_owned),
            up: true,
            role,
            uptime_seconds: info.get_u64("uptime_in_seconds"),
            connected_clients: info.get_u64("connected_clients"),
            used_memory_bytes: info.get_u64("used_memory"),
            maxmemory_bytes: info.get_u64("maxmemory"),
            keys: Some(keys_per_db.values().sum()),
            keys_per_db,
            ops_per_sec: info.get_u64("instantaneous_ops_per_sec"),
            master_global_link_status: info.get("master_global_link_status").map(str::to_owned),
            connected_masters: info.get_u64("connected_masters"),
            links,
            canary_keys: None,
            checked_at: rfc3339(checked_at),
            checked_at_unix: unix_seconds(checked_at),
            error: None,
        }
    }

    /// The status of a node whose engine did not answer: every link is listed down.
    pub fn down(
        name: &str,
        configured: EngineKind,
        error: NodeError,
        peers: &[PeerRef],
        checked_at: SystemTime,
    ) -> NodeStatus {
        let links = peers
            .iter()
            .map(|p| PeerLink {
                peer: p.name.clone(),
                host: p.host.clone(),
                port: p.replication_port,
                status: LinkStatus::Down,
                last_io_seconds: None,
                down_since_seconds: None,
                reason: Some(ENGINE_DOWN),
                safety: LinkSafety::default(),
            })
            .collect();
        NodeStatus {
            name: name.to_owned(),
            engine: configured.as_str(),
            version: None,
            up: false,
            role: None,
            uptime_seconds: None,
            connected_clients: None,
            used_memory_bytes: None,
            maxmemory_bytes: None,
            keys: None,
            keys_per_db: BTreeMap::new(),
            ops_per_sec: None,
            master_global_link_status: None,
            connected_masters: None,
            links,
            canary_keys: None,
            checked_at: rfc3339(checked_at),
            checked_at_unix: unix_seconds(checked_at),
            error: Some(error),
        }
    }

    /// What keeps this node from being ready, one line each; empty when ready.
    /// Leaves `canary` keys of db 0 (keyfleet's replication canaries) out of the key
    /// figures and records how many there were.
    pub fn exclude_canary_keys(&mut self, canary: u64) {
        if let Some(db0) = self.keys_per_db.get_mut(&0) {
            let n = canary.min(*db0);
            *db0 -= n;
            self.keys = self.keys.map(|k| k - n);
            self.canary_keys = Some(n);
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.up {
            match &self.error {
                Some(e) => problems.push(format!("engine is down: {}: {}", e.code, e.message)),
                None => problems.push("engine is down".into()),
            }
            return problems;
        }
        for link in self.links.iter().filter(|l| l.status == LinkStatus::Down) {
            let why = link.reason.unwrap_or("link down");
            problems.push(format!(
                "link with {} ({}:{}) is down: {why}",
                link.peer, link.host, link.port
            ));
        }
        problems
    }
}

/// KeyDB's INFO has a `# KeyDB` section and KeyDB-only fields; Redis's has neither.
fn detect_engine(info: &Info, configured: EngineKind) -> EngineKind {
    let keydb = info.section("KeyDB").next().is_some()
        || info.get("mvcc_depth").is_some()
        || info.get("role") == Some("active-replica");
    if keydb {
        EngineKind::Keydb
    } else if info.get("redis_version").is_some() && info.get("storage_provider").is_none() {
        EngineKind::Redis
    } else {
        configured
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-11-22T19:40:05.123Z`: UTC with milliseconds, from the civil-from-days algorithm
/// (Howard Hinnant's), so no date crate is needed for one timestamp.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
