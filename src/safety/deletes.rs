//! Resurrected deletes. KeyDB keeps no tombstones: a key deleted on one side of a
//! partition comes back when the other side's copy (or a later write there) reaches it
//! after the heal, and a full sync merges instead of replacing. While any link of this
//! node is down, `delete_listener` records the keys deleted or expired here (keyevent
//! notifications `del` and `expired`, which the engine config turns on) in a bounded set
//! persisted in the state directory; once every link has been up and the canaries fresh
//! for `lag_threshold`, `resurrection_check` asks the engine which of them exist again:
//! those are reported (API, `keyfleet_resurrected_keys_total`, an alert) until
//! `keyfleet repair resurrected --delete` removes them on every node; the others are
//! forgotten.

use super::Safety;
use crate::daemon::State;
use crate::engine::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[path = "deletes_set.rs"]
mod set;
pub use set::{Resurrected, Tracked, Tracker};

/// Keys checked per round.
const CHECK_BATCH: usize = 500;

/// The tracker with its file.
pub(super) struct Deletes {
    pub(super) tracker: Tracker,
    path: PathBuf,
    max: usize,
    dirty: bool,
    pub(super) load_error: Option<String>,
}

impl Deletes {
    /// Loads `state_dir/safety-deletes.json`; a corrupt file is kept aside and reported,
    /// never silently emptied.
    pub(super) fn load(state_dir: &std::path::Path, max: usize) -> Deletes {
        let path = state_dir.join("safety-deletes.json");
        let (tracker, load_error) = match crate::logship::journal::load_json::<Tracker>(&path) {
            Ok(mut t) => {
                t.reindex();
                (t, None)
            }
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                let _ = std::fs::rename(&path, &aside);
                (
                    Tracker::default(),
                    Some(format!("{e}; moved to {}", aside.display())),
                )
            }
        };
        Deletes {
            tracker,
            path,
            max,
            dirty: false,
            load_error,
        }
    }

    /// What to write, when something changed: a copy, so the file is written outside
    /// the lock.
    fn take_dirty(&mut self) -> Option<(Tracker, PathBuf)> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some((self.tracker.clone(), self.path.clone()))
    }
}

impl Safety {
    /// A key was deleted or expired on the local engine (`channel` names the db).
    fn deleted(&self, channel: &[u8], key: &[u8]) {
        let Some((db, event)) = parse_channel(channel) else {
            return;
        };
        if key.starts_with(b"keyfleet:") {
            return;
        }
        let now = self.clock.now_unix();
        let mut inner = self.lock();
        let links_down: Vec<String> = inner
            .peers
            .iter()
            .filter(|(name, p)| self.linked.contains(name) && p.link_up == Some(false))
            .map(|(name, _)| name.clone())
            .collect();
        if links_down.is_empty() {
            return;
        }
        let Some(deletes) = inner.deletes.as_mut() else {
            return;
        };
        let Ok(key) = String::from_utf8(key.to_vec()) else {
            deletes.tracker.untracked += 1;
            return;
        };
        let max = deletes.max;
        deletes.tracker.record(
            Tracked {
                db,
                key,
                event: event.to_owned(),
                at_unix: now,
                links_down,
            },
            max,
        );
        deletes.dirty = true;
    }

    /// Whether the fleet has converged enough to check: every expected link up for
    /// `lag_threshold`, and every peer's canary fresher than it.
    fn converged(&self) -> bool {
        let now = self.clock.now_us();
        let inner = self.lock();
        let up_long_enough = inner
            .links_up_since
            .is_some_and(|t| t.elapsed().as_secs_f64() >= self.lag_threshold);
        up_long_enough
            && inner
                .peers
                .iter()
                .filter(|(name, _)| self.inbound.contains(name))
                .all(|(_, p)| self.age_of(p, now) < self.lag_threshold)
    }

    /// Whether every link of this node is down now, as the last engine read saw it: no
    /// peer can be bringing a key here, so one that exists was written on this side.
    fn isolated(&self) -> bool {
        let inner = self.lock();
        !self.linked.is_empty()
            && self.linked.iter().all(|name| {
                inner
                    .peers
                    .get(name)
                    .is_some_and(|p| p.link_up == Some(false))
            })
    }

    /// The deletes' figures for the API and metrics.
    pub fn deletes(&self) -> Option<Tracker> {
        self.lock().deletes.as_ref().map(|d| d.tracker.clone())
    }

    /// Forgets resurrected keys `which` (all when `None`), after a repair.
    pub(super) fn forget_resurrected(&self, which: &[(u32, String)]) {
        let mut inner = self.lock();
        if let Some(d) = inner.deletes.as_mut() {
            d.tracker
                .resurrected
                .retain(|r| !which.contains(&(r.deleted.db, r.deleted.key.clone())));
            d.dirty = true;
        }
    }
}

/// `__keyevent@3__:del` → (3, "del").
fn parse_channel(channel: &[u8]) -> Option<(u32, &'static str)> {
    let text = std::str::from_utf8(channel).ok()?;
    let rest = text.strip_prefix("__keyevent@")?;
    let (db, event) = rest.split_once("__:")?;
    let event = match event {
        "del" => "del",
        "expired" => "expired",
        _ => return None,
    };
    Some((db.parse().ok()?, event))
}

