//! The health gate, evaluated once per call (`GET /api/v1/upgrades/attempts/{id}/gate`):
//! the engine is up and runs the expected version, every peer link is up, the
//! replication canary flows both ways (each peer's canary arrived here after the switch
//! with lag under the threshold, and ours reached every peer), and the divergence
//! sampler found no more divergent keys than before the attempt. The agent calls it
//! until it holds for `gate_settle` or `gate_timeout` runs out.

use super::policy::{self, GenerationMeta};
use super::record::{Attempt, Phase};
use super::wire::{Check, GateCheck};
use crate::daemon::State;
use serde_json::Value;

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}

/// What the gate expects of `attempt` in its current phase: the candidate during the
/// gate, the previous generation while proving the rollback.
pub fn expected(attempt: &Attempt) -> (&GenerationMeta, i64) {
    let since = attempt.switched_at_unix.unwrap_or(attempt.started_at_unix);
    match attempt.phase {
        Phase::RollingBack | Phase::RollbackGate => {
            (&attempt.from, attempt.rolled_back_at_unix.unwrap_or(since))
        }
        _ => (&attempt.to, since),
    }
}

pub async fn evaluate(state: &State, attempt: &Attempt, since_unix: f64) -> GateCheck {
    let (expect, _) = expected(attempt);
    let mut checks = Vec::new();
    let node = crate::fleet::local_node(state).await;
    checks.push(check(
        "engine_up",
        node.up,
        node.error.as_ref().map_or_else(
            || "the engine answers".to_owned(),
            |e| format!("{}: {}", e.code, e.message),
        ),
    ));
    let version = node.version.clone().unwrap_or_default();
    let running = policy::parse_version(&version);
    let same = running.is_some()
        && running == policy::parse_version(&expect.engine_version)
        && node.engine == expect.engine;
    checks.push(check(
        "engine_version",
        same,
        format!(
            "runs {} {}, expected {} {}",
            node.engine,
            if version.is_empty() { "?" } else { &version },
            expect.engine,
            expect.engine_version
        ),
    ));
    let down: Vec<String> = node
        .links
        .iter()
        .filter(|l| l.status != crate::engine::status::LinkStatus::Up)
        .map(|l| l.peer.clone())
        .collect();
    checks.push(check(
        "links_up",
        node.up && down.is_empty(),
        if down.is_empty() {
            format!("{} links up", node.links.len())
        } else {
            format!("down: {}", down.join(", "))
        },
    ));
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let since_switch = (now - since_unix).max(0.0);
    let report = state.safety.report();
    if report.enabled {
        let threshold = report.lag_threshold_seconds;
        let mut bad = Vec::new();
        for p in report.peers.iter().filter(|p| p.canary_expected) {
            match (p.lag_seconds, p.canary_age_seconds) {
                (Some(lag), Some(age)) if lag < threshold && age < threshold && age < since_switch => {}
                (lag, age) => bad.push(format!(
                    "{}: lag {}, canary age {} (threshold {threshold} s, switched {since_switch:.1} s ago)",
                    p.peer,
                    lag.map_or("none".into(), |l| format!("{l:.3} s")),
                    age.map_or("none".into(), |a| format!("{a:.1} s")),
                )),
            }
        }
        checks.push(check(
            "canary_inbound",
            bad.is_empty(),
            if bad.is_empty() {
                "every peer's canary arrived since the switch, lag under the threshold".into()
            } else {
                bad.join("; ")
            },
        ));
        let outbound = outbound(state, threshold, since_switch).await;
        checks.push(check(
            "canary_outbound",
            outbound.is_empty(),
            if outbound.is_empty() {
                "every peer sees this node's link up and its canary fresh".into()
            } else {
                outbound.join("; ")
            },
        ));
        let divergent = report.divergence.divergent_keys;
        checks.push(check(
            "no_new_divergence",
            divergent <= attempt.divergent_keys_at_start,
            format!(
                "{divergent} divergent keys ({} when the attempt started)",
                attempt.divergent_keys_at_start
            ),
        ));
    } else {
        checks.push(check(
            "canary",
            true,
            "not checked: the safety checks are off ([safety] enabled = false)".into(),
        ));
    }
    GateCheck {
        healthy: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// What is wrong with this node as each peer sees it: the peer's link to it, and this
/// node's canary on the peer (where one is expected).
async fn outbound(state: &State, threshold: f64, since_switch: f64) -> Vec<String> {
    let me = state.config.node_name.as_str();
    let peers = futures::future::join_all(
        state
            .config
            .peers
            .iter()
            .map(|p| crate::fleet::peer_node(state, p)),
    )
    .await;
    let mut bad = Vec::new();
    for (peer, v) in state.config.peers.iter().zip(peers) {
        if v["up"] != true {
            let why = v["error"]["message"].as_str().unwrap_or("engine down");
            bad.push(format!("{}: {why}", peer.name));
            continue;
        }
        let links = v["links"].as_array().cloned().unwrap_or_default();
        let Some(link) = links.iter().find(|l| l["peer"] == me) else {
            // Redis: a replica's peers other than the primary hold no link to it.
            continue;
        };
        if link["status"] != "up" {
            bad.push(format!("{}: its link to {me} is down", peer.name));
            continue;
        }
        if let Some(age) = link.get("canary_age_seconds").and_then(Value::as_f64)
            && !(age < threshold && age < since_switch)
        {
            bad.push(format!(
                "{}: {me}'s canary there is {age:.1} s old (switched {since_switch:.1} s ago)",
                peer.name
            ));
        }
    }
    bad
}
