//! The API's own families (`crate::api`): requests by route template and status, open
//! connections and the cap, connections closed or refused by reason, and the rejected
//! requests the access log left out. Label values are bounded: routes are the templates
//! of `api::routes::ROUTES` (or `unmatched`), never a raw path.

use super::text::{Exposition, Family};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const REQUESTS: Family = Family::counter(
    "keyfleet_http_requests_total",
    "API requests answered, by route template (unmatched for no route) and status.",
);
const OPEN: Family = Family::gauge(
    "keyfleet_http_connections_open",
    "API connections open now.",
);
const MAX: Family = Family::gauge(
    "keyfleet_http_connections_max",
    "The cap on open API connections (api.max_connections).",
);
const CLOSED: Family = Family::counter(
    "keyfleet_http_connections_closed_total",
    "API connections the daemon closed, by reason (header_timeout, idle_timeout, evicted: idle and closed to make room at the cap).",
);
const REFUSED: Family = Family::counter(
    "keyfleet_http_connections_refused_total",
    "API connections refused at once because the cap was reached and none was idle.",
);
const LOG_SKIPPED: Family = Family::counter(
    "keyfleet_http_access_log_skipped_total",
    "Rejected API requests left out of the access log by its sampling (all are counted here and in the summaries).",
);

/// Why the daemon closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl Closed {
    const ALL: [Closed; 3] = [Closed::HeaderTimeout, Closed::IdleTimeout, Closed::Evicted];

    fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
        }
    }
}

#[derive(Debug, Default)]
pub struct Http {
    /// (route template, status) → count; at most routes × statuses entries.
    requests: Mutex<Vec<((&'static str, u16), u64)>>,
    open: AtomicU64,
    max: AtomicU64,
    closed: [AtomicU64; 3],
    refused: AtomicU64,
    log_skipped: AtomicU64,
}

impl Http {
    pub fn request(&self, route: &'static str, status: u16) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match requests.iter_mut().find(|(k, _)| *k == (route, status)) {
            Some((_, n)) => *n += 1,
            None => requests.push(((route, status), 1)),
        }
    }

    pub fn set_max_connections(&self, max: usize) {
        self.max.store(max as u64, Ordering::Relaxed);
    }

    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ended(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn closed(&self, why: Closed) {
        let i = Closed::ALL.iter().position(|c| *c == why).expect("listed");
        self.closed[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn log_skipped(&self) {
        self.log_skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn render(&self, out: &mut Exposition) {
        {
            let mut requests = self
                .requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            requests.sort();
            for ((route, status), n) in requests {
                out.sample(
                    &REQUESTS,
                    &[("route", route), ("status", &status.to_string())],
                    n as f64,
                );
            }
        }
        out.sample(&OPEN, &[], self.open.load(Ordering::Relaxed) as f64);
        out.sample(&MAX, &[], self.max.load(Ordering::Relaxed) as f64);
        for (i, why) in Closed::ALL.iter().enumerate() {
            out.sample(
                &CLOSED,
                &[("reason", why.as_str())],
                self.closed[i].load(Ordering::Relaxed) as f64,
            );
        }
        out.sample(&REFUSED, &[], self.refused.load(Ordering::Relaxed) as f64);
        out.sample(
            &LOG_SKIPPED,
            &[],
            self.log_skipped.load(Ordering::Relaxed) as f64,
        );
    }
}
