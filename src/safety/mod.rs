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
mod listen;
pub mod repair;
mod report;
pub use report::{DeletesReport, DivergenceReport, PeerReport, Report};
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
    /// Whether a link of this node is down, as the last engine read saw it: the delete
    /// listener holds its subscription only then.
    links_down: tokio::sync::watch::Sender<bool>,
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
            links_down: tokio::sync::watch::Sender::new(false),
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
        let down = (self.linked.iter())
            .any(|n| inner.peers.get(n).is_some_and(|p| p.link_up == Some(false)));
        self.links_down
            .send_if_modified(|d| std::mem::replace(d, down) != down);
    }

    /// The latest atomic-writes choice, for the metrics.
    pub fn atomic_choice(&self) -> Option<atomic::Choice> {
        self.lock().atomic.clone()
    }

    pub(crate) fn set_atomic(&self, choice: atomic::Choice) {
        self.lock().atomic = Some(choice);
    }
}

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
