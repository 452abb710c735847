//! Fleet restore: afterwards every node holds exactly the backup's keys, nothing written
//! after the backup and nothing deleted before it brought back by a merge. Coordinated
//! by the node asked, which loads the backup itself:
//!
//! 1. `prepare` on every node; any node that cannot be asked or refuses ends the
//!    restore here, before anything changed.
//! 2. `fence` on every node: client writes refused (`READONLY`), every replication link
//!    cut, a hold attached (`hold`). A failure puts every node back as it was.
//! 3. Here: `wipe`, then the backup loaded through the hold and checked. A failure
//!    wipes this node again and puts every node back (this one refills from its peers,
//!    which still hold the data from before).
//! 4. `wipe` on every peer. From here a failure leaves the fleet read-only and cut, its
//!    data half replaced: the way on is to run the restore again (or `release` to
//!    take it as it is), never an automatic re-mesh that would merge old data back.
//! 5. `remesh` on every node, and wait until every link is up and synced: the empty
//!    peers take this node's data.
//! 6. Verify: keys per db equal on every node, and a sample of values equal.
//! 7. `finish` on every node: the holds go, client writes are allowed again; then
//!    `cancel` ends the sessions.

use super::super::{BackupError, Backups, Manifest};
use super::fetch;
use super::history::Record;
use super::members::{Member, Members};
use super::session::StepAnswer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const SAMPLE: usize = 200;

impl Backups {
    /// Checks, prepares every node and starts a fleet restore of `backup`; the record
    /// comes back at once and the history has the outcome later.
    pub async fn restore_fleet(
        self: &Arc<Self>,
        backup: &str,
        requested_by: &str,
    ) -> Result<Record, BackupError> {
        let manifest = self.restorable(backup).await?;
        let guard = self.restores.one_at_a_time()?;
        let id = super::new_id()?;
        let members = self.restores.members(id.clone());
        let all = members.all();
        self.prepare_all(&members).await?;
        let names: Vec<&str> = all.iter().map(|m| members.name(*m)).collect();
        let record = self.restores.record(
            &id,
            backup,
            "fleet",
            &format!("every node: {}", names.join(", ")),
            requested_by,
            manifest.keys.clone(),
        );
        let me = self.clone();
        tokio::spawn(async move {
            let _one_at_a_time = guard;
            let members = me.restores.members(id.clone());
            let result = me.fleet(&members, &manifest).await;
            // The backup's canaries were loaded too; the record counts the user's keys.
            let result =
                result.map(|k| super::super::manifest::without_canaries(k, manifest.canary_keys));
            me.restores.finished(&me.metrics, &id, result);
        });
        Ok(record)
    }

    async fn fleet(
        &self,
        members: &Members<'_>,
        m: &Manifest,
    ) -> Result<BTreeMap<String, u64>, BackupError> {
        let all = members.all();
        let peers: Vec<Member> = all[1..].to_vec();
        let phase = |p: &str| self.restores.phase(&members.session, p);
        let fenced = async |e: BackupError, why: &str, linked: bool| {
            // The sessions end (the fence stays), so that a new restore may start at once.
            let _ = members.each(&all, "cancel").await;
            left_fenced(e, why, linked)
        };

        phase("fence");
        if let Err(e) = members.each(&all, "fence").await {
            return Err(self.put_back(members, e, "nothing was changed").await);
        }

        phase("load");
        let here = |step: &'static str| members.step(None, step);
        if let Err(e) = here("wipe").await {
            return Err(self.put_back(members, e, "nothing was changed").await);
        }
        let loaded = match heartbeat(members, &peers, self.load_here(members, m)).await {
            Ok(state) => state,
            // What was loaded goes again before the peers' data flows back in.
            Err(e) => match here("wipe").await {
                Ok(_) => {
                    let why = "this node was emptied and refilled from its peers";
                    return Err(self.put_back(members, e, why).await);
                }
                Err(w) => {
                    let why = format!("and emptying this node again failed: {}", w.message);
                    return Err(fenced(e, &why, false).await);
                }
            },
        };

        phase("wipe");
        if let Err(e) = members.each(&peers, "wipe").await {
            return Err(fenced(e, "some peers may already be empty", false).await);
        }

        phase("remesh");
        let synced = async {
            members.each(&all, "remesh").await?;
            converged(members, &all, all.len(), Duration::from_secs(3600)).await
        };
        if let Err(e) = synced.await {
            return Err(fenced(e, "while the peers synced from this node", true).await);
        }

        phase("verify");
        if let Err(e) = verify(members, &all, &loaded.keys, 0).await {
            return Err(fenced(e, "the nodes do not agree after the restore", true).await);
        }

        phase("finish");
        if let Err(e) = members.each(&all, "finish").await {
            let why = "lifting the fence; some nodes may take writes, the others run `keyfleet backup release --yes`";
            return Err(fenced(e, why, true).await);
        }
        let _ = members.each(&all, "cancel").await;
        Ok(loaded.keys)
    }

    /// `prepare` on every member: every node can take part and sees the same fleet.
    /// On a refusal the sessions prepared are cancelled: nothing has changed.
    pub(super) async fn prepare_all(
        &self,
        members: &Members<'_>,
    ) -> Result<Vec<StepAnswer>, BackupError> {
        let all = members.all();
        let prepared = members.each(&all, "prepare").await.and_then(|answers| {
            same_fleet(&answers)?;
            Ok(answers)
        });
        if prepared.is_err() {
            let _ = members.each(&all, "cancel").await;
        }
        prepared
    }

