//! What the checks show: the report of `GET /api/v1/safety` and the figures the
//! metrics render, read from the checks' shared state in one lock each.

use super::histogram::Histogram;
use super::{Safety, WorkerError, WorkerStatus, canary_key, deletes, divergence};
use serde::Serialize;
use std::collections::BTreeMap;

impl Safety {
    /// The whole picture, for `GET /api/v1/safety`.
    pub fn report(&self) -> Report {
        let now = self.clock.now_us();
        let inner = self.lock();
        let peers = inner
            .peers
            .iter()
            .map(|(name, p)| {
                let inbound = self.inbound.contains(name);
                PeerReport {
                    peer: name.clone(),
                    canary_expected: inbound,
                    lag_seconds: p.lag.filter(|_| inbound),
                    lag_p50_seconds: p.lag_histogram.quantile(0.5),
                    lag_p99_seconds: p.lag_histogram.quantile(0.99),
                    lag_samples: p.lag_histogram.count(),
                    canary_age_seconds: inbound.then(|| self.age_of(p, now)),
                    canary_seq: p.newest_seq,
                    clock_skew_seconds: p.skew_us.map(|s| s as f64 / 1e6),
                    clock_skew_rtt_seconds: p.skew_rtt_us.map(|s| s as f64 / 1e6),
                    clock_skew_checked_at_unix: p.skew_at_unix,
                    clock_skew_error: p.skew_error.clone(),
                    link_flaps: p.link_flaps,
                    lag_histogram: inbound.then(|| p.lag_histogram.clone()),
                }
            })
            .collect();
        Report {
            enabled: self.enabled,
            node: self.node.clone(),
            writes_canary: self.writes && self.enabled,
            canary_key: canary_key(&self.node),
            canary_keys: inner.canary_keys,
            canary_writes: inner.canary_writes,
            lag_threshold_seconds: self.lag_threshold,
            skew_threshold_seconds: self.skew_threshold,
            full_syncs: inner.full_syncs,
            full_syncs_by_peer: inner.full_syncs_by_peer.clone(),
            atomic_writes_node: inner.atomic.as_ref().and_then(|a| a.node.clone()),
            deletes: inner.deletes.as_ref().map(|d| DeletesReport {
                tracked: d.tracker.tracked.len() as u64,
                untracked: d.tracker.untracked,
                resurrected_total: d.tracker.resurrected_total,
                stayed_deleted_total: d.tracker.stayed_deleted_total,
                rewritten_here_total: d.tracker.rewritten_here_total,
                resurrected: d.tracker.resurrected.iter().cloned().collect(),
                load_error: d.load_error.clone(),
                listening: *self.links_down.borrow(),
            }),
            divergence: DivergenceReport {
                divergent_keys: inner.sampler.divergent.len() as u64,
                overflow: inner.sampler.overflow,
                sampled_total: inner.sampler.sampled_total,
                pending: inner.sampler.pending.len() as u64,
                examples: inner.sampler.divergent.values().take(20).cloned().collect(),
            },
            peers,
            workers: inner.workers.clone(),
        }
    }
}

/// `GET /api/v1/safety`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub enabled: bool,
    pub node: String,
    pub writes_canary: bool,
    pub canary_key: String,
    /// Canary keys present in db 0 (left out of the node's `keys`).
    pub canary_keys: u64,
    pub canary_writes: u64,
    pub lag_threshold_seconds: f64,
    pub skew_threshold_seconds: f64,
    /// The engine's `sync_full`: full syncs it has served since it started.
    pub full_syncs: Option<u64>,
    /// Full syncs served per peer since the daemon started, from the engine log (with
    /// `[logs]`; a name that is no configured peer as "host:port").
    pub full_syncs_by_peer: BTreeMap<String, u64>,
    /// This daemon's latest choice (`GET /api/v1/fleet` decides afresh).
    pub atomic_writes_node: Option<String>,
    /// Keys deleted here during a partition, and those that came back (null when this
    /// node has no link to watch, or the checks are off).
    pub deletes: Option<DeletesReport>,
    pub divergence: DivergenceReport,
    pub peers: Vec<PeerReport>,
    pub workers: Vec<WorkerStatus>,
}

#[derive(Debug, Serialize)]
pub struct DivergenceReport {
    /// Keys whose copies still differed between nodes after the re-check.
    pub divergent_keys: u64,
    /// Divergent keys not kept (the set holds 1000).
    pub overflow: u64,
    /// Keys the sampler has read since the daemon started.
    pub sampled_total: u64,
    /// Keys that differed once, waiting for their re-check.
    pub pending: u64,
    /// Up to 20 divergent keys with every node's copy.
    pub examples: Vec<divergence::Divergent>,
}

#[derive(Debug, Serialize)]
pub struct DeletesReport {
    /// Deleted or expired while a link was down, not yet checked.
    pub tracked: u64,
    /// Not kept (the set was full, or the key is not UTF-8 text).
    pub untracked: u64,
    pub resurrected_total: u64,
    pub stayed_deleted_total: u64,
    /// Tracked keys written again on this side during the partition (not resurrected).
    pub rewritten_here_total: u64,
    /// The newest resurrected keys (at most 1000), until repaired.
    pub resurrected: Vec<deletes::Resurrected>,
    /// The state file was corrupt at start (moved aside).
    pub load_error: Option<String>,
    /// Whether a link of this node is down, so the delete listener holds (or is
    /// opening) its subscription; with every link up it holds none.
    pub listening: bool,
}

#[derive(Debug, Serialize)]
pub struct PeerReport {
    pub peer: String,
    /// Whether the peer's canary should reach this node.
    pub canary_expected: bool,
    pub lag_seconds: Option<f64>,
    pub lag_p50_seconds: Option<f64>,
    pub lag_p99_seconds: Option<f64>,
    pub lag_samples: u64,
    pub canary_age_seconds: Option<f64>,
    pub canary_seq: Option<u64>,
    pub clock_skew_seconds: Option<f64>,
    pub clock_skew_rtt_seconds: Option<f64>,
    pub clock_skew_checked_at_unix: Option<f64>,
    pub clock_skew_error: Option<WorkerError>,
    pub link_flaps: u64,
    /// Every lag since the daemon started, for the metrics' histogram.
    #[serde(skip)]
    pub lag_histogram: Option<Histogram>,
}
