//! A subscription held for a worker: opened on the engine, reopened after a failure with
//! a backoff (0.5 s doubling to 10 s), every message handed to the worker, until `stop`.
//! The canary listener and the delete listener are its two users; the delete listener's
//! is held only while it is `wanted` (a link is down).

use super::Safety;
use crate::engine::Engine;
use std::time::Duration;
use tokio::sync::watch;

/// Subscribes `engine` to `names` (channel patterns with `patterns`, else channels) for
/// worker `worker`, and calls `on_message(channel, payload)` for each message. With
/// `wanted`, the subscription is held only while it says `true`; it is still made once
/// at start, so a user that may not subscribe fails then, not in the first partition.
#[allow(clippy::too_many_arguments)]
pub(super) async fn hold(
    safety: &Safety,
    worker: &'static str,
    engine: &Engine,
    names: &[&str],
    patterns: bool,
    mut wanted: Option<watch::Receiver<bool>>,
    mut stop: watch::Receiver<bool>,
    mut on_message: impl FnMut(&[u8], &[u8]),
) {
    let mut backoff = Duration::from_millis(500);
    let mut probed = false;
    loop {
        if let Some(w) = wanted.as_mut().filter(|_| probed) {
            tokio::select! {
                r = w.wait_for(|want| *want) => if r.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        let opened = if patterns {
            engine.psubscribe(names).await
        } else {
            engine.subscribe(names[0]).await
        };
        let mut sub = match opened {
            Ok(sub) => {
                safety.record_run(worker, true, Ok(()));
                backoff = Duration::from_millis(500);
                probed = true;
                sub
            }
            Err(e) => {
                let message = format!("subscribing to {}: {e}", names.join(", "));
                safety.record_run(worker, engine.has_answered(), Err((e.code(), message)));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let unwanted = async {
            match wanted.as_mut() {
                Some(w) => w.wait_for(|want| !*want).await.map(drop),
                None => std::future::pending().await,
            }
        };
        tokio::pin!(unwanted);
        loop {
            let message = tokio::select! {
                m = sub.next_message() => m,
                _ = stop.wait_for(|s| *s) => return,
                // No longer wanted (or its sender gone): the connection closes with `sub`.
                _ = &mut unwanted => break,
            };
            match message {
                Ok((channel, payload)) => on_message(&channel, &payload),
                Err(e) => {
                    let message = format!("the subscription broke: {e}");
                    safety.record_run(worker, true, Err((e.code(), message)));
                    break;
                }
            }
        }
    }
}
