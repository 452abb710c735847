//! Divergence: keys whose copies differ between nodes. KeyDB merges by last-write-wins
//! and applies a replicated `DEL` without comparing stamps, so a fleet can settle with a
//! key on one node and not another, or two values. The `divergence` worker samples this
//! node's keyspace with SCAN (a cursor kept across rounds, `divergence_rate` keys a
//! second) and reads each sampled key on every node at once, as `[safety]
//! reader_user`: existence, type, TTL and a digest of its `DUMP` (without KeyDB's MVCC
//! stamp). A difference is read again after `lag_threshold` before it counts, and a key
//! that agrees again is dropped. It works in rounds one `lag_threshold` apart (at least
//! 1 s), each reading that many seconds' worth of keys: a difference seen in one round
//! is due in the next, and every engine is woken once a round, not once a second (an
//! idle KeyDB spins a millisecond or so on its locks for every wake-up). `keyfleet
//! diff` (`POST /api/v1/safety/diff`) runs the same comparison over the whole keyspace
//! on demand.

use super::Safety;
use crate::daemon::State;
use crate::engine::{Engine, EngineError, Value};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Divergent keys remembered; more are counted only.
const DIVERGENT_MAX: usize = 1000;
/// Keys of the divergent set read again per second of a round, to see them converge.
const RECHECK_PER_SECOND: usize = 20;

/// How far apart the sampler's rounds are: `lag_threshold`, at least 1 s.
fn round_every(lag_threshold: Duration) -> Duration {
    lag_threshold.max(Duration::from_secs(1))
}

/// What one round reads, for a round of `every`: (keys sampled, SCAN steps at most,
/// divergent keys read again). The steps let a round go on through databases with
/// fewer keys than it samples, as fast as one step a second did.
fn round_size(rate: usize, every: Duration) -> (usize, usize, usize) {
    let seconds = every.as_secs_f64();
    let keys = ((rate as f64) * seconds).ceil() as usize;
    let steps = (seconds.ceil() as usize).max(1);
    let recheck = ((RECHECK_PER_SECOND as f64) * seconds).ceil() as usize;
    (keys, steps, recheck)
}

/// One node's copy of a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    pub node: String,
    pub exists: bool,
    /// `TYPE`: "string", "hash", ...; "none" when it does not exist.
    #[serde(rename = "type")]
    pub kind: String,
    /// Milliseconds to live; null without a TTL.
    pub ttl_ms: Option<i64>,
    /// SHA-256 of the value (its DUMP without version, CRC and MVCC stamp), 16 hex digits.
    pub digest: Option<String>,
    /// KeyDB: seconds since the copy was last written (`OBJECT LASTMODIFIED`, from its
    /// MVCC stamp), which says which write each node kept; null on Redis.
    pub lastmodified_seconds: Option<i64>,
}

/// A key whose copies differ.
#[derive(Debug, Clone, Serialize)]
pub struct Divergent {
    pub db: u32,
    pub key: String,
    pub copies: Vec<Copy>,
    pub first_seen_unix: f64,
    pub checked_unix: f64,
}

/// Whether two TTLs read a moment apart are the same TTL: both none, or within 2 s or
/// a tenth of the longer one.
fn same_ttl(a: Option<i64>, b: Option<i64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 2000.max(a.max(b) / 10),
        _ => false,
    }
}

/// Whether every copy agrees: existence, type, value, and TTL within tolerance.
pub fn agree(copies: &[Copy]) -> bool {
    let Some(first) = copies.first() else {
        return true;
    };
    copies.iter().all(|c| {
        c.exists == first.exists
            && c.kind == first.kind
            && c.digest == first.digest
            && same_ttl(c.ttl_ms, first.ttl_ms)
    })
}