/// Holds the keyevent subscription while a link of this node is down, the only time a
/// delete is tracked: on a healthy fleet the engine then publishes its keyevents to
/// nobody, instead of to every node's daemon (a DEL or an expiry each).
pub(super) async fn listen(state: Arc<State>, stop: watch::Receiver<bool>) {
    let safety = &state.safety;
    let patterns = ["__keyevent@*__:del", "__keyevent@*__:expired"];
    super::listen::hold(
        safety,
        "delete_listener",
        &safety.reader,
        &patterns,
        true,
        Some(safety.links_down.subscribe()),
        stop,
        |channel, key| safety.deleted(channel, key),
    )
    .await;
}

/// Every 2 s: saves the set when it changed, and once converged checks what it holds.
pub(super) async fn check(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let safety = &state.safety;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            let _ = save(safety).await;
            return;
        }
        let mut result = save(safety).await;
        let batch: Vec<Tracked> = {
            let inner = safety.lock();
            match inner.deletes.as_ref() {
                Some(d) if !d.tracker.tracked.is_empty() => d
                    .tracker
                    .tracked
                    .iter()
                    .take(CHECK_BATCH)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            }
        };
        if !batch.is_empty() && safety.isolated() {
            // A key deleted here and written again here while this node is cut off from
            // every peer is the application's own doing: it leaves the set before the
            // heal could bring it back. (With some links up, a key that exists may have
            // come from a peer: it waits for the heal's check.)
            let found = exists(&safety.reader, &batch).await;
            // A fresh read of the links after the answer: still cut off means the keys
            // that exist came from this side (a healed link shows up before its backlog).
            let _ = crate::fleet::local_node(&state).await;
            match found {
                Ok(found) if safety.isolated() => {
                    let mut inner = safety.lock();
                    let d = inner.deletes.as_mut().expect("checked above");
                    d.dirty = true;
                    d.tracker.rewritten(&batch, &found);
                }
                Ok(_) => {}
                Err(e) => result = Err((e.code(), format!("checking deleted keys: {e}"))),
            }
        } else if !batch.is_empty() && safety.converged() {
            match exists(&safety.reader, &batch).await {
                Ok(found) => {
                    let now = safety.clock.now_unix();
                    let back = {
                        let mut inner = safety.lock();
                        let d = inner.deletes.as_mut().expect("checked above");
                        d.dirty = true;
                        d.tracker.settle(&batch, &found, now)
                    };
                    if !back.is_empty() {
                        let names: Vec<String> =
                            back.iter().take(5).map(|r| r.deleted.key.clone()).collect();
                        tracing::warn!(
                            count = back.len(),
                            "keys deleted here during a partition exist again after the heal \
                             (resurrected): {}{}; see /api/v1/safety, `keyfleet repair resurrected`",
                            names.join(", "),
                            if back.len() > 5 { ", ..." } else { "" }
                        );
                    }
                    if result.is_ok() {
                        result = save(safety).await;
                    }
                }
                Err(e) => {
                    state.metrics.record_error(e.code());
                    result = Err((e.code(), format!("checking deleted keys: {e}")));
                }
            }
        }
        safety.record_run("resurrection_check", true, result);
    }
}

/// Writes the set when it changed (atomically, on a blocking thread, outside the lock);
/// a failed write leaves it to be written again.
async fn save(safety: &Safety) -> Result<(), (&'static str, String)> {
    let Some((tracker, path)) = safety.lock().deletes.as_mut().and_then(Deletes::take_dirty) else {
        return Ok(());
    };
    let written = tokio::task::spawn_blocking(move || {
        crate::logship::journal::save_json(&tracker, &path).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    written.map_err(|m| {
        if let Some(d) = safety.lock().deletes.as_mut() {
            d.dirty = true;
        }
        ("safety_state_write_failed", m)
    })
}

/// Which of `batch` exist on `engine`: per db, `SELECT db`, one `EXISTS` per key and
/// `SELECT 0`, in one round trip on a connection nothing else uses meanwhile.
pub(crate) async fn exists(
    engine: &crate::engine::Engine,
    batch: &[Tracked],
) -> Result<Vec<bool>, crate::engine::EngineError> {
    let mut by_db: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, t) in batch.iter().enumerate() {
        by_db.entry(t.db).or_default().push(i);
    }
    let mut out = vec![false; batch.len()];
    for (db, idx) in by_db {
        let db_text = db.to_string();
        let mut commands: Vec<Vec<&str>> = vec![vec!["SELECT", &db_text]];
        commands.extend(idx.iter().map(|i| vec!["EXISTS", batch[*i].key.as_str()]));
        commands.push(vec!["SELECT", "0"]);
        let replies = engine.pipeline("EXISTS", &commands).await?;
        if let Some(Value::Error(e)) = replies.iter().find(|v| matches!(v, Value::Error(_))) {
            return Err(engine.reply_error("EXISTS", e));
        }
        for (reply, i) in replies[1..replies.len() - 1].iter().zip(&idx) {
            out[*i] = matches!(reply, Value::Int(n) if *n > 0);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "deletes_tests.rs"]
mod tests;
