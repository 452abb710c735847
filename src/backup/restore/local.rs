//! What an in-fleet restore does to this node's own engine, step by step, with the
//! restore user's connection (`[backups] restore_user`): every change is a run-time
//! command (`CONFIG SET replica-read-only`, `REPLICAOF host port`, KeyDB's `REPLICAOF
//! REMOVE host port`, and `FLUSHALL` sent by the hold), so the engine is never
//! restarted and none of its files is touched. The static config keeps naming the
//! peers: a restarted engine comes back fully meshed, and `finish` leaves the run-time
//! links exactly as the config names them.

use super::super::BackupError;
use super::failed;
use super::hold::Hold;
use crate::config::Peer;
use crate::engine::info::Info;
use crate::engine::{Engine, EngineError, Target, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// This node's engine as a restore sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeState {
    /// Keys per db (`db0`, ...).
    pub keys: BTreeMap<String, u64>,
    /// Keys with a TTL per db: those may expire while a restore runs.
    pub expires: BTreeMap<String, u64>,
    /// The masters it replicates from, as `host:port`, and whether each link is up
    /// with no sync running.
    pub masters: BTreeMap<String, bool>,
    /// Engines replicating from it.
    pub connected_replicas: u64,
    pub loading: bool,
}

pub(super) fn engine_error(e: EngineError) -> BackupError {
    if e.code() == "engine_no_permission" {
        return BackupError::new(
            "restore_no_permission",
            format!(
                "{e}; the restore user needs the rules in src/engine/restore.acl ([backups] restore_user)"
            ),
        );
    }
    BackupError::new(e.code(), e.to_string())
}

/// The engine of this node and the peers its config names.
pub struct Local {
    pub engine: Arc<Engine>,
    pub peers: Vec<Peer>,
    hold: Option<Hold>,
}

impl Local {
    pub fn new(engine: Arc<Engine>, peers: Vec<Peer>) -> Local {
        Local {
            engine,
            peers,
            hold: None,
        }
    }

    async fn info(&self) -> Result<Info, BackupError> {
        self.engine.info().await.map_err(engine_error)
    }

    async fn run(&self, command: &'static str, args: &[&str]) -> Result<Value, BackupError> {
        self.engine
            .command(command, args)
            .await
            .map_err(engine_error)
    }

    pub async fn state(&self) -> Result<NodeState, BackupError> {
        Ok(state_of(&self.info().await?))
    }

    /// Checks that a restore can run here: the engine answers, is a KeyDB active
    /// replica, and the restore user may read its replication settings. Changes nothing.
    pub async fn check(&self) -> Result<NodeState, BackupError> {
        let active = self.config_get("active-replica").await?;
        if active != "yes" {
            return Err(BackupError::new(
                "restore_engine_unsupported",
                "the engine is not a KeyDB active replica; fleet restore and node rebuild need KeyDB multi-master".into(),
            ));
        }
        self.config_get("masterauth").await?;
        self.state().await
    }

    async fn config_get(&self, name: &str) -> Result<String, BackupError> {
        match self.run("CONFIG", &["GET", name]).await? {
            Value::Array(kv) => Ok(match kv.into_iter().nth(1) {
                Some(Value::Bulk(v)) => String::from_utf8_lossy(&v).into_owned(),
                _ => String::new(),
            }),
            _ => Ok(String::new()),
        }
    }

