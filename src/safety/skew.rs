//! Clock skew: every `skew_interval`, each peer engine's `TIME` is read a few times
//! (`skew_samples`) and compared with this node's clock at the middle of the round
//! trip; the sample with the shortest round trip counts, so the error is at most half
//! of it. KeyDB's conflict resolution stamps each write with its node's wall clock,
//! so a skewed node wins (or loses) every conflict it takes part in.

use super::Safety;
use crate::daemon::State;
use crate::engine::Engine;
use std::sync::Arc;
use tokio::sync::watch;

/// One comparison: (skew µs, round trip µs), from the best of `samples`.
pub(super) async fn measure(
    safety: &Safety,
    peer: &Engine,
    samples: u32,
) -> Result<(i64, i64), crate::engine::EngineError> {
    let mut best: Option<(i64, i64)> = None;
    for _ in 0..samples.max(1) {
        let before = safety.clock.now_us();
        let remote = peer.time_micros().await?;
        let after = safety.clock.now_us();
        let rtt = after - before;
        let skew = remote - (before + after) / 2;
        if best.is_none_or(|(_, r)| rtt < r) {
            best = Some((skew, rtt));
        }
    }
    Ok(best.expect("at least one sample"))
}

impl Safety {
    pub(super) fn skew_measured(
        &self,
        peer: &str,
        result: Result<(i64, i64), (&'static str, String)>,
    ) {
        let now = self.clock.now_unix();
        let mut inner = self.lock();
        let Some(p) = inner.peers.get_mut(peer) else {
            return;
        };
        match result {
            Ok((skew, rtt)) => {
                p.skew_us = Some(skew);
                p.skew_rtt_us = Some(rtt);
                p.skew_at_unix = Some(now);
                p.skew_error = None;
            }
            Err((code, message)) => {
                // The last value stays, with its time, so a stale skew reads as stale.
                p.skew_error = Some(super::WorkerError {
                    code,
                    message,
                    at_unix: now,
                });
            }
        }
    }
}

/// Every `skew_interval`; after a failure sooner (1 s, doubling up to the interval),
/// so a peer that was not up yet at start is measured once it is.
pub(super) async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let safety = &state.safety;
    let cfg = &state.config.safety;
    let mut wait = std::time::Duration::ZERO;
    let mut retry = std::time::Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let results = futures::future::join_all(safety.peer_engines.iter().map(
            |(name, engine)| async move { (name, measure(safety, engine, cfg.skew_samples).await) },
        ))
        .await;
        let mut failed = Vec::new();
        // A peer engine that has never answered is starting, not failing.
        let mut answered = true;
        for ((name, result), (_, engine)) in results.into_iter().zip(&safety.peer_engines) {
            let result = result.map_err(|e| (e.code(), format!("peer {name}: {e}")));
            if let Err((code, message)) = &result {
                if engine.has_answered() {
                    state.metrics.record_error(code);
                } else {
                    answered = false;
                }
                failed.push((*code, message.clone()));
            }
            safety.skew_measured(name, result);
        }
        let outcome = match failed.into_iter().next() {
            None => {
                wait = cfg.skew_interval;
                retry = std::time::Duration::from_secs(1);
                Ok(())
            }
            Some(first) => {
                wait = retry.min(cfg.skew_interval);
                retry = (retry * 2).min(cfg.skew_interval);
                Err(first)
            }
        };
        safety.record_run("clock_skew", answered, outcome);
    }
}