/// Reads `keys` of `db` on `engine`: one round trip. `keydb`: the engine is KeyDB,
/// which also says when each copy was last written.
pub async fn read_copies(
    node: &str,
    engine: &Engine,
    db: u32,
    keys: &[String],
    keydb: bool,
) -> Result<Vec<Copy>, EngineError> {
    let db_text = db.to_string();
    let per_key = if keydb { 4 } else { 3 };
    let mut commands: Vec<Vec<&str>> = vec![vec!["SELECT", &db_text]];
    for k in keys {
        commands.push(vec!["TYPE", k]);
        commands.push(vec!["PTTL", k]);
        commands.push(vec!["DUMP", k]);
        if keydb {
            commands.push(vec!["OBJECT", "LASTMODIFIED", k]);
        }
    }
    commands.push(vec!["SELECT", "0"]);
    let replies = engine.pipeline("DUMP", &commands).await?;
    if let Some(Value::Error(e)) = replies.iter().find(|v| matches!(v, Value::Error(_))) {
        return Err(engine.reply_error("DUMP", e));
    }
    if replies.len() != commands.len() {
        return Err(EngineError::Command {
            command: "DUMP",
            detail: format!("{} replies to {} commands", replies.len(), commands.len()),
        });
    }
    let mut out = Vec::with_capacity(keys.len());
    for chunk in replies[1..replies.len() - 1].chunks(per_key) {
        let kind = match &chunk[0] {
            Value::Status(s) => s.clone(),
            Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            _ => "none".into(),
        };
        let ttl_ms = match chunk[1] {
            Value::Int(n) if n >= 0 => Some(n),
            _ => None,
        };
        let digest = match &chunk[2] {
            Value::Bulk(b) => Some(crate::engine::value_digest(b)[..16].to_owned()),
            _ => None,
        };
        let lastmodified_seconds = match chunk.get(3) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        out.push(Copy {
            node: node.to_owned(),
            exists: kind != "none",
            kind,
            ttl_ms,
            digest,
            lastmodified_seconds,
        });
    }
    Ok(out)
}

/// Every node's copies of `keys` of `db`, read concurrently: `[key][node]`.
pub async fn read_everywhere(
    engines: &[(String, &Engine)],
    db: u32,
    keys: &[String],
    keydb: bool,
) -> Result<Vec<Vec<Copy>>, (String, EngineError)> {
    let reads = futures::future::join_all(
        engines
            .iter()
            .map(|(name, e)| async move { (name, read_copies(name, e, db, keys, keydb).await) }),
    )
    .await;
    let mut per_node = Vec::with_capacity(engines.len());
    for (name, r) in reads {
        per_node.push(r.map_err(|e| (name.clone(), e))?);
    }
    Ok((0..keys.len())
        .map(|i| per_node.iter().map(|copies| copies[i].clone()).collect())
        .collect())
}

/// One `SCAN` step on `db`: (next cursor, keys), keyfleet's own keys left out.
pub async fn scan(
    engine: &Engine,
    db: u32,
    cursor: &str,
    count: usize,
    pattern: Option<&str>,
) -> Result<(String, Vec<String>), EngineError> {
    let db_text = db.to_string();
    let count_text = count.to_string();
    let mut step = vec!["SCAN", cursor, "COUNT", &count_text];
    if let Some(p) = pattern {
        step.extend(["MATCH", p]);
    }
    // SCAN goes last: KeyDB 6.3.4 as an active replica runs SCAN apart and answers a
    // command pipelined after it only once more input arrives (seen here: the trailing
    // SELECT's reply waited for the next request). Every use of the reader's connection
    // selects its db first, so leaving this one selected is harmless.
    let replies = engine
        .pipeline("SCAN", &[vec!["SELECT", &db_text], step])
        .await?;
    if let Value::Error(e) = &replies[0] {
        return Err(engine.reply_error("SELECT", e));
    }
    match &replies[1] {
        Value::Array(parts) if parts.len() == 2 => {
            let next = match &parts[0] {
                Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "0".into(),
            };
            let keys = match &parts[1] {
                Value::Array(keys) => keys
                    .iter()
                    .filter_map(|k| match k {
                        // Keys that are not UTF-8 text cannot be named back: skipped.
                        Value::Bulk(b) => String::from_utf8(b.clone()).ok(),
                        _ => None,
                    })
                    .filter(|k| !k.starts_with("keyfleet:"))
                    .collect(),
                _ => Vec::new(),
            };
            Ok((next, keys))
        }
        Value::Error(e) => Err(engine.reply_error("SCAN", e)),
        other => Err(EngineError::Command {
            command: "SCAN",
            detail: format!("unexpected reply {other:.60?}"),
        }),
    }
}

/// The sampler's state, in `Safety`.
#[derive(Default)]
pub(super) struct Sampler {
    pub(super) db: u32,
    pub(super) cursor: String,
    pub(super) sampled_total: u64,
    /// Keys that differed once, to read again: (db, key) → first seen.
    pub(super) pending: BTreeMap<(u32, String), (Instant, f64)>,
    pub(super) divergent: BTreeMap<(u32, String), Divergent>,
    /// Divergent keys found when the set was full.
    pub(super) overflow: u64,
    /// The divergent key the last round's re-check ended at.
    recheck_after: Option<(u32, String)>,
}

impl Safety {
    /// Every node's reader: this one's first.
    pub(super) fn readers(&self) -> Vec<(String, &Engine)> {
        std::iter::once((self.node.clone(), &self.reader))
            .chain(self.peer_readers.iter().map(|(n, e)| (n.clone(), e)))
            .collect()
    }
}

