//! Where writes that must be atomic go. KeyDB's multi-master merges concurrent writes by
//! last-write-wins, so two nodes running `INCR` on one key, or taking one lock, can both
//! succeed; such writes must all go to one node. `atomic_writes_node` is the first node
//! in `safety.atomic_writes_order` (node names sorted by default) that is fit for it:
//!
//! - KeyDB: its engine is up and it has live links to a majority of the fleet, itself
//!   counted (so a node cut off from the rest is passed over, and the side of a
//!   partition that keeps the majority keeps the same node);
//! - Redis: the primary, while its engine is up (only it takes writes).
//!
//! Every daemon applies the same rule to the same fleet view, so they give the same
//! answer while they can see each other.

use crate::config::EngineKind;
use crate::daemon::State;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// The node, or none when no node is fit.
    pub node: Option<String>,
    /// The order nodes are taken in.
    pub order: Vec<String>,
}

/// Picks the node from a fleet view's entries (`GET /api/v1/node` answers, a down peer
/// as `{"name", "up": false}`).
pub fn choose(
    kind: EngineKind,
    primary: Option<&str>,
    order: &[String],
    nodes: &[Value],
) -> Choice {
    let entry = |name: &str| nodes.iter().find(|n| n["name"] == name);
    let up = |name: &str| entry(name).is_some_and(|n| n["up"] == true);
    let node = match kind {
        EngineKind::Redis => primary.filter(|p| up(p)).map(str::to_owned),
        EngineKind::Keydb => {
            let fleet = order.len();
            order
                .iter()
                .find(|name| {
                    let Some(n) = entry(name).filter(|n| n["up"] == true) else {
                        return false;
                    };
                    let links_up = n["links"].as_array().map_or(0, |links| {
                        links.iter().filter(|l| l["status"] == "up").count()
                    });
                    2 * (links_up + 1) > fleet
                })
                .cloned()
        }
    };
    Choice {
        node,
        order: order.to_vec(),
    }
}

/// The choice for `state`'s fleet from a fleet view, remembered for the metrics.
pub fn decide(state: &State, nodes: &[Value]) -> Choice {
    let c = &state.config;
    let order = c.safety.atomic_order(&c.node_names());
    let choice = choose(c.engine.kind, c.engine.primary.as_deref(), &order, nodes);
    state.safety.set_atomic(choice.clone());
    choice
}

/// Refreshes the choice every few seconds, so the metrics carry it between API calls.
pub(super) async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let every = state.config.fleet.poll_interval.max(Duration::from_secs(5));
    // The first look one interval after start: the fleet's daemons start together, and
    // asking peers that are not up yet would count errors on a healthy fleet.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // `fleet` decides and records the choice itself.
        let view = crate::fleet::fleet(&state).await;
        let result = match &view.atomic_writes_node {
            Some(_) => Ok(()),
            None => Err((
                "atomic_writes_no_node",
                "no node is fit for atomic writes (none is up with links to a majority)".into(),
            )),
        };
        let answered = state.engine.has_answered();
        state.safety.record_run("atomic_writes", answered, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Vec<String> {
        ["node1", "node2", "node3"].map(String::from).to_vec()
    }

    fn node(name: &str, up: bool, links_up: &[bool]) -> Value {
        let links: Vec<Value> = links_up
            .iter()
            .map(|u| json!({"status": if *u { "up" } else { "down" }}))
            .collect();
        json!({"name": name, "up": up, "links": links})
    }

    #[test]
    fn the_first_node_with_a_majority_takes_atomic_writes() {
        let all_up = [
            node("node1", true, &[true, true]),
            node("node2", true, &[true, true]),
            node("node3", true, &[true, true]),
        ];
        let pick = |nodes: &[Value]| choose(EngineKind::Keydb, None, &order(), nodes).node;
        assert_eq!(pick(&all_up).as_deref(), Some("node1"));
        // node1 cut off from both peers: it has only itself, not a majority.
        let cut = [
            node("node1", true, &[false, false]),
            node("node2", true, &[false, true]),
            node("node3", true, &[false, true]),
        ];
        assert_eq!(pick(&cut).as_deref(), Some("node2"));
        // node3 cut off: node1 keeps it.
        let cut3 = [
            node("node1", true, &[true, false]),
            node("node2", true, &[true, false]),
            node("node3", true, &[false, false]),
        ];
        assert_eq!(pick(&cut3).as_deref(), Some("node1"));
        // node1's engine down, its daemon unreachable.
        let down = [
            json!({"name": "node1", "up": false}),
            node("node2", true, &[false, true]),
            node("node3", true, &[false, true]),
        ];
        assert_eq!(pick(&down).as_deref(), Some("node2"));
        // Every link cut: nobody has a majority.
        let apart = [
            node("node1", true, &[false, false]),
            node("node2", true, &[false, false]),
            node("node3", true, &[false, false]),
        ];
        assert_eq!(pick(&apart), None);
    }

    #[test]
    fn redis_atomic_writes_go_to_the_primary() {
        let nodes = [node("node1", true, &[true]), node("node2", true, &[true])];
        let c = choose(EngineKind::Redis, Some("node2"), &order(), &nodes);
        assert_eq!(c.node.as_deref(), Some("node2"));
        let down = [
            node("node1", true, &[false]),
            json!({"name": "node2", "up": false}),
        ];
        assert_eq!(
            choose(EngineKind::Redis, Some("node2"), &order(), &down).node,
            None
        );
    }
}
