//! The `[safety]` table: the replication-safety checks (`crate::safety`). Schema,
//! defaults and the checks that need no files. Present or not, the checks run; the table
//! only tunes them (`enabled = false` turns them off).

use super::units;
use serde::Deserialize;
use std::time::Duration;

/// Replication canary, clock skew and the atomic-writes node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Run the checks at all. Off, the daemon writes no canary key.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often this node writes its canary (`keyfleet:canary:NODE`) and reads its
    /// peers' canaries on the local engine.
    #[serde(
        default = "default_canary_interval",
        deserialize_with = "units::duration"
    )]
    pub canary_interval: Duration,
    /// Lag, or canary staleness, above this is a problem: exported as
    /// `keyfleet_replication_lag_threshold_seconds` for the alert rules.
    #[serde(
        default = "default_lag_threshold",
        deserialize_with = "units::duration"
    )]
    pub lag_threshold: Duration,
    /// How often each peer engine's clock is compared with this node's.
    #[serde(
        default = "default_skew_interval",
        deserialize_with = "units::duration"
    )]
    pub skew_interval: Duration,
    /// `TIME` round trips per comparison; the one with the shortest round trip counts.
    #[serde(default = "default_skew_samples")]
    pub skew_samples: u32,
    /// Clock skew above this is a problem (it decides which write wins a conflict):
    /// exported as `keyfleet_clock_skew_threshold_seconds` for the alert rules.
    #[serde(
        default = "default_skew_threshold",
        deserialize_with = "units::duration"
    )]
    pub skew_threshold: Duration,
    /// The order in which nodes are preferred for writes that must be atomic (INCR,
    /// locks, check-and-set): the first healthy one is `atomic_writes_node`. Every node
    /// must list the same order; empty means node names sorted.
    #[serde(default)]
    pub atomic_writes_order: Vec<String>,
    /// The engine user the checks that read the user's keys act as (the rules in
    /// `src/engine/safety.acl`: read commands and DEL, every key): which deleted keys
    /// exist again, and `keyfleet repair resurrected --delete`. Absent: the daemon's own
    /// user, which then needs those rules (a dev fleet has no ACL at all).
    #[serde(default)]
    pub reader_user: Option<String>,
    /// Its password. A secret: a relative path is looked up in `$CREDENTIALS_DIRECTORY`.
    #[serde(default)]
    pub reader_password_file: Option<std::path::PathBuf>,
    /// The most keys deleted during a partition that are remembered (and checked once
    /// the links heal); more are counted, not kept.
    #[serde(default = "default_deletes_max")]
    pub deletes_max: u32,
    /// Keys a second the divergence sampler reads on every node (SCAN of this node's
    /// keyspace, as reader_user); 0 turns it off.
    #[serde(default = "default_divergence_rate")]
    pub divergence_rate: u32,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            enabled: true,
            canary_interval: default_canary_interval(),
            lag_threshold: default_lag_threshold(),
            skew_interval: default_skew_interval(),
            skew_samples: default_skew_samples(),
            skew_threshold: default_skew_threshold(),
            atomic_writes_order: Vec::new(),
            reader_user: None,
            reader_password_file: None,
            deletes_max: default_deletes_max(),
            divergence_rate: default_divergence_rate(),
        }
    }
}

fn default_divergence_rate() -> u32 {
    20
}
fn default_deletes_max() -> u32 {
    100_000
}
fn default_true() -> bool {
    true
}
fn default_canary_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_lag_threshold() -> Duration {
    Duration::from_secs(5)
}
fn default_skew_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_skew_samples() -> u32 {
    5
}
fn default_skew_threshold() -> Duration {
    Duration::from_millis(50)
}

impl SafetyConfig {
    /// The first problem with these settings as (key under `safety.`, message).
    /// `nodes`: every node of the fleet, this one included.
    pub(super) fn problem(&self, nodes: &[&str]) -> Option<(String, String)> {
        let p = |k: &str, m: String| Some((k.to_owned(), m));
        if self.canary_interval < Duration::from_millis(100)
            || self.canary_interval > Duration::from_secs(60)
        {
            return p("canary_interval", "must be between 100ms and 60s".into());
        }
        if self.lag_threshold <= self.canary_interval {
            return p(
                "lag_threshold",
                format!(
                    "must be longer than canary_interval ({:?}): a canary is at most that old \
                     on a healthy link",
                    self.canary_interval
                ),
            );
        }
        if self.skew_interval < Duration::from_secs(1) {
            return p("skew_interval", "must be at least 1s".into());
        }
        if !(1..=50).contains(&self.skew_samples) {
            return p("skew_samples", "must be between 1 and 50".into());
        }
        if self.skew_threshold < Duration::from_millis(1) {
            return p("skew_threshold", "must be at least 1ms".into());
        }
        if self.reader_user.is_some() != self.reader_password_file.is_some() {
            return p(
                "reader_user",
                "reader_user and reader_password_file go together".into(),
            );
        }
        if self.divergence_rate > 10_000 {
            return p(
                "divergence_rate",
                "must be at most 10000 keys a second (0 turns the sampler off)".into(),
            );
        }
        if !(100..=10_000_000).contains(&self.deletes_max) {
            return p("deletes_max", "must be between 100 and 10000000".into());
        }
        if !self.atomic_writes_order.is_empty() {
            for (i, name) in self.atomic_writes_order.iter().enumerate() {
                if !nodes.contains(&name.as_str()) {
                    return p(
                        &format!("atomic_writes_order[{i}]"),
                        format!("`{name}` is not a node of this fleet (node_name or a peer)"),
                    );
                }
                if self.atomic_writes_order[..i].contains(name) {
                    return p(
                        &format!("atomic_writes_order[{i}]"),
                        format!("`{name}` is listed twice"),
                    );
                }
            }
            if let Some(missing) = nodes
                .iter()
                .find(|n| !self.atomic_writes_order.iter().any(|o| o == *n))
            {
                return p(
                    "atomic_writes_order",
                    format!("lists some nodes but not `{missing}`: list every node, or none"),
                );
            }
        }
        None
    }

    /// The keyspace events the engine must publish for the checks: `E` (keyevent
    /// channels), `g` (DEL and the like), `x` (expired). `None` when `value` (a
    /// `notify-keyspace-events` setting) has them all; else what is missing.
    pub fn missing_events(value: &str) -> Option<String> {
        let has = |c: char| value.contains(c) || (c != 'E' && value.contains('A'));
        let missing: String = ['E', 'g', 'x'].into_iter().filter(|c| !has(*c)).collect();
        (!missing.is_empty()).then_some(missing)
    }

    /// The fleet's nodes in atomic-writes order: as configured, else by name.
    pub fn atomic_order(&self, nodes: &[&str]) -> Vec<String> {
        if self.atomic_writes_order.is_empty() {
            let mut v: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
            v.sort();
            v
        } else {
            self.atomic_writes_order.clone()
        }
    }
}
