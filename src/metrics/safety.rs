//! The replication-safety families (`crate::safety`): canary lag and age per link, clock
//! skew, full syncs, link flaps, the atomic-writes node, and the thresholds the alert
//! rules compare with (so the rules need no copy of the node's settings).

use super::text::{Exposition, Family};
use crate::safety::Report;
use crate::safety::atomic::Choice;

const LAG: Family = Family::gauge(
    "keyfleet_replication_lag_seconds",
    "Seconds from the peer's latest replication canary write until it arrived on this node's engine (corrected by the measured clock skew).",
);
// A family name cannot be both a gauge and a histogram, hence its own name.
const LAG_HISTOGRAM: Family = Family::histogram(
    "keyfleet_replication_lag_distribution_seconds",
    "Replication canary lag per link since the daemon started, as a histogram.",
);
const AGE: Family = Family::gauge(
    "keyfleet_replication_canary_age_seconds",
    "Seconds since the newest canary of the peer visible on this node's engine was written: grows while a link carries nothing, even when it is reported up.",
);
const LAG_THRESHOLD: Family = Family::gauge(
    "keyfleet_replication_lag_threshold_seconds",
    "safety.lag_threshold: lag or canary age above it fires KeyfleetReplicationLagHigh / KeyfleetReplicationCanaryStale.",
);
const SKEW: Family = Family::gauge(
    "keyfleet_clock_skew_seconds",
    "The peer engine's clock minus this node's, seconds (TIME, corrected by half the round trip).",
);
const SKEW_THRESHOLD: Family = Family::gauge(
    "keyfleet_clock_skew_threshold_seconds",
    "safety.skew_threshold: skew beyond it either way fires KeyfleetClockSkew.",
);
const FULL_SYNCS: Family = Family::counter(
    "keyfleet_full_syncs_total",
    "Full syncs the engine has served to replicas since it started (INFO sync_full); repeated ones mean a resync loop.",
);
const PEER_FULL_SYNCS: Family = Family::counter(
    "keyfleet_peer_full_syncs_total",
    "Full syncs this engine served to the peer since the daemon started, from the engine log (with [logs]).",
);
const LINK_FLAPS: Family = Family::counter(
    "keyfleet_peer_link_flaps_total",
    "Times the replication link with this peer went down, as the daemon saw it (each poll and each API read of the engine).",
);
const CANARY_WRITES: Family = Family::counter(
    "keyfleet_canary_writes_total",
    "Replication canaries this node wrote.",
);
const CANARY_KEYS: Family = Family::gauge(
    "keyfleet_canary_keys",
    "Canary keys (keyfleet:canary:*) in db 0; the node's key figures in the API leave them out.",
);
const WORKER_UP: Family = Family::gauge(
    "keyfleet_safety_worker_up",
    "1 when the safety worker's last run succeeded, 0 when it failed; absent when it is off.",
);
const WORKER_FAILURES: Family = Family::counter(
    "keyfleet_safety_worker_failures_total",
    "Failed runs of each safety worker.",
);
const RESURRECTED: Family = Family::counter(
    "keyfleet_resurrected_keys_total",
    "Keys deleted or expired on this node while a link was down that existed again once the fleet converged (KeyDB keeps no tombstones).",
);
const DELETES_TRACKED: Family = Family::gauge(
    "keyfleet_deletes_tracked",
    "Keys deleted during a partition, waiting for the heal to be checked.",
);
const DELETES_UNTRACKED: Family = Family::counter(
    "keyfleet_deletes_untracked_total",
    "Deletes during a partition that were counted but not kept (safety.deletes_max reached, or a key that is not UTF-8 text): they cannot be checked.",
);
const DIVERGENT: Family = Family::gauge(
    "keyfleet_divergent_keys",
    "Keys whose copies differ between nodes (existence, type, TTL or value), found by the sampler and still different after the re-check.",
);
const SAMPLED: Family = Family::counter(
    "keyfleet_divergence_sampled_keys_total",
    "Keys the divergence sampler has compared across nodes.",
);
const ATOMIC: Family = Family::gauge(
    "keyfleet_atomic_writes_node",
    "1 for the node (label target: `node` is the scrape's own) that writes which must be atomic should go to (see /api/v1/fleet), 0 for the others.",
);

pub(super) fn render(out: &mut Exposition, r: &Report, atomic: Option<&Choice>) {
    if !r.enabled {
        return;
    }
    let runs = |worker: &str| {
        r.workers
            .iter()
            .any(|w| w.name == worker && w.state != "off")
    };
    for p in &r.peers {
        if let Some(lag) = p.lag_seconds {
            out.sample(&LAG, &[("peer", &p.peer)], lag);
        }
    }
    for p in &r.peers {
        if let Some(h) = &p.lag_histogram {
            out.histogram(
                &LAG_HISTOGRAM,
                &[("peer", &p.peer)],
                &h.cumulative(),
                h.sum(),
                h.count(),
            );
        }
    }
    for p in &r.peers {
        if let Some(age) = p.canary_age_seconds {
            out.sample(&AGE, &[("peer", &p.peer)], age);
        }
    }
    out.sample(&LAG_THRESHOLD, &[], r.lag_threshold_seconds);
    for p in &r.peers {
        if let Some(skew) = p.clock_skew_seconds {
            out.sample(&SKEW, &[("peer", &p.peer)], skew);
        }
    }
    out.sample(&SKEW_THRESHOLD, &[], r.skew_threshold_seconds);
    if let Some(n) = r.full_syncs {
        out.sample(&FULL_SYNCS, &[], n as f64);
    }
    if runs("resync_log") {
        for p in &r.peers {
            let n = r.full_syncs_by_peer.get(&p.peer).copied().unwrap_or(0);
            out.sample(&PEER_FULL_SYNCS, &[("peer", &p.peer)], n as f64);
        }
        for (name, n) in &r.full_syncs_by_peer {
            if !r.peers.iter().any(|p| &p.peer == name) {
                out.sample(&PEER_FULL_SYNCS, &[("peer", name)], *n as f64);
            }
        }
    }
    for p in &r.peers {
        out.sample(&LINK_FLAPS, &[("peer", &p.peer)], p.link_flaps as f64);
    }
    if let Some(d) = &r.deletes {
        out.sample(&RESURRECTED, &[], d.resurrected_total as f64);
        out.sample(&DELETES_TRACKED, &[], d.tracked as f64);
        out.sample(&DELETES_UNTRACKED, &[], d.untracked as f64);
    }
    if runs("divergence") {
        out.sample(&DIVERGENT, &[], r.divergence.divergent_keys as f64);
        out.sample(&SAMPLED, &[], r.divergence.sampled_total as f64);
    }
    out.sample(&CANARY_WRITES, &[], r.canary_writes as f64);
    out.sample(&CANARY_KEYS, &[], r.canary_keys as f64);
    for w in &r.workers {
        let up = match w.state {
            "running" => 1.0,
            "failing" => 0.0,
            _ => continue,
        };
        out.sample(&WORKER_UP, &[("worker", w.name)], up);
    }
    for w in r.workers.iter().filter(|w| w.state != "off") {
        out.sample(&WORKER_FAILURES, &[("worker", w.name)], w.failures as f64);
    }
    if let Some(choice) = atomic {
        for node in &choice.order {
            let v = if choice.node.as_ref() == Some(node) {
                1.0
            } else {
                0.0
            };
            out.sample(&ATOMIC, &[("target", node)], v);
        }
    }
}
