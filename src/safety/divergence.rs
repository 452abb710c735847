//! Divergence: keys whose copies differ between nodes. KeyDB merges by last-write-wins
//! and applies a replicated `DEL` without comparing stamps, so a fleet can settle with a
//! key on one node and not another, or two values. The `divergence` worker samples this
//! node's keyspace with SCAN (a cursor kept across rounds, `divergence_rate` keys a
//! second) and reads each sampled key on every node at once, as `[safety]
//! reader_user`: existence, TTL and a digest of its `DUMP` (without KeyDB's MVCC stamp;
//! the dump starts with the value's type). A difference is read again after
//! `lag_threshold` before it counts, in full (with the type, and KeyDB's last write, for
//! the report), and a key that agrees again is dropped. It works in rounds one `lag_threshold` apart (at least
//! 1 s), each reading that many seconds' worth of keys: a difference seen in one round
//! is due in the next, and every engine is woken once a round, not once a second (an
//! idle KeyDB spins a millisecond or so on its locks for every wake-up). `keyfleet
//! diff` (`POST /api/v1/safety/diff`) runs the same comparison over the whole keyspace
//! on demand.

use super::Safety;
use crate::daemon::State;
use crate::engine::Engine;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[path = "copies.rs"]
mod copies;
pub use copies::{Copy, Divergent, Read, agree, each, read_copies, read_everywhere, scan};

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
    // Keys sampled now, for a quick read; keys that differed before, read in full.
    let mut fresh: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut again: BTreeMap<u32, Vec<String>> = BTreeMap::new();
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
        fresh.entry(db).or_default().extend(keys);
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
                again.entry(*d).or_default().push(k.clone());
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
            again.entry(d).or_default().push(k);
        }
    }
    // Per db, one read of each key: in full when it differed before (a sampled key
    // among them is not read twice), else quickly. One round trip per node and db.
    let mut reads: BTreeMap<u32, BTreeMap<String, Read>> = BTreeMap::new();
    for (db, keys) in fresh {
        let wanted = reads.entry(db).or_default();
        wanted.extend(keys.into_iter().map(|k| (k, Read::Quick)));
    }
    for (db, keys) in again {
        let wanted = reads.entry(db).or_default();
        wanted.extend(keys.into_iter().map(|k| (k, Read::Full)));
    }
    let keydb = state.config.engine.kind == crate::config::EngineKind::Keydb;
    for (db, wanted) in reads {
        let keys: Vec<(String, Read)> = wanted.into_iter().collect();
        let copies = read_everywhere(&readers, db, &keys, keydb)
            .await
            .map_err(|(node, e)| (e.code(), format!("reading sampled keys on {node}: {e}")))?;
        let mut inner = safety.lock();
        let s = &mut inner.sampler;
        for ((key, read), copies) in keys.into_iter().zip(copies) {
            let id = (db, key.clone());
            if agree(&copies) {
                s.pending.remove(&id);
                s.divergent.remove(&id);
                continue;
            }
            if let Some(d) = s.divergent.get_mut(&id) {
                // A quick read has no type nor last write to report: the copies shown
                // stay those of the last full read, until this key's turn comes.
                if read == Read::Full {
                    d.copies = copies;
                    d.checked_unix = now;
                }
                continue;
            }
            match s.pending.get(&id) {
                // Only a full read promotes: it has what the report shows.
                Some((seen, first))
                    if read == Read::Full
                        && at.saturating_duration_since(*seen) >= recheck_after =>
                {
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
