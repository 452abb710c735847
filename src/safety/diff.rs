//! `keyfleet diff`: the whole keyspace (or the keys matching a pattern) compared across
//! every node on demand, as the divergence sampler compares its sample: SCAN of every
//! node's every db (so a key that only one node holds is found too), each batch read on
//! all nodes at once as the reader user, at most
//! `rate` keys a second; the keys that differ are read again after `lag_threshold`
//! (replication may just not have delivered them yet) and only those that still differ
//! are reported. One diff at a time per daemon; its progress and result stay until the
//! next one.

use super::divergence::{Divergent, Read, agree, each, read_everywhere, scan};
use crate::daemon::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Differing keys kept in the result; more are counted.
const DIFFERING_MAX: usize = 1000;
/// Keys that differed at first reading kept for the re-check; past this (a node that is
/// empty or being rebuilt differs on everything) the diff stops and says so.
const SUSPECTS_MAX: usize = 10 * DIFFERING_MAX;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffRequest {
    /// A SCAN MATCH pattern (`user:*`); absent: every key.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Keys a second at most (1 to 100000; default 1000).
    #[serde(default = "default_rate")]
    pub rate: u32,
}

fn default_rate() -> u32 {
    1000
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffJob {
    pub id: String,
    pub pattern: Option<String>,
    pub rate: u32,
    /// "running", "complete" or "failed".
    pub state: &'static str,
    /// "scan" or "recheck" while running.
    pub phase: &'static str,
    pub started_unix: f64,
    pub finished_unix: Option<f64>,
    /// Keys compared so far (each node's keys, so a key every node holds counts once per
    /// node), and the keys the nodes held when the diff started (every db; with a
    /// pattern, an upper bound).
    pub compared: u64,
    pub total_estimate: u64,
    /// Keys whose copies differed at first reading, and still after the re-check.
    pub suspects: u64,
    pub differing_total: u64,
    pub differing: Vec<Divergent>,
    pub error: Option<DiffError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffError {
    pub code: &'static str,
    pub message: String,
}

/// Why a diff could not start.
pub enum Refused {
    Invalid(String),
    Running(String),
}

/// Checks the request and starts the diff in the background: its id.
pub fn start(state: &Arc<State>, req: DiffRequest) -> Result<String, Refused> {
    if !(1..=100_000).contains(&req.rate) {
        return Err(Refused::Invalid(
            "rate must be 1 to 100000 keys a second".into(),
        ));
    }
    if req
        .pattern
        .as_deref()
        .is_some_and(|p| p.is_empty() || p.len() > 1024)
    {
        return Err(Refused::Invalid("pattern must be 1 to 1024 bytes".into()));
    }
    let safety = &state.safety;
    let now = safety.clock.now_unix();
    let id = format!("diff-{}", (now * 1000.0) as u64);
    {
        let mut inner = safety.lock();
        if let Some(j) = inner.diff.as_ref().filter(|j| j.state == "running") {
            return Err(Refused::Running(format!(
                "diff {} is running ({} of about {} keys compared)",
                j.id, j.compared, j.total_estimate
            )));
        }
        inner.diff = Some(DiffJob {
            id: id.clone(),
            pattern: req.pattern.clone(),
            rate: req.rate,
            state: "running",
            phase: "scan",
            started_unix: now,
            finished_unix: None,
            compared: 0,
            total_estimate: 0,
            suspects: 0,
            differing_total: 0,
            differing: Vec::new(),
            error: None,
        });
    }
    let st = state.clone();
    tokio::spawn(async move {
        let result = run(&st, &req).await;
        let now = st.safety.clock.now_unix();
        let mut inner = st.safety.lock();
        if let Some(j) = inner.diff.as_mut() {
            j.finished_unix = Some(now);
            match result {
                Ok(()) => j.state = "complete",
                Err((code, message)) => {
                    j.state = "failed";
                    j.error = Some(DiffError { code, message });
                }
            }
        }
    });
    Ok(id)
}

/// The diff running or last run.
pub fn current(state: &State) -> Option<DiffJob> {
    state.safety.lock().diff.clone()
}

fn update(state: &State, f: impl FnOnce(&mut DiffJob)) {
    if let Some(j) = state.safety.lock().diff.as_mut() {
        f(j);
    }
}

async fn run(state: &State, req: &DiffRequest) -> Result<(), (&'static str, String)> {
    let safety = &state.safety;
    // This node's key count, once per node: the scans go over every node's keyspace.
    let nodes = 1 + state.config.peers.len() as u64;
    let total: u64 = match state.engine.info().await {
        Ok(info) => nodes * info.dbs().map(|d| d.keys).sum::<u64>(),
        Err(_) => 0,
    };
    update(state, |j| j.total_estimate = total);
    let readers = safety.readers();
    let keydb = state.config.engine.kind == crate::config::EngineKind::Keydb;
    let batch = (req.rate as usize).clamp(1, 500);
    let started = Instant::now();
    let mut compared: u64 = 0;
    let mut suspects: Vec<(u32, String, f64)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for ((source, engine), db) in readers
        .iter()
        .flat_map(|r| (0..state.config.engine.databases.max(1)).map(move |db| (r, db)))
    {
        let mut cursor = "0".to_owned();
        loop {
            let (next, keys) = scan(engine, db, &cursor, batch, req.pattern.as_deref())
                .await
                .map_err(|e| (e.code(), format!("scanning db {db} on {source}: {e}")))?;
            if !keys.is_empty() {
                let copies = read_everywhere(&readers, db, &each(&keys, Read::Quick), keydb)
                    .await
                    .map_err(|(node, e)| (e.code(), format!("reading keys on {node}: {e}")))?;
                let now = safety.clock.now_unix();
                for (key, copies) in keys.iter().zip(&copies) {
                    // A key differing on several nodes' scans counts once.
                    if !agree(copies) && seen.insert((db, key.clone())) {
                        suspects.push((db, key.clone(), now));
                    }
                }
                if suspects.len() > SUSPECTS_MAX {
                    return Err((
                        "diff_too_many_differences",
                        format!(
                            "more than {SUSPECTS_MAX} keys differ at first reading (a node empty \
                             or being rebuilt?); compare a --pattern at a time, or rebuild the node"
                        ),
                    ));
                }
                compared += keys.len() as u64;
                let n = suspects.len() as u64;
                update(state, |j| {
                    j.compared = compared;
                    j.suspects = n;
                });
                // At most `rate` keys a second, over the whole run.
                let due = Duration::from_secs_f64(compared as f64 / f64::from(req.rate));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    // What differed once is read again once replication has had its time.
    update(state, |j| j.phase = "recheck");
    if !suspects.is_empty() {
        tokio::time::sleep(state.config.safety.lag_threshold).await;
    }
    let mut differing: Vec<Divergent> = Vec::new();
    let mut differing_total = 0;
    for chunk in suspects.chunks(batch) {
        let db_groups: std::collections::BTreeMap<u32, Vec<&(u32, String, f64)>> =
            chunk.iter().fold(Default::default(), |mut m, s| {
                m.entry(s.0).or_default().push(s);
                m
            });
        for (db, group) in db_groups {
            let keys: Vec<String> = group.iter().map(|s| s.1.clone()).collect();
            let copies = read_everywhere(&readers, db, &each(&keys, Read::Full), keydb)
                .await
                .map_err(|(node, e)| (e.code(), format!("re-reading keys on {node}: {e}")))?;
            let now = safety.clock.now_unix();
            for (s, copies) in group.into_iter().zip(copies) {
                if agree(&copies) {
                    continue;
                }
                differing_total += 1;
                if differing.len() < DIFFERING_MAX {
                    differing.push(Divergent {
                        db,
                        key: s.1.clone(),
                        copies,
                        first_seen_unix: s.2,
                        checked_unix: now,
                    });
                }
            }
        }
    }
    update(state, |j| {
        j.differing_total = differing_total;
        j.differing = differing;
    });
    Ok(())
}
