//! Node rebuild: this node's data is lost or suspect; it is emptied, copied from one
//! healthy peer, and rejoins the mesh. The peers' data is untouched; only their links
//! to this node are cut while it is empty, so that neither the wipe nor the emptiness
//! travels to them. Coordinated by the node rebuilt:
//!
//! 1. `prepare` on every node; one that cannot be asked ends the rebuild here, before
//!    anything changed (its engine would still replicate from this one).
//! 2. The source: the peer named, or the first peer in name order whose links are all
//!    up and synced.
//! 3. `detach` this node on every peer; `fence` here (writes refused, links cut, the
//!    hold attached); `wipe` here, only once no peer replicates from it.
//! 4. Here: attach the source and wait for its full sync, then the other peers.
//! 5. `finish` here (writes allowed again), `attach` this node on every peer.
//! 6. Verify: keys per db and a sample of values equal to the source's.
//!
//! A failure at any point puts every link back (`release`): this node then holds only
//! what its peers sent it, so re-linking can bring nothing stale back.

use super::super::{BackupError, Backups};
use super::fleet::{converged, heartbeat, verify};
use super::history::Record;
use super::members::{Member, Members};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Backups {
    /// Checks, prepares every node and starts rebuilding this node from `from` (a
    /// peer's name; None: the first healthy one).
    pub async fn rebuild(
        self: &Arc<Self>,
        from: Option<&str>,
        requested_by: &str,
    ) -> Result<Record, BackupError> {
        let guard = self.restores.one_at_a_time()?;
        let id = super::new_id()?;
        let members = self.restores.members(id.clone());
        let all = members.all();
        if all.len() < 2 {
            return Err(BackupError::new(
                "restore_no_source",
                "this node has no peers to rebuild from".into(),
            ));
        }
        let prepared = self.prepare_all(&members).await?;
        let healthy = |i: usize| {
            let s = &prepared[i].state;
            !s.loading && !s.masters.is_empty() && s.masters.values().all(|up| *up)
        };
        let source = (1..all.len()).find(|i| match from {
            Some(name) => members.name(all[*i]) == name,
            None => healthy(*i),
        });
        let source = match source {
            Some(i) if healthy(i) => all[i].expect("a peer"),
            found => {
                let _ = members.each(&all, "cancel").await;
                let why = match (from, found) {
                    (Some(name), None) => format!("`{name}` is not a peer of this node"),
                    (Some(name), Some(_)) => format!(
                        "peer {name} is not healthy (a link down or syncing): {:?}",
                        prepared
                            .iter()
                            .find(|a| a.node == name)
                            .map(|a| &a.state.masters)
                    ),
                    (None, _) => "no peer has all its links up and synced".into(),
                };
                return Err(BackupError::new("restore_no_source", why));
            }
        };
        let record = self.restores.record(
            &id,
            "",
            "rebuild",
            &format!("{} from {}", members.me, source.name),
            requested_by,
            BTreeMap::new(),
        );
        let me = self.clone();
        let source = source.clone();
        tokio::spawn(async move {
            let _one_at_a_time = guard;
            let members = me.restores.members(id.clone());
            let result = match me.rebuild_here(&members, &source).await {
                Ok(keys) => Ok(keys),
                Err(e) => Err(me.put_back(&members, e, "the rebuild stopped").await),
            };
            me.restores.finished(&me.metrics, &id, result);
        });
        Ok(record)
    }

    async fn rebuild_here(
        &self,
        members: &Members<'_>,
        source: &crate::config::Peer,
    ) -> Result<BTreeMap<String, u64>, BackupError> {
        let all = members.all();
        let peers: Vec<Member> = all[1..].to_vec();
        let phase = |p: &str| self.restores.phase(&members.session, p);
        let mut about_me = members.request("detach");
        about_me.node = Some(members.me.clone());

        phase("fence");
        members.each_with(&peers, &about_me).await?;
        members.step(None, "fence").await?;

        phase("wipe");
        // The peers' replica connections close a moment after they let go.
        let mut tries = 0;
        while members.step(None, "state").await?.state.connected_replicas > 0 && tries < 50 {
            tries += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        members.step(None, "wipe").await?;

        phase("sync");
        let mut attach = members.request("attach");
        attach.node = Some(source.name.clone());
        members.on(None, &attach).await?;
        let hour = Duration::from_secs(3600);
        heartbeat(members, &peers, converged(members, &[None], 2, hour)).await?;
        members.step(None, "remesh").await?;
        heartbeat(
            members,
            &peers,
            converged(members, &[None], all.len(), hour),
        )
        .await?;

        phase("rejoin");
        members.step(None, "finish").await?;
        about_me.step = "attach".into();
        members.each_with(&peers, &about_me).await?;
        converged(members, &all, peers.len(), hour).await?;

        phase("verify");
        let source_member: Member = Some(source);
        let expected = members.step(source_member, "state").await?.state.keys;
        // The fleet takes writes meanwhile: counts may differ by what is in flight.
        let slack = expected.values().max().copied().unwrap_or(0) / 100 + 100;
        verify(members, &[source_member, None], &expected, slack).await?;
        members.each(&peers, "finish").await?;
        let keys = members.step(None, "state").await?.state.keys;
        let _ = members.each(&all, "cancel").await;
        Ok(keys)
    }
}
