//! Scheduled backups. At each slot of `[backups] schedule` one node of the fleet backs
//! up: the first in name order whose daemon answers with its engine up, as each node
//! finds by asking the peers before it. A dead node therefore does not stop backups,
//! and a healthy fleet uploads one copy per slot, not one per node. Should two nodes
//! both believe they are first (a partition between them), each first looks in the
//! store for a backup of this slot, and at worst the fleet gets two copies, never none.
//! The node that backed up then applies retention.

use super::Backups;
use crate::config::Peer;
use crate::daemon::State;
use crate::schedule::Schedule;
use jiff::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Who takes a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    Mine,
    /// This healthy node comes first.
    Peer(String),
}

/// The first healthy node in name order, given which peers before this node answered
/// healthy. Pure, so the rule is tested without a fleet.
pub fn turn<'a>(me: &str, healthy_peers: impl IntoIterator<Item = &'a str>) -> Turn {
    healthy_peers
        .into_iter()
        .filter(|p| *p < me)
        .min()
        .map_or(Turn::Mine, |p| Turn::Peer(p.to_owned()))
}

/// Asks the peers named before this node whether they are up (their daemon answers and
/// their engine is up).
async fn elect(state: &State) -> Turn {
    let me = state.config.node_name.as_str();
    let before: Vec<&Peer> = state
        .config
        .peers
        .iter()
        .filter(|p| p.name.as_str() < me)
        .collect();
    let answers =
        futures::future::join_all(before.iter().map(|p| crate::fleet::peer_node(state, p))).await;
    let healthy = before
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a["up"] == true)
        .map(|(p, _)| p.name.as_str());
    turn(me, healthy)
}

/// Runs the schedule until `stop`.
pub async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let Some(backups) = state.backups.clone() else {
        return;
    };
    let Some(schedule) = backups.cfg.schedule.clone() else {
        return;
    };
    state.metrics.backup_scheduled(schedule.period());
    backups.refresh_last_success().await;
    loop {
        let next = schedule.next_after(Timestamp::now());
        tracing::info!(next = %next, schedule = %schedule, "next scheduled backup");
        // Sleep in steps of at most a minute, so a clock set forward or back is noticed.
        loop {
            let left = next.duration_since(Timestamp::now());
            if left <= jiff::SignedDuration::ZERO {
                break;
            }
            let step = Duration::try_from(left)
                .unwrap_or_default()
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        slot(&state, &backups, &schedule).await;
    }
}

async fn slot(state: &State, backups: &Arc<Backups>, schedule: &Schedule) {
    let slot = schedule.current_slot(Timestamp::now());
    // What the store holds now (the previous slot's backup, by whichever node), for
    // the "no backup for too long" alert on every node.
    backups.refresh_last_success().await;
    if let Turn::Peer(name) = elect(state).await {
        tracing::info!(%slot, "scheduled backup: node {name} comes first and takes it");
        return;
    }
    match backups.stored().await {
        Ok(stored) if stored.iter().any(|s| s.complete && s.started >= slot) => {
            tracing::info!(%slot, "scheduled backup: the store already has one for this slot");
            return;
        }
        Ok(_) => {}
        // The backup reports the store's trouble itself, with its code and metric.
        Err(e) => tracing::warn!(code = e.code, "scheduled backup: {}", e.message),
    }
    let id = match backups.start(state.engine.clone()) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(code = e.code, "scheduled backup not started: {}", e.message);
            return;
        }
    };
    backups.wait().await;
    if backups
        .current()
        .is_some_and(|p| p.id == id && p.state == "complete")
    {
        match backups.apply_retention().await {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(count = deleted.len(), "retention deleted old backups");
            }
            Ok(_) => {}
            Err(e) => {
                state.metrics.record_error(e.code);
                tracing::warn!(code = e.code, "retention: {}", e.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_healthy_node_in_name_order_takes_the_slot() {
        assert_eq!(turn("node1", ["node2", "node3"]), Turn::Mine);
        assert_eq!(
            turn("node2", ["node1", "node3"]),
            Turn::Peer("node1".into())
        );
        assert_eq!(
            turn("node3", ["node2", "node1"]),
            Turn::Peer("node1".into())
        );
        // node1 is down: node2 is first among the healthy.
        assert_eq!(turn("node2", ["node3"]), Turn::Mine);
        assert_eq!(turn("node3", ["node2"]), Turn::Peer("node2".into()));
        // Alone.
        assert_eq!(turn("solo", []), Turn::Mine);
    }
}
