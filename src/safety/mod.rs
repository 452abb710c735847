//! Replication safety: what KeyDB's multi-master mode hides, measured. Owns the
//! replication canary (lag and staleness per link, `canary`), the clock-skew check
//! (`skew`), the full-sync and link-flap counts, and the choice of the node that takes
//! writes which must be atomic (`atomic`). Each check is a named worker whose state and
//! last error show in `GET /api/v1/safety` and the metrics. It writes nothing but this
//! node's canary key and channel, and knows nothing about HTTP.

pub mod atomic;
mod canary;
pub mod clock;
pub mod deletes;
pub mod diff;
pub mod divergence;
mod histogram;
pub mod repair;
pub mod resync;
mod skew;

use crate::config::{Config, EngineKind};
use crate::engine::{LinkStatus, NodeStatus};
use clock::Clock;
use histogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The canary key of `node`: its value is "SEQ WRITE_UNIX_MICROS".
pub fn canary_key(node: &str) -> String {
    format!("keyfleet:canary:{node}")
}

/// How many of `keys` (canary keys) exist on `engine`, by one MGET.
pub async fn count_canaries(
    engine: &crate::engine::Engine,
    keys: &[String],
) -> Result<u64, crate::engine::EngineError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = engine.mget(&refs).await?;
    Ok(values.iter().filter(|v| v.is_some()).count() as u64)
}

/// The channel every canary write is announced on, as "NODE SEQ WRITE_UNIX_MICROS".
pub const CANARY_CHANNEL: &str = "keyfleet:canary";

/// One worker's state, as the API and metrics show it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub name: &'static str,
    /// "starting", "running", "failing" (its last run failed) or "off".
    pub state: &'static str,
    pub runs: u64,
    pub failures: u64,
    pub last_run_unix: Option<f64>,
    pub last_error: Option<WorkerError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerError {
    pub code: &'static str,
    pub message: String,
    pub at_unix: f64,
}

/// What is known of one peer's link.
#[derive(Debug, Clone, Default)]
struct PeerState {
    /// Lag of the latest canary that arrived, seconds.
    lag: Option<f64>,
    lag_histogram: Histogram,
    /// The newest canary of the peer seen (its write time in the peer's clock, µs),
    /// by subscription or on the local engine.
    newest_write_us: Option<i64>,
    newest_seq: Option<u64>,
    /// The write time of the newest announcement that arrived (the subscription's own
    /// record: the key may be read before its announcement is handled).
    announced_us: Option<i64>,
    /// The peer's clock minus ours, µs, and the round trip it was measured with.
    skew_us: Option<i64>,
    skew_rtt_us: Option<i64>,
    skew_at_unix: Option<f64>,
    skew_error: Option<WorkerError>,
    /// Times the link went from up to down, as this node's poller saw it.
    link_flaps: u64,
    link_up: Option<bool>,
}

/// The shared state of the checks: `Arc<Safety>` in the daemon's state.
pub struct Safety {
    pub clock: Clock,
    node: String,
    enabled: bool,
    /// Peers whose canary should reach this node (every peer for KeyDB; the primary on
    /// a Redis replica; none on a Redis primary).
    inbound: Vec<String>,
    /// Whether this node writes a canary (not a Redis replica, which is read-only).
    writes: bool,
    /// Peers this node holds a replication link with (`fleet::expected_links`): a
    /// delete while one of them is down is tracked.
    linked: Vec<String>,
    /// The local engine as `[safety] reader_user` (or the daemon's user): EXISTS and
    /// DEL of the user's keys, on a connection of its own.
    pub(crate) reader: crate::engine::Engine,
    /// Each peer's engine as the reader user (divergence).
    peer_readers: Vec<(String, crate::engine::Engine)>,
    lag_threshold: f64,
    skew_threshold: f64,
    started_us: i64,
    /// A client of each peer's engine, for `TIME` (the daemon's own engine user).
    peer_engines: Vec<(String, crate::engine::Engine)>,
    inner: Mutex<Inner>,
}

struct Inner {
    peers: BTreeMap<String, PeerState>,
    workers: Vec<WorkerStatus>,
    /// Canary keys present in db 0 at the last read (this node's and its peers').
    canary_keys: u64,
    canary_writes: u64,
    /// The engine's `sync_full` at the last poll.
    full_syncs: Option<u64>,
    atomic: Option<atomic::Choice>,
    /// Keys deleted during a partition (None when the checks are off).
    deletes: Option<deletes::Deletes>,
    /// Since when every expected link has been up, as the poller saw it.
    links_up_since: Option<std::time::Instant>,
    sampler: divergence::Sampler,
    /// The `keyfleet diff` running or last run.
    diff: Option<diff::DiffJob>,
    /// Full syncs served per peer, from the engine log (`resync`).
    full_syncs_by_peer: BTreeMap<String, u64>,
}

