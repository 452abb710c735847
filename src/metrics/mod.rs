//! Prometheus exposition for `GET /metrics`: the registry of keyfleet's own figures and
//! the renderer of one scrape. Every metric is declared here or in `redis` (the
//! redis_exporter-compatible subset) with its help text. The registry is owned by the
//! application state, never a global; it only counts and formats, and never talks to
//! the engine.

mod backup;
pub mod http;
mod logship;
mod redis;
mod safety;
mod text;
mod upgrade;

use crate::engine::{Info, LinkStatus, NodeStatus};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use text::{Exposition, Family};

const BUILD_INFO: Family = Family::gauge(
    "keyfleet_build_info",
    "The keyfleet version serving these metrics.",
);
const NODE_INFO: Family = Family::gauge("keyfleet_node_info", "This node's name and engine kind.");
const POLLS: Family = Family::counter(
    "keyfleet_polls_total",
    "INFO reads of the local engine, failed ones included.",
);
const INFO_SECONDS: Family = Family::gauge(
    "keyfleet_engine_info_duration_seconds",
    "Seconds the latest INFO poll of the engine took.",
);
const CHECKED_AT: Family = Family::gauge(
    "keyfleet_last_check_timestamp_seconds",
    "Unix time of the status these metrics describe.",
);
const ERRORS: Family = Family::counter("keyfleet_errors_total", "Errors by stable error code.");
const GLOBAL_LINK: Family = Family::gauge(
    "keyfleet_master_global_link_up",
    "KeyDB: 1 when every master link of this node is up.",
);
const CONNECTED_MASTERS: Family = Family::gauge(
    "keyfleet_connected_masters",
    "KeyDB: masters this node has a live link with.",
);
const PEER_UP: Family = Family::gauge(
    "keyfleet_peer_link_up",
    "1 when the replication link with this peer is up.",
);
const PEER_DOWN: Family = Family::gauge(
    "keyfleet_peer_link_down_seconds",
    "Seconds the link with this peer has been down, when known.",
);
const PEER_IO: Family = Family::gauge(
    "keyfleet_peer_last_io_seconds",
    "Seconds since the engine last heard from this peer, while up.",
);

/// The daemon's metrics registry. Share it as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    fields: redis::FieldIndex,
    /// The engine's `databases`: each one is listed in `redis_db_keys`.
    databases: u32,
    polls: AtomicU64,
    info_nanos: AtomicU64,
    /// Few distinct codes, so a vector beats a map; insertion order keeps output stable.
    errors: Mutex<Vec<(&'static str, u64)>>,
    backup: Mutex<backup::Figures>,
    /// The API's requests and connections.
    pub http: http::Http,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry for an engine with the default 16 databases.
    pub fn new() -> Metrics {
        Metrics::with_databases(16)
    }

    /// A registry for an engine with `databases` databases (`engine.databases`).
    pub fn with_databases(databases: u32) -> Metrics {
        Metrics {
            fields: redis::FieldIndex::new(),
            databases,
            polls: AtomicU64::new(0),
            info_nanos: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            backup: Mutex::new(backup::Figures::default()),
            http: http::Http::default(),
        }
    }

    /// One INFO read of the local engine finished, successfully or not, after `took`.
    pub fn observe_info_duration(&self, took: Duration) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.info_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Counts one error under its stable code (`EngineError::code()` and the like).
    pub fn record_error(&self, code: &'static str) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => errors.push((code, 1)),
        }
    }

    /// The text exposition of one scrape: the `redis_*` subset from `info` (only
    /// `redis_up 0` when the engine did not answer) and keyfleet's own figures.
    pub fn render(&self, status: &NodeStatus, info: Option<&Info>) -> String {
        self.render_with(status, info, None, None, None)
    }

    /// [`render`](Self::render) plus the log shipping figures, when shipping is on, and
    /// the replication-safety figures, when the checks run.
    pub fn render_with(
        &self,
        status: &NodeStatus,
        info: Option<&Info>,
        logs: Option<&crate::logship::LogsStatus>,
        safety: Option<&crate::safety::Safety>,
        upgrades: Option<&crate::upgrade::Upgrades>,
    ) -> String {
        let mut out = Exposition::with_capacity(16 * 1024);
        match info {
            Some(info) => redis::render(&mut out, &self.fields, info, self.databases),
            None => out.sample(&redis::UP, &[], 0.0),
        }
        self.render_own(&mut out, status);
        self.http.render(&mut out);
        if let Some(logs) = logs {
            logship::render(&mut out, logs);
        }
        self.render_backup(&mut out);
        if let Some(s) = safety {
            safety::render(&mut out, &s.report(), s.atomic_choice().as_ref());
        }
        if let Some(u) = upgrades {
            upgrade::render(&mut out, u);
        }
        out.finish()
    }

    fn render_own(&self, out: &mut Exposition, status: &NodeStatus) {
        out.sample(&BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        out.sample(
            &NODE_INFO,
            &[("node", &status.name), ("engine", status.engine)],
            1.0,
        );
        out.sample(&POLLS, &[], self.polls.load(Ordering::Relaxed) as f64);
        out.sample(
            &INFO_SECONDS,
            &[],
            self.info_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        );
        out.sample(&CHECKED_AT, &[], status.checked_at_unix);
        {
            let errors = self
                .errors
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (code, n) in errors.iter() {
                out.sample(&ERRORS, &[("code", code)], *n as f64);
            }
        }
        if let Some(global) = &status.master_global_link_status {
            out.sample(&GLOBAL_LINK, &[], if global == "up" { 1.0 } else { 0.0 });
        }
        if let Some(n) = status.connected_masters {
            out.sample(&CONNECTED_MASTERS, &[], n as f64);
        }
        for link in &status.links {
            let up = if link.status == LinkStatus::Up {
                1.0
            } else {
                0.0
            };
            out.sample(&PEER_UP, &[("peer", &link.peer)], up);
        }
        for link in &status.links {
            if let Some(s) = link.down_since_seconds {
                out.sample(&PEER_DOWN, &[("peer", &link.peer)], s as f64);
            }
        }
        for link in &status.links {
            if let Some(s) = link.last_io_seconds {
                out.sample(&PEER_IO, &[("peer", &link.peer)], s as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests;