    /// Refuses client writes (`READONLY`), attaches the hold as a master and cuts every
    /// other link this engine pulls from. Peers still replicating from it are cut by
    /// their own `fence` (or `detach`).
    pub async fn fence(&mut self) -> Result<NodeState, BackupError> {
        self.run("CONFIG", &["SET", "replica-read-only", "yes"])
            .await?;
        if self.hold.is_none() {
            let auth = self.config_get("masterauth").await?;
            let ip = self.reach_ip().await?;
            self.hold = Some(Hold::start(ip, (!auth.is_empty()).then_some(auth)).await?);
        }
        let hold = self.hold_addr().expect("just started");
        let (ip, port) = (hold.ip().to_string(), hold.port().to_string());
        let info = self.info().await?;
        if !info.masters().iter().any(|m| is(m.host, m.port, &hold)) {
            self.run("REPLICAOF", &[&ip, &port]).await?;
        }
        self.wait("the hold's link to come up", Duration::from_secs(30), |s| {
            s.masters.get(&hold.to_string()) == Some(&true)
        })
        .await?;
        for m in self.info().await?.masters() {
            if !is(m.host, m.port, &hold) {
                self.remove(m.host, m.port).await?;
            }
        }
        self.state().await
    }

    fn hold_addr(&self) -> Option<std::net::SocketAddr> {
        self.hold.as_ref().map(|h| h.addr)
    }