impl Safety {
    /// `peer_engines`: a client of each peer's engine, by peer name; `reader`: the local
    /// engine as the reader user.
    pub fn new(
        config: &Config,
        clock: Clock,
        peer_engines: Vec<(String, crate::engine::Engine)>,
        reader: crate::engine::Engine,
        peer_readers: Vec<(String, crate::engine::Engine)>,
    ) -> Safety {
        let is_redis_primary = config.engine.kind == EngineKind::Redis
            && config.engine.primary.as_deref() == Some(config.node_name.as_str());
        let inbound: Vec<String> = if is_redis_primary {
            Vec::new()
        } else {
            crate::fleet::expected_links(config)
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        let writes = config.engine.kind == EngineKind::Keydb || is_redis_primary;
        let linked: Vec<String> = crate::fleet::expected_links(config)
            .into_iter()
            .map(|p| p.name)
            .collect();
        let s = &config.safety;
        let peers = config
            .peers
            .iter()
            .map(|p| (p.name.clone(), PeerState::default()))
            .collect();
        // Which workers run (`spawn` starts exactly these).
        let runs = |name: &str| {
            s.enabled
                && match name {
                    "canary" => writes || !inbound.is_empty(),
                    "canary_listener" => !inbound.is_empty(),
                    "clock_skew" => !config.peers.is_empty(),
                    "delete_listener" | "resurrection_check" => !linked.is_empty(),
                    "divergence" => !config.peers.is_empty() && s.divergence_rate > 0,
                    "resync_log" => !config.peers.is_empty() && config.logs.is_some(),
                    _ => true,
                }
        };
        let workers = [
            "canary",
            "canary_listener",
            "clock_skew",
            "atomic_writes",
            "delete_listener",
            "resurrection_check",
            "divergence",
            "resync_log",
        ]
        .into_iter()
        .map(|name| WorkerStatus {
            name,
            state: if runs(name) { "starting" } else { "off" },
            runs: 0,
            failures: 0,
            last_run_unix: None,
            last_error: None,
        })
        .collect();
        let started_us = clock.now_us();
        let deletes = (s.enabled && !linked.is_empty())
            .then(|| deletes::Deletes::load(&config.state_dir, s.deletes_max as usize));
        if let Some(e) = deletes.as_ref().and_then(|d| d.load_error.as_ref()) {
            tracing::error!(code = "safety_state_corrupt", "{e}");
        }
        Safety {
            clock,
            node: config.node_name.clone(),
            enabled: s.enabled,
            inbound,
            writes,
            linked,
            reader,
            peer_readers,
            lag_threshold: s.lag_threshold.as_secs_f64(),
            skew_threshold: s.skew_threshold.as_secs_f64(),
            started_us,
            peer_engines,
            inner: Mutex::new(Inner {
                peers,
                workers,
                canary_keys: 0,
                canary_writes: 0,
                full_syncs: None,
                atomic: None,
                deletes,
                links_up_since: None,
                sampler: divergence::Sampler::default(),
                diff: None,
                full_syncs_by_peer: BTreeMap::new(),
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one run of worker `name`: `Ok` or its error (code, message). Until
    /// `answered` (the engine it needs has answered once), a failure is the daemon
    /// starting before its engine: the worker stays "starting" and nothing is logged.
    fn record_run(&self, name: &str, answered: bool, result: Result<(), (&'static str, String)>) {
        let now = self.clock.now_unix();
        let mut inner = self.lock();
        let Some(w) = inner.workers.iter_mut().find(|w| w.name == name) else {
            return;
        };
        if result.is_err() && !answered && w.state == "starting" {
            return;
        }
        w.runs += 1;
        w.last_run_unix = Some(now);
        match result {
            Ok(()) => w.state = "running",
            Err((code, message)) => {
                if w.state != "failing" {
                    tracing::warn!(worker = name, code, "{message}");
                }
                w.state = "failing";
                w.failures += 1;
                w.last_error = Some(WorkerError {
                    code,
                    message,
                    at_unix: now,
                });
            }
        }
    }

    /// The canary age of `peer` in seconds now: since its newest canary seen here was
    /// written (corrected by the measured skew), or, when none has ever been seen, since
    /// the checks started (a lower bound).
    fn age_of(&self, p: &PeerState, now_us: i64) -> f64 {
        let written_here = match p.newest_write_us {
            Some(w) => w - p.skew_us.unwrap_or(0),
            None => self.started_us,
        };
        ((now_us - written_here).max(0)) as f64 / 1e6
    }

    /// Fills in each link's lag, canary age and skew, and leaves the canary keys out of
    /// the node's key figures.
    pub fn annotate(&self, status: &mut NodeStatus) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now_us();
        let inner = self.lock();
        if status.up {
            status.exclude_canary_keys(inner.canary_keys);
        }
        for link in &mut status.links {
            let Some(p) = inner.peers.get(&link.peer) else {
                continue;
            };
            if self.inbound.contains(&link.peer) {
                link.safety.lag_seconds = p.lag;
                link.safety.canary_age_seconds = Some(self.age_of(p, now));
            }
            link.safety.clock_skew_seconds = p.skew_us.map(|s| s as f64 / 1e6);
        }
    }

    /// A fresh read of the engine (the poller's, or a request's) saw the node's links and
    /// its `sync_full`: counts link flaps and notes since when every link is up.
    pub fn observe(&self, status: &NodeStatus, full_syncs: Option<u64>) {
        let mut inner = self.lock();
        if full_syncs.is_some() {
            inner.full_syncs = full_syncs;
        }
        let all_up = status.up
            && self.linked.iter().all(|name| {
                status
                    .links
                    .iter()
                    .any(|l| &l.peer == name && l.status == LinkStatus::Up)
            });
        if !all_up {
            inner.links_up_since = None;
        } else if inner.links_up_since.is_none() {
            inner.links_up_since = Some(std::time::Instant::now());
        }
        if !status.up {
            return;
        }
        for link in &status.links {
            if let Some(p) = inner.peers.get_mut(&link.peer) {
                let up = link.status == LinkStatus::Up;
                if p.link_up == Some(true) && !up {
                    p.link_flaps += 1;
                }
                p.link_up = Some(up);
            }
        }
    }

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

    /// The latest atomic-writes choice, for the metrics.
    pub fn atomic_choice(&self) -> Option<atomic::Choice> {
        self.lock().atomic.clone()
    }

    pub(crate) fn set_atomic(&self, choice: atomic::Choice) {
        self.lock().atomic = Some(choice);
    }

    /// Raw figures for the metrics renderer.
    pub fn figures(&self) -> Figures {
        let now = self.clock.now_us();
        let inner = self.lock();
        Figures {
            enabled: self.enabled,
            lag_threshold: self.lag_threshold,
            skew_threshold: self.skew_threshold,
            canary_writes: inner.canary_writes,
            canary_keys: inner.canary_keys,
            full_syncs: inner.full_syncs,
            full_syncs_by_peer: inner.full_syncs_by_peer.clone(),
            divergent: inner.sampler.divergent.len() as u64,
            sampled: inner.sampler.sampled_total,
            deletes: inner.deletes.as_ref().map(|d| {
                (
                    d.tracker.tracked.len() as u64,
                    d.tracker.untracked,
                    d.tracker.resurrected_total,
                )
            }),
            peers: inner
                .peers
                .iter()
                .map(|(name, p)| {
                    let inbound = self.inbound.contains(name);
                    PeerFigures {
                        peer: name.clone(),
                        lag: p.lag.filter(|_| inbound),
                        histogram: inbound.then(|| p.lag_histogram.clone()),
                        age: inbound.then(|| self.age_of(p, now)),
                        skew: p.skew_us.map(|s| s as f64 / 1e6),
                        link_flaps: p.link_flaps,
                    }
                })
                .collect(),
            workers: inner
                .workers
                .iter()
                .map(|w| (w.name, w.state, w.failures))
                .collect(),
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
}

/// What `metrics` renders.
pub struct Figures {
    pub enabled: bool,
    pub lag_threshold: f64,
    pub skew_threshold: f64,
    pub canary_writes: u64,
    pub canary_keys: u64,
    pub full_syncs: Option<u64>,
    /// (tracked, untracked, resurrected total).
    pub deletes: Option<(u64, u64, u64)>,
    pub full_syncs_by_peer: BTreeMap<String, u64>,
    pub divergent: u64,
    pub sampled: u64,
    pub peers: Vec<PeerFigures>,
    pub workers: Vec<(&'static str, &'static str, u64)>,
}

pub struct PeerFigures {
    pub peer: String,
    pub lag: Option<f64>,
    pub histogram: Option<Histogram>,
    pub age: Option<f64>,
    pub skew: Option<f64>,
    pub link_flaps: u64,
}

pub use histogram::BUCKETS as LAG_BUCKETS;
pub use histogram::Histogram as LagHistogram;

/// Starts every worker; they stop when `stop` turns true.
pub fn spawn(
    state: std::sync::Arc<crate::daemon::State>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let off = |name: &str| {
        state
            .safety
            .lock()
            .workers
            .iter()
            .any(|w| w.name == name && w.state == "off")
    };
    if !off("canary") {
        tokio::spawn(canary::run(state.clone(), stop.clone()));
    }
    if !off("canary_listener") {
        tokio::spawn(canary::listen(state.clone(), stop.clone()));
    }
    if !off("clock_skew") {
        tokio::spawn(skew::run(state.clone(), stop.clone()));
    }
    if !off("delete_listener") {
        tokio::spawn(deletes::listen(state.clone(), stop.clone()));
        tokio::spawn(deletes::check(state.clone(), stop.clone()));
    }
    if !off("divergence") {
        tokio::spawn(divergence::run(state.clone(), stop.clone()));
    }
    if !off("resync_log") {
        tokio::spawn(resync::run(state.clone(), stop.clone()));
    }
    if !off("atomic_writes") {
        tokio::spawn(atomic::run(state, stop));
    }
}

#[cfg(test)]
mod tests;
