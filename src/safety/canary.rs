//! The replication canary. Every `canary_interval` this node writes
//! `keyfleet:canary:NODE` = "SEQ WRITE_US" on its own engine and publishes the same on
//! `keyfleet:canary`; the engine replicates both to its peers. Two workers measure the
//! other direction on the local engine:
//!
//! - `canary_listener` holds a subscription to the channel: a peer's announcement arrives
//!   when the replication stream has delivered its write here, so its lag is
//!   (arrival − write time), the write time corrected by the peer's measured clock skew;
//!   microsecond resolution, no polling.
//! - `canary` (this node's writer) also reads every peer's canary key with one MGET: the
//!   newest value visible here gives the canary age, which keeps growing while a link
//!   is "up" but carries nothing, and counts the canary keys the node's key figures
//!   leave out.

use super::{CANARY_CHANNEL, Safety, canary_key};
use crate::daemon::State;
use crate::engine::CanaryWrite;
use std::sync::Arc;
use tokio::sync::watch;

/// A canary value or announcement: (node, seq, write time µs). The key's value has no
/// node ("SEQ WRITE_US"); the announcement starts with it.
pub(super) fn parse(text: &[u8], with_node: bool) -> Option<(Option<String>, u64, i64)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split(' ');
    let node = if with_node {
        Some(words.next()?.to_owned())
    } else {
        None
    };
    let seq = words.next()?.parse().ok()?;
    let write_us = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some((node, seq, write_us))
}

impl Safety {
    /// A canary of `peer` arrived by subscription at `now_us`: its lag is recorded once,
    /// on first arrival (a mesh may deliver it again by way of another node).
    pub(super) fn canary_arrived(&self, peer: &str, seq: u64, write_us: i64, now_us: i64) {
        if !self.inbound.iter().any(|p| p == peer) {
            return;
        }
        let mut inner = self.lock();
        let Some(p) = inner.peers.get_mut(peer) else {
            return;
        };
        if p.announced_us.is_some_and(|w| write_us <= w) {
            return;
        }
        p.announced_us = Some(write_us);
        let lag_us = (now_us - (write_us - p.skew_us.unwrap_or(0))).max(0);
        let lag = lag_us as f64 / 1e6;
        p.lag = Some(lag);
        p.lag_histogram.observe(lag);
        if p.newest_write_us.is_none_or(|w| write_us > w) {
            p.newest_write_us = Some(write_us);
            p.newest_seq = Some(seq);
        }
    }

    /// The canary values read on the local engine: peers' (newest seen) and how many
    /// canary keys exist there, this node's included.
    pub(super) fn canaries_read(&self, values: &[(String, Option<Vec<u8>>)]) {
        let mut inner = self.lock();
        inner.canary_keys = values.iter().filter(|(_, v)| v.is_some()).count() as u64;
        for (peer, value) in values {
            let Some((_, seq, write_us)) = value.as_deref().and_then(|v| parse(v, false)) else {
                continue;
            };
            if let Some(p) = inner.peers.get_mut(peer)
                && p.newest_write_us.is_none_or(|w| write_us > w)
            {
                p.newest_write_us = Some(write_us);
                p.newest_seq = Some(seq);
            }
        }
    }
}

/// The writer: this node's canary every interval and the peers' canaries read back, in
/// one round trip.
pub(super) async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let safety = &state.safety;
    let interval = state.config.safety.canary_interval;
    let own = canary_key(&state.config.node_name);
    // Every canary key that may exist here: this node's, then each peer's.
    let keys: Vec<(String, String)> =
        std::iter::once((state.config.node_name.clone(), own.clone()))
            .chain(
                state
                    .config
                    .peers
                    .iter()
                    .map(|p| (p.name.clone(), canary_key(&p.name))),
            )
            .collect();
    let key_refs: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Sequence numbers start at the clock, so a restarted daemon's canaries are newer.
    let mut seq = u64::try_from(safety.clock.now_us() / 1000).unwrap_or(0);
    // After a refused write, announce only writes that succeeded (`canary_round`).
    let mut cautious = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let writing = safety.writes && !restore_running(&state);
        let (value, announcement);
        let write = if writing {
            seq += 1;
            value = format!("{seq} {}", safety.clock.now_us());
            // The announcement carries the node's name; the key's value does not need it.
            announcement = format!("{} {value}", state.config.node_name);
            Some(CanaryWrite {
                key: &own,
                value: &value,
                channel: CANARY_CHANNEL,
                announcement: &announcement,
            })
        } else {
            None
        };
        let result = match state.engine.canary_round(write, &key_refs, cautious).await {
            Ok(round) => {
                let read = match round.read {
                    Ok(values) => {
                        let named: Vec<(String, Option<Vec<u8>>)> =
                            keys.iter().map(|(n, _)| n.clone()).zip(values).collect();
                        safety.canaries_read(&named);
                        Ok(())
                    }
                    Err(e) => Err((e.code(), format!("reading the peers' canaries: {e}"))),
                };
                // The write's failure first, as it is the one peers notice.
                let written = match round.written {
                    Some(Err(e)) => {
                        cautious = true;
                        Err((e.code(), format!("writing {own}: {e}")))
                    }
                    Some(Ok(())) => {
                        cautious = false;
                        safety.lock().canary_writes += 1;
                        Ok(())
                    }
                    None => Ok(()),
                };
                written.and(read)
            }
            Err(e) => Err((e.code(), format!("the canary round trip: {e}"))),
        };
        let answered = state.engine.has_answered();
        if let Err((code, _)) = &result
            && answered
        {
            state.metrics.record_error(code);
        }
        safety.record_run("canary", answered, result);
    }
}

/// Whether an in-fleet restore holds this node: its engine refuses writes meanwhile,
/// and a canary written between the restore's wipe and its count would be counted.
fn restore_running(state: &State) -> bool {
    state
        .backups
        .as_ref()
        .is_some_and(|b| b.restore_session_active())
}

/// The listener: one subscription to the canary channel, reopened after a failure.
pub(super) async fn listen(state: Arc<State>, stop: watch::Receiver<bool>) {
    let safety = &state.safety;
    let me = state.config.node_name.as_str();
    let channels = [CANARY_CHANNEL];
    super::listen::hold(
        safety,
        "canary_listener",
        &state.engine,
        &channels,
        false,
        None,
        stop,
        |_, payload| {
            let now = safety.clock.now_us();
            if let Some((Some(node), seq, write_us)) = parse(payload, true)
                && node != me
            {
                safety.canary_arrived(&node, seq, write_us, now);
            }
        },
    )
    .await;
}
