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
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Resurrected keys kept for the API; more are counted only.
const RESURRECTED_MAX: usize = 1000;
/// Keys checked per round.
const CHECK_BATCH: usize = 500;

/// A key deleted here while a link was down.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tracked {
    pub db: u32,
    pub key: String,
    /// "del" or "expired".
    pub event: String,
    pub at_unix: f64,
    /// The peers whose links were down then.
    pub links_down: Vec<String>,
}

/// A tracked key that existed again after the heal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resurrected {
    #[serde(flatten)]
    pub deleted: Tracked,
    pub found_at_unix: f64,
}

/// What is persisted, and what the API shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tracker {
    pub tracked: Vec<Tracked>,
    /// Deletes during a partition that were not kept: the set was full, or the key's
    /// name is not UTF-8 text.
    pub untracked: u64,
    pub resurrected: VecDeque<Resurrected>,
    pub resurrected_total: u64,
    /// Tracked keys found still deleted after a heal (as they should be).
    pub stayed_deleted_total: u64,
}

impl Tracker {
    /// Records one delete; false when it was counted instead (the set is full).
    pub fn record(&mut self, entry: Tracked, max: usize) -> bool {
        if let Some(t) = self
            .tracked
            .iter_mut()
            .find(|t| t.db == entry.db && t.key == entry.key)
        {
            *t = entry;
            return true;
        }
        if self.tracked.len() >= max {
            self.untracked += 1;
            return false;
        }
        self.tracked.push(entry);
        true
    }