    async fn remove(&self, host: &str, port: u16) -> Result<(), BackupError> {
        match self
            .run("REPLICAOF", &["REMOVE", host, &port.to_string()])
            .await
        {
            Err(e) if e.message.contains("Master not found") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Empties the engine by `FLUSHALL` from the hold, once nothing replicates from it
    /// and it replicates from nothing else: a wipe must never travel to a peer.
    pub async fn wipe(&self) -> Result<NodeState, BackupError> {
        let Some(hold) = &self.hold else {
            return Err(failed("wipe before fence".into()));
        };
        // Twice, more than a replication cron tick apart: a peer that let go of this
        // engine but still had it configured would be back within a second.
        for check in 0..2 {
            if check > 0 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            let s = self.state().await?;
            let others: Vec<&String> = s
                .masters
                .keys()
                .filter(|m| **m != hold.addr.to_string())
                .collect();
            if s.connected_replicas > 0 || !others.is_empty() {
                return Err(BackupError::new(
                    "restore_not_isolated",
                    format!(
                        "refusing to empty the engine: {} engines replicate from it and it still pulls from {others:?}",
                        s.connected_replicas
                    ),
                ));
            }
        }
        hold.flushall().await?;
        self.wait("the engine to be empty", Duration::from_secs(60), |s| {
            s.keys.values().all(|k| *k == 0)
        })
        .await
    }

    /// Serves `len` bytes of RDB from `rdb` through the hold and waits until the engine
    /// has loaded them.
    pub async fn load(
        &self,
        len: u64,
        rdb: tokio::sync::mpsc::Receiver<hyper::body::Bytes>,
    ) -> Result<NodeState, BackupError> {
        let Some(hold) = &self.hold else {
            return Err(failed("load before fence".into()));
        };
        hold.serve(len, rdb).await?;
        let addr = hold.addr.to_string();
        self.wait(
            "the engine to load the backup",
            Duration::from_secs(3600),
            |s| s.masters.get(&addr) == Some(&true) && !s.loading,
        )
        .await
    }

    /// Makes the engine replicate from `peer` (a configured one) again.
    pub async fn attach(&self, peer: &Peer) -> Result<(), BackupError> {
        let info = self.info().await?;
        if info
            .masters()
            .iter()
            .any(|m| m.host == peer.address && m.port == peer.replication_port())
        {
            return Ok(());
        }
        self.run(
            "REPLICAOF",
            &[&peer.address, &peer.replication_port().to_string()],
        )
        .await
        .map(drop)
    }

    /// Stops the engine replicating from `peer`.
    pub async fn detach(&self, peer: &Peer) -> Result<(), BackupError> {
        self.remove(&peer.address, peer.replication_port()).await
    }

    /// Attaches every configured peer.
    pub async fn remesh(&self) -> Result<NodeState, BackupError> {
        for p in &self.peers {
            self.attach(p).await?;
        }
        self.state().await
    }

    /// Ends the restore here: every configured peer attached, every other master (the
    /// hold, a hold a crashed restore left) removed, client writes allowed again.
    pub async fn finish(&mut self) -> Result<NodeState, BackupError> {
        // The hold goes first: its master entry stays (so the fence holds) but nothing
        // can arrive on it any more once peers are linked.
        self.hold = None;
        self.remesh().await?;
        for m in self.info().await?.masters() {
            let configured = self
                .peers
                .iter()
                .any(|p| p.address == m.host && p.replication_port() == m.port);
            if !configured {
                self.remove(m.host, m.port).await?;
            }
        }
        // KeyDB's `active-replica yes` implies `replica-read-only no`.
        self.run("CONFIG", &["SET", "replica-read-only", "no"])
            .await?;
        self.state().await
    }

    /// Up to `n` keys of db 0 (UTF-8 names only), from the start of a SCAN.
    pub async fn some_keys(&self, n: usize) -> Result<Vec<String>, BackupError> {
        let mut keys = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let reply = self.run("SCAN", &[&cursor, "COUNT", "100"]).await?;
            let Value::Array(mut parts) = reply else {
                break;
            };
            if parts.len() != 2 {
                break;
            }
            if let Value::Array(names) = parts.pop().expect("two parts") {
                keys.extend(names.into_iter().filter_map(|v| match v {
                    Value::Bulk(b) => String::from_utf8(b).ok(),
                    _ => None,
                }));
            }
            cursor = match parts.pop() {
                Some(Value::Bulk(c)) => String::from_utf8_lossy(&c).into_owned(),
                _ => break,
            };
            if cursor == "0" || keys.len() >= n {
                break;
            }
        }
        keys.truncate(n);
        Ok(keys)
    }

    /// Each key's value digest (SHA-256 of its `DUMP` without CRC and KeyDB's
    /// `mvcc-tstamp`), or None when the key does not exist.
    pub async fn digests(&self, keys: &[String]) -> Result<Vec<Option<String>>, BackupError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(match self.run("DUMP", &[key]).await? {
                Value::Bulk(b) => Some(crate::engine::value_digest(&b)),
                _ => None,
            });
        }
        Ok(out)
    }

    /// The address the engine reaches this daemon by: the local end of a connection to
    /// it (loopback for a unix socket).
    async fn reach_ip(&self) -> Result<std::net::IpAddr, BackupError> {
        match self.engine.target() {
            Target::Unix(_) => Ok(std::net::Ipv4Addr::LOCALHOST.into()),
            Target::Tcp { host, port } => {
                let probe = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| {
                        BackupError::new("engine_unreachable", format!("{host}:{port}: {e}"))
                    })?;
                probe
                    .local_addr()
                    .map(|a| a.ip())
                    .map_err(|e| failed(e.to_string()))
            }
        }
    }

    /// Polls the engine until `done` holds for its state, for at most `limit`.
    async fn wait(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&NodeState) -> bool,
    ) -> Result<NodeState, BackupError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let s = self.state().await?;
            if done(&s) {
                return Ok(s);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(failed(format!(
                    "waited {limit:?} for {what}; the engine reports {s:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn is(host: &str, port: u16, addr: &std::net::SocketAddr) -> bool {
    port == addr.port() && host.parse::<std::net::IpAddr>().ok() == Some(addr.ip())
}

fn state_of(info: &Info) -> NodeState {
    NodeState {
        keys: info
            .dbs()
            .map(|d| (format!("db{}", d.db), d.keys))
            .collect(),
        expires: info
            .dbs()
            .map(|d| (format!("db{}", d.db), d.expires))
            .collect(),
        masters: info
            .masters()
            .iter()
            .map(|m| {
                let addr = if m.host.contains(':') {
                    format!("[{}]:{}", m.host, m.port)
                } else {
                    format!("{}:{}", m.host, m.port)
                };
                (addr, m.link_up && !m.sync_in_progress)
            })
            .collect(),
        connected_replicas: info.get_u64("connected_slaves").unwrap_or(0),
        loading: info.get("loading") == Some("1"),
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod engine_tests;
