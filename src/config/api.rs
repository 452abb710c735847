//! `[api]`: where the daemon's HTTP API listens, its token, and the bounds that keep it
//! answering under hostile load (`crate::api::server`): how long a client may take to
//! send a request, how long a kept-alive connection may idle, how many connections may
//! be open and how many requests of each class may run at once.

use super::units;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the HTTP API listens; non-loopback requires `token_file`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the bearer token the API requires and sends to peers.
    pub token_file: Option<PathBuf>,
    /// A client must send a whole request head (and body) within this of connecting,
    /// of its previous answer, or of the request's first byte.
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "units::duration"
    )]
    pub header_timeout: Duration,
    /// A kept-alive connection that has been answered and sends nothing more is closed
    /// after this long.
    #[serde(default = "default_idle_timeout", deserialize_with = "units::duration")]
    pub idle_timeout: Duration,
    /// Open connections at most. At the cap a new connection closes the longest idle
    /// one; when none is idle it is refused at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The largest request body accepted (413 past it).
    #[serde(default = "default_max_body", deserialize_with = "units::size")]
    pub max_body: u64,
    /// Rejected requests (401, 404, 405, 413, 431, 503, ...) are logged as one summary
    /// per status per interval.
    #[serde(
        default = "default_rejections_interval",
        deserialize_with = "units::duration"
    )]
    pub rejections_log_interval: Duration,
    /// Requests of each class answered at once; past it, 503 `overloaded`.
    #[serde(default)]
    pub limits: ApiLimits,
}

/// Concurrent requests per route class (`crate::api::routes::Class`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiLimits {
    #[serde(default = "default_cheap")]
    pub cheap: usize,
    #[serde(default = "default_fanout")]
    pub fanout: usize,
    #[serde(default = "default_heavy")]
    pub heavy: usize,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:9850".parse().expect("valid default")
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
/// Well under the unit's `LimitNOFILE` (modules/keyfleet.nix sets cap + 1024) and
/// systemd's default 1024. A connection that has sent nothing holds no buffers
/// (`api::server`); one that has, about 16 KiB: a full table stays under 10 MB.
fn default_max_connections() -> usize {
    512
}
fn default_max_body() -> u64 {
    64 * 1024
}
fn default_rejections_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_cheap() -> usize {
    64
}
fn default_fanout() -> usize {
    16
}
fn default_heavy() -> usize {
    8
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(),
            token_file: None,
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_body: default_max_body(),
            rejections_log_interval: default_rejections_interval(),
            limits: ApiLimits::default(),
        }
    }
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            cheap: default_cheap(),
            fanout: default_fanout(),
            heavy: default_heavy(),
        }
    }
}

impl ApiConfig {
    /// The first setting out of range, as (key under `api.`, why).
    pub(super) fn problem(&self) -> Option<(&'static str, String)> {
        let (ms100, hour) = (Duration::from_millis(100), Duration::from_secs(3600));
        for (key, d, hi) in [
            (
                "header_timeout",
                self.header_timeout,
                Duration::from_secs(600),
            ),
            ("idle_timeout", self.idle_timeout, hour),
            (
                "rejections_log_interval",
                self.rejections_log_interval,
                hour,
            ),
        ] {
            if d < ms100 || d > hi {
                let (d, hi) = (units::show_duration(d), units::show_duration(hi));
                return Some((key, format!("{d} is out of range (100ms to {hi})")));
            }
        }
        if !(8..=65536).contains(&self.max_connections) {
            return Some((
                "max_connections",
                format!("{} is out of range (8 to 65536)", self.max_connections),
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body) {
            return Some((
                "max_body",
                format!("{} bytes is out of range (1KiB to 64MiB)", self.max_body),
            ));
        }
        for (key, n) in [
            ("limits.cheap", self.limits.cheap),
            ("limits.fanout", self.limits.fanout),
            ("limits.heavy", self.limits.heavy),
        ] {
            if n == 0 || n > 65536 {
                return Some((key, format!("{n} is out of range (1 to 65536)")));
            }
        }
        None
    }
}