/// One round of the sampler, begun at `at`: the next keys of the cursor, the pending
/// ones due, and some divergent ones again.
async fn round(
    state: &State,
    (count, steps, recheck): (usize, usize, usize),
    recheck_after: Duration,
    at: Instant,
) -> Result<(), (&'static str, String)> {
    let safety = &state.safety;
    let databases = state.config.engine.databases.max(1);
    let mut due: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut sampled = 0;
    for _ in 0..steps {
        let (db, cursor) = {
            let inner = safety.lock();
            (inner.sampler.db, inner.sampler.cursor.clone())
        };
        let cursor = if cursor.is_empty() {
            "0".to_owned()
        } else {
            cursor
        };
        let (next, keys) = scan(&safety.reader, db, &cursor, count - sampled, None)
            .await
            .map_err(|e| (e.code(), format!("scanning db {db}: {e}")))?;
        sampled += keys.len();
        due.entry(db).or_default().extend(keys);
        let mut inner = safety.lock();
        let s = &mut inner.sampler;
        if next == "0" {
            s.db = (db + 1) % databases;
            s.cursor = String::new();
        } else {
            s.cursor = next;
        }
        // A full round, or a whole lap of the databases.
        if sampled >= count || (s.db == 0 && s.cursor.is_empty()) {
            break;
        }
    }
    let readers = safety.readers();
    let now = safety.clock.now_unix();
    {
        let mut inner = safety.lock();
        let s = &mut inner.sampler;
        s.sampled_total += sampled as u64;
        for ((d, k), (seen, _)) in &s.pending {
            if at.saturating_duration_since(*seen) >= recheck_after {
                due.entry(*d).or_default().push(k.clone());
            }
        }
        // The divergent set is read again in turns, from where the last round stopped.
        let after = s.recheck_after.take();
        let mut turn: Vec<(u32, String)> = match &after {
            Some(a) => s
                .divergent
                .range((
                    std::ops::Bound::Excluded(a.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(k, _)| k.clone())
                .take(recheck)
                .collect(),
            None => Vec::new(),
        };
        if turn.len() < recheck {
            let more = recheck - turn.len();
            turn.extend(s.divergent.keys().take(more).cloned());
            turn.dedup();
        }
        s.recheck_after = turn.last().cloned();
        for (d, k) in turn {
            due.entry(d).or_default().push(k);
        }
    }
    for (db, mut keys) in due {
        keys.sort();
        keys.dedup();
        let keydb = state.config.engine.kind == crate::config::EngineKind::Keydb;
        let copies = read_everywhere(&readers, db, &keys, keydb)
            .await
            .map_err(|(node, e)| (e.code(), format!("reading sampled keys on {node}: {e}")))?;
        let mut inner = safety.lock();
        let s = &mut inner.sampler;
        for (key, copies) in keys.into_iter().zip(copies) {
            let id = (db, key.clone());
            if agree(&copies) {
                s.pending.remove(&id);
                s.divergent.remove(&id);
                continue;
            }
            if let Some(d) = s.divergent.get_mut(&id) {
                d.copies = copies;
                d.checked_unix = now;
                continue;
            }
            match s.pending.get(&id) {
                Some((seen, first)) if at.saturating_duration_since(*seen) >= recheck_after => {
                    let first = *first;
                    s.pending.remove(&id);
                    if s.divergent.len() >= DIVERGENT_MAX {
                        s.overflow += 1;
                        continue;
                    }
                    tracing::warn!(db, key = %key, "divergent key: its copies still differ between nodes after the re-check");
                    s.divergent.insert(
                        id,
                        Divergent {
                            db,
                            key,
                            copies,
                            first_seen_unix: first,
                            checked_unix: now,
                        },
                    );
                }
                Some(_) => {}
                None => {
                    if s.pending.len() < DIVERGENT_MAX {
                        s.pending.insert(id, (at, now));
                    }
                }
            }
        }
    }
    Ok(())
}

pub(super) async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let cfg = &state.config.safety;
    let recheck_after = cfg.lag_threshold;
    let every = round_every(recheck_after);
    let size = round_size(cfg.divergence_rate as usize, every);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The tick's own instant, not the clock after it: rounds are then exactly
        // `every` apart, and a difference seen in one is due in the next.
        let at = tokio::select! {
            at = tick.tick() => at.into_std(),
            _ = stop.wait_for(|s| *s) => return,
        };
        let result = round(&state, size, recheck_after, at).await;
        // Until every node's engine has answered once, a failure is the fleet starting.
        let answered = state.safety.readers().iter().all(|(_, e)| e.has_answered());
        if let Err((code, _)) = &result
            && answered
        {
            state.metrics.record_error(code);
        }
        state.safety.record_run("divergence", answered, result);
    }
}

#[cfg(test)]
#[path = "divergence_tests.rs"]
mod tests;