    /// The checked keys' fate: `exists[i]` for `batch[i]`, which leaves the set.
    pub fn settle(&mut self, batch: &[Tracked], exists: &[bool], now: f64) -> Vec<Resurrected> {
        let mut found = Vec::new();
        for (t, e) in batch.iter().zip(exists) {
            self.tracked.retain(|x| !(x.db == t.db && x.key == t.key));
            if *e {
                let r = Resurrected {
                    deleted: t.clone(),
                    found_at_unix: now,
                };
                self.resurrected_total += 1;
                self.resurrected
                    .retain(|x| !(x.deleted.db == t.db && x.deleted.key == t.key));
                self.resurrected.push_back(r.clone());
                while self.resurrected.len() > RESURRECTED_MAX {
                    self.resurrected.pop_front();
                }
                found.push(r);
            } else {
                self.stayed_deleted_total += 1;
            }
        }
        found
    }
}

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
            Ok(t) => (t, None),
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

    pub(super) fn save_if_dirty(&mut self) -> Result<(), String> {
        if !self.dirty {
            return Ok(());
        }
        crate::logship::journal::save_json(&self.tracker, &self.path).map_err(|e| e.to_string())?;
        self.dirty = false;
        Ok(())
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

    /// The deletes' figures for the API and metrics.
    pub fn deletes(&self) -> Option<Tracker> {
        self.lock().deletes.as_ref().map(|d| d.tracker.clone())
    }

    /// Forgets resurrected keys `which` (all when `None`), after a repair.
    fn forget_resurrected(&self, which: &[(u32, String)]) {
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

pub(super) async fn listen(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let safety = &state.safety;
    let mut backoff = Duration::from_millis(500);
    loop {
        let patterns = ["__keyevent@*__:del", "__keyevent@*__:expired"];
        let mut sub = match state.engine.psubscribe(&patterns).await {
            Ok(sub) => {
                safety.record_run("delete_listener", true, Ok(()));
                backoff = Duration::from_millis(500);
                sub
            }
            Err(e) => {
                safety.record_run(
                    "delete_listener",
                    state.engine.has_answered(),
                    Err((
                        e.code(),
                        format!("subscribing to the keyevent channels: {e}"),
                    )),
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                m = sub.next_message() => m,
                _ = stop.wait_for(|s| *s) => return,
            };
            match message {
                Ok((channel, key)) => safety.deleted(&channel, &key),
                Err(e) => {
                    safety.record_run(
                        "delete_listener",
                        true,
                        Err((e.code(), format!("the keyevent subscription broke: {e}"))),
                    );
                    break;
                }
            }
        }
    }
}

/// Every 2 s: saves the set when it changed, and once converged checks what it holds.
pub(super) async fn check(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let safety = &state.safety;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => {
                let _ = save(safety);
                return;
            }
        }
        let mut result = save(safety);
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
        if !batch.is_empty() && safety.converged() {
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
                        result = save(safety);
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

fn save(safety: &Safety) -> Result<(), (&'static str, String)> {
    let mut inner = safety.lock();
    match inner.deletes.as_mut() {
        Some(d) => d
            .save_if_dirty()
            .map_err(|m| ("safety_state_write_failed", m)),
        None => Ok(()),
    }
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
            return Err(crate::engine::EngineError::Command {
                command: "EXISTS",
                detail: e.clone(),
            });
        }
        for (reply, i) in replies[1..replies.len() - 1].iter().zip(&idx) {
            out[*i] = matches!(reply, Value::Int(n) if *n > 0);
        }
    }
    Ok(out)
}

/// Deletes `keys` ((db, key)) on `engine`, as `exists` reads them: how many existed.
pub(crate) async fn delete(
    engine: &crate::engine::Engine,
    keys: &[(u32, String)],
) -> Result<u64, crate::engine::EngineError> {
    let mut by_db: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (db, key) in keys {
        by_db.entry(*db).or_default().push(key);
    }
    let mut deleted = 0;
    for (db, keys) in by_db {
        let db_text = db.to_string();
        let mut commands: Vec<Vec<&str>> = vec![vec!["SELECT", &db_text]];
        commands.extend(keys.iter().map(|k| vec!["DEL", *k]));
        commands.push(vec!["SELECT", "0"]);
        let replies = engine.pipeline("DEL", &commands).await?;
        for reply in &replies {
            match reply {
                Value::Error(e) => {
                    return Err(crate::engine::EngineError::Command {
                        command: "DEL",
                        detail: e.clone(),
                    });
                }
                Value::Int(n) => deleted += *n as u64,
                _ => {}
            }
        }
    }
    Ok(deleted)
}

/// `POST /api/v1/safety/repair`: the resurrected keys of this node (and, with
/// `peers`, of every peer, asked by their APIs), deleted everywhere with `delete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    #[serde(default)]
    pub delete: bool,
    /// Ask the peers too (the CLI does; a peer asked by another node does not).
    #[serde(default = "yes")]
    pub peers: bool,
    /// The keys to delete ((db, key)); absent: every key reported resurrected.
    #[serde(default)]
    pub keys: Option<Vec<RepairKey>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct RepairKey {
    pub db: u32,
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RepairNode {
    pub node: String,
    /// Keys reported resurrected there.
    pub resurrected: Vec<RepairKey>,
    /// With `delete`: keys that existed there and were deleted.
    pub deleted: Option<u64>,
    pub error: Option<RepairFailure>,
}

/// Why a node's part of a repair failed: a stable code and a message.
#[derive(Debug, Serialize, Deserialize)]
pub struct RepairFailure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct RepairAnswer {
    pub delete: bool,
    /// The union of every node's resurrected keys.
    pub keys: Vec<RepairKey>,
    pub nodes: Vec<RepairNode>,
}

/// Repairs on this node: deletes `keys` (or all resurrected ones) when asked to.
async fn repair_here(state: &State, req: &RepairRequest) -> RepairNode {
    let safety = &state.safety;
    let resurrected: Vec<RepairKey> = safety
        .deletes()
        .map(|t| {
            t.resurrected
                .iter()
                .map(|r| RepairKey {
                    db: r.deleted.db,
                    key: r.deleted.key.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut node = RepairNode {
        node: state.config.node_name.clone(),
        resurrected: resurrected.clone(),
        deleted: None,
        error: None,
    };
    if req.delete {
        let keys: Vec<(u32, String)> = req
            .keys
            .clone()
            .unwrap_or(resurrected)
            .into_iter()
            .map(|k| (k.db, k.key))
            .collect();
        match delete(&safety.reader, &keys).await {
            Ok(n) => {
                node.deleted = Some(n);
                safety.forget_resurrected(&keys);
                tracing::warn!(
                    deleted = n,
                    asked = keys.len(),
                    "repair: resurrected keys deleted"
                );
            }
            Err(e) => {
                node.error = Some(RepairFailure {
                    code: e.code().into(),
                    message: format!("deleting: {e}"),
                });
            }
        }
    }
    node
}

/// The whole repair: this node, then (with `req.peers`) every peer with the union of
/// the keys, so a key resurrected on one node is deleted on all of them.
pub async fn repair(state: &State, req: RepairRequest) -> RepairAnswer {
    let mut nodes = Vec::new();
    let mut keys: Vec<RepairKey> = Vec::new();
    if req.peers {
        // First every node's list, then the deletes, so each node deletes the union.
        let mut lists = vec![
            repair_here(
                state,
                &RepairRequest {
                    delete: false,
                    peers: false,
                    keys: None,
                },
            )
            .await,
        ];
        lists.extend(
            futures::future::join_all(
                state
                    .config
                    .peers
                    .iter()
                    .map(|p| ask_peer(state, p, false, None)),
            )
            .await,
        );
        for n in &lists {
            keys.extend(n.resurrected.iter().cloned());
        }
        keys.sort();
        keys.dedup();
        if !req.delete {
            return RepairAnswer {
                delete: false,
                keys,
                nodes: lists,
            };
        }
        let only = Some(req.keys.clone().unwrap_or_else(|| keys.clone()));
        nodes.push(
            repair_here(
                state,
                &RepairRequest {
                    delete: true,
                    peers: false,
                    keys: only.clone(),
                },
            )
            .await,
        );
        nodes.extend(
            futures::future::join_all(
                state
                    .config
                    .peers
                    .iter()
                    .map(|p| ask_peer(state, p, true, only.clone())),
            )
            .await,
        );
    } else {
        let n = repair_here(state, &req).await;
        keys = n.resurrected.clone();
        nodes.push(n);
    }
    RepairAnswer {
        delete: req.delete,
        keys,
        nodes,
    }
}

async fn ask_peer(
    state: &State,
    peer: &crate::config::Peer,
    delete: bool,
    keys: Option<Vec<RepairKey>>,
) -> RepairNode {
    let url = format!("{}/api/v1/safety/repair", peer.api_url());
    let body = serde_json::json!({"delete": delete, "peers": false, "keys": keys});
    let failed = |code: &'static str, message: String| RepairNode {
        node: peer.name.clone(),
        resurrected: Vec::new(),
        deleted: None,
        error: Some(RepairFailure {
            code: code.into(),
            message,
        }),
    };
    let timeout = state.config.fleet.peer_timeout.max(Duration::from_secs(10));
    let body = serde_json::to_vec(&body).expect("json").into();
    let call = crate::http_client::post_json(&url, state.token.as_deref(), body, &[]);
    match tokio::time::timeout(timeout, call).await {
        Err(_) => failed(
            "peer_timeout",
            format!("{url}: no answer within {timeout:?}"),
        ),
        Ok(Err(e)) => failed(
            "peer_unreachable",
            format!("{url}: {}", crate::http_client::error_chain(&e)),
        ),
        Ok(Ok(resp)) if resp.status != 200 => failed(
            "peer_bad_status",
            format!("{url}: answered HTTP {}", resp.status),
        ),
        Ok(Ok(resp)) => match serde_json::from_slice::<serde_json::Value>(&resp.body) {
            Ok(v) => match v["nodes"]
                .get(0)
                .cloned()
                .map(serde_json::from_value::<RepairNode>)
            {
                Some(Ok(n)) => n,
                _ => failed("peer_bad_response", format!("{url}: not a repair answer")),
            },
            Err(e) => failed("peer_bad_response", format!("{url}: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(key: &str) -> Tracked {
        Tracked {
            db: 0,
            key: key.into(),
            event: "del".into(),
            at_unix: 1.0,
            links_down: vec!["node3".into()],
        }
    }

    #[test]
    fn the_set_is_bounded_and_counts_what_it_drops() {
        let mut tr = Tracker::default();
        assert!(tr.record(t("a"), 2));
        assert!(tr.record(t("b"), 2));
        assert!(tr.record(t("a"), 2), "the same key again takes no room");
        assert!(!tr.record(t("c"), 2));
        assert_eq!(tr.tracked.len(), 2);
        assert_eq!(tr.untracked, 1);
    }

    #[test]
    fn settling_moves_existing_keys_to_resurrected_and_forgets_the_rest() {
        let mut tr = Tracker::default();
        for k in ["a", "b", "c"] {
            tr.record(t(k), 10);
        }
        let batch = tr.tracked.clone();
        let back = tr.settle(&batch, &[true, false, true], 9.0);
        assert_eq!(back.len(), 2);
        assert!(tr.tracked.is_empty());
        assert_eq!(tr.resurrected_total, 2);
        assert_eq!(tr.stayed_deleted_total, 1);
        let keys: Vec<_> = tr
            .resurrected
            .iter()
            .map(|r| r.deleted.key.as_str())
            .collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(tr.resurrected[0].found_at_unix, 9.0);
    }

    #[test]
    fn keyevent_channels_name_the_db_and_event() {
        assert_eq!(parse_channel(b"__keyevent@0__:del"), Some((0, "del")));
        assert_eq!(
            parse_channel(b"__keyevent@12__:expired"),
            Some((12, "expired"))
        );
        assert_eq!(parse_channel(b"__keyevent@0__:set"), None);
        assert_eq!(parse_channel(b"__keyspace@0__:del"), None);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("safety-deletes.json"), "{not json").unwrap();
        let d = Deletes::load(dir.path(), 10);
        assert!(
            d.load_error.as_deref().unwrap().contains("corrupt"),
            "{:?}",
            d.load_error
        );
        assert!(dir.path().join("safety-deletes.json.corrupt").exists());
        let mut d = Deletes::load(dir.path(), 10);
        assert!(d.load_error.is_none());
        d.tracker.record(t("k"), 10);
        d.dirty = true;
        d.save_if_dirty().unwrap();
        let again = Deletes::load(dir.path(), 10);
        assert_eq!(again.tracker.tracked, vec![t("k")]);
    }
}