    /// Loads the backup into this (empty) node through its hold.
    async fn load_here(
        &self,
        members: &Members<'_>,
        m: &Manifest,
    ) -> Result<super::local::NodeState, BackupError> {
        members
            .sessions
            .with_local(&members.session, async |local| {
                let (tx, rx) = self.restores.counted(&members.session, m.rdb_bytes);
                let (loaded, fetched) = tokio::join!(
                    local.load(m.rdb_bytes, rx),
                    fetch::rdb(&self.client, m, self.age.clone(), tx)
                );
                fetched?;
                loaded
            })
            .await
    }

    /// After a failure that changed no data for good: every node back as configured.
    pub(super) async fn put_back(
        &self,
        members: &Members<'_>,
        e: BackupError,
        what: &str,
    ) -> BackupError {
        let all = members.all();
        match members.each(&all, "release").await {
            Ok(_) => BackupError::new(
                e.code,
                format!(
                    "{} ({what}; every node is linked as configured and takes writes again)",
                    e.message
                ),
            ),
            Err(r) => BackupError::new(
                e.code,
                format!(
                    "{} ({what}; putting the nodes back failed too: {}; run `keyfleet backup release` on each node)",
                    e.message, r.message
                ),
            ),
        }
    }
}

fn left_fenced(e: BackupError, why: &str, linked: bool) -> BackupError {
    let state = if linked {
        "The fleet is left read-only, linked again"
    } else {
        "The fleet is left read-only with its links cut, so that no old data merges back"
    };
    BackupError::new(
        e.code,
        format!(
            "{} ({why}). {state}: run the fleet restore again, or `keyfleet backup release --yes` on each node to take the data as it is",
            e.message
        ),
    )
}

/// Every node lists the same fleet as the coordinator: itself and its peers.
fn same_fleet(answers: &[StepAnswer]) -> Result<(), BackupError> {
    let fleet_of = |a: &StepAnswer| {
        let mut names: Vec<String> = a.peers.clone();
        names.push(a.node.clone());
        names.sort();
        names
    };
    let ours = fleet_of(&answers[0]);
    match answers.iter().find(|a| fleet_of(a) != ours) {
        None => Ok(()),
        Some(other) => Err(BackupError::new(
            "restore_fleet_mismatch",
            format!(
                "node {} sees the fleet {:?}, node {} sees {:?}: every node must list the same peers",
                answers[0].node,
                ours,
                other.node,
                fleet_of(other)
            ),
        )),
    }
}

/// Runs `work` while telling `peers` every minute that their coordinator is alive, so
/// that their sessions do not lapse during a long load or sync.
pub(super) async fn heartbeat<T>(
    members: &Members<'_>,
    peers: &[Member<'_>],
    work: impl std::future::Future<Output = T>,
) -> T {
    let beat = async {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = members.each(peers, "state").await;
        }
    };
    tokio::select! {
        done = work => done,
        never = beat => never,
    }
}

/// Waits until every member has at least `masters` masters, all linked and synced,
/// and none is loading.
pub(super) async fn converged(
    members: &Members<'_>,
    ms: &[Member<'_>],
    masters: usize,
    limit: Duration,
) -> Result<Vec<StepAnswer>, BackupError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let states = members.each(ms, "state").await?;
        let done = states.iter().all(|a| {
            !a.state.loading
                && a.state.masters.values().all(|up| *up)
                && a.state.masters.len() >= masters
        });
        if done {
            return Ok(states);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BackupError::new(
                "restore_failed",
                format!("the nodes did not sync within {limit:?}: {states:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Keys per db equal to `expected` on every member, within `slack` keys per db (given a
/// few seconds to settle), and a sample of values equal across members.
pub(super) async fn verify(
    members: &Members<'_>,
    ms: &[Member<'_>],
    expected: &BTreeMap<String, u64>,
    slack: u64,
) -> Result<(), BackupError> {
    let mismatch = |m: String| BackupError::new("restore_verify_failed", m);
    let mut tries = 0;
    loop {
        let states = members.each(ms, "state").await?;
        let off: Vec<String> = states
            .iter()
            .filter(|a| !close(&a.state.keys, expected, slack))
            .map(|a| format!("{} holds {:?}", a.node, nonzero(&a.state.keys)))
            .collect();
        if off.is_empty() {
            break;
        }
        tries += 1;
        if tries > 20 {
            return Err(mismatch(format!(
                "keys per db differ from the {:?} loaded: {}",
                nonzero(expected),
                off.join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut ask = members.request("keys");
    ask.count = Some(SAMPLE);
    let keys = members.on(ms[0], &ask).await?.keys;
    let mut suspects = keys;
    for round in 0..2 {
        let mut ask = members.request("digests");
        ask.keys = suspects.clone();
        let answers = members.each_with(ms, &ask).await?;
        suspects = (0..suspects.len())
            .filter(|i| {
                answers
                    .iter()
                    .any(|a| a.digests.get(*i) != answers[0].digests.get(*i))
            })
            .map(|i| suspects[i].clone())
            .collect();
        if suspects.is_empty() {
            return Ok(());
        }
        if round == 0 {
            // Re-checked once after the links have had time to carry the last writes.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    suspects.truncate(5);
    Err(mismatch(format!(
        "sampled values differ between nodes, e.g. {suspects:?}"
    )))
}

fn close(keys: &BTreeMap<String, u64>, expected: &BTreeMap<String, u64>, slack: u64) -> bool {
    let (a, b) = (nonzero(keys), nonzero(expected));
    a.keys().eq(b.keys()) && a.iter().all(|(db, n)| n.abs_diff(b[db]) <= slack)
}

fn nonzero(keys: &BTreeMap<String, u64>) -> BTreeMap<&str, u64> {
    keys.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(db, n)| (db.as_str(), *n))
        .collect()
}
