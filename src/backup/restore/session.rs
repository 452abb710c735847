//! This node's part in an in-fleet restore (fleet restore or node rebuild), whichever
//! node coordinates it: one session at a time, named by the coordinator, each step a
//! call of `POST /api/v1/restores/steps` (or a direct call on the coordinator itself).
//! A session whose coordinator has not been heard from for `LEASE` may be taken over by
//! a new one, so a coordinator that died does not block the node for ever.
//!
//! Steps: `prepare` (checks, changes nothing), `fence`, `wipe`, `attach`/`detach`
//! (`node`: a peer's name), `remesh`, `state`, `keys` (`count`), `digests` (`keys`),
//! `finish` (links as configured, writes allowed), `cancel` to end the session after,
//! and `release` (ends it whatever it was: every configured
//! link back, writes allowed; the way out after a coordinator died).

use super::super::BackupError;
use super::local::{Local, NodeState};
use super::refused;
use crate::config::Peer;
use crate::engine::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a session lives without hearing from its coordinator.
const LEASE: Duration = Duration::from_secs(600);
/// How long a step waits for the one before it to finish.
const BUSY: Duration = Duration::from_secs(5);
const STEPS: &[&str] = &[
    "prepare", "cancel", "release", "fence", "wipe", "remesh", "attach", "detach", "state", "keys",
    "digests", "finish",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    pub session: String,
    /// The coordinating node's name.
    pub coordinator: String,
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
}

impl StepRequest {
    pub fn new(session: &str, coordinator: &str, step: &str) -> StepRequest {
        StepRequest {
            session: session.into(),
            coordinator: coordinator.into(),
            step: step.into(),
            node: None,
            keys: Vec::new(),
            count: None,
        }
    }
}

/// What a step answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepAnswer {
    pub node: String,
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<Option<String>>,
    /// The node's configured peers (`prepare`), so that the coordinator can check that
    /// every node sees the same fleet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

struct Session {
    id: String,
    coordinator: String,
    heard: Instant,
    local: Local,
}

pub struct Sessions {
    node: String,
    engine: Arc<Engine>,
    peers: Vec<Peer>,
    current: tokio::sync::Mutex<Option<Session>>,
}

/// A step named, for a session and coordinator named in a way that is safe to log, with
/// bounded work.
fn validate(req: &StepRequest) -> Result<(), BackupError> {
    let bad = |m: String| Err(refused("restore_step_invalid", m));
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._- ".contains(c))
    };
    if !STEPS.contains(&req.step.as_str()) {
        return bad(format!(
            "unknown restore step `{:.40}`; the steps are: {}",
            req.step,
            STEPS.join(", ")
        ));
    }
    if !name(&req.session) || !name(&req.coordinator) {
        return bad(
            "session and coordinator are 1 to 64 letters, digits, `.`, `_`, `-` or spaces".into(),
        );
    }
    if req.keys.len() > 1000 || req.count.is_some_and(|n| n == 0 || n > 1000) {
        return bad("at most 1000 keys per step, and count is 1 to 1000".into());
    }
    Ok(())
}

impl Sessions {
    /// `engine`: this node's engine as the restore user.
    pub fn new(node: &str, engine: Arc<Engine>, peers: Vec<Peer>) -> Sessions {
        Sessions {
            node: node.into(),
            engine,
            peers,
            current: tokio::sync::Mutex::new(None),
        }
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Whether a restore holds this node: a step is running, or one was heard from in
    /// the last 30 s (the replication canary pauses meanwhile: see `safety::canary`).
    pub fn active(&self) -> bool {
        match self.current.try_lock() {
            Ok(current) => current
                .as_ref()
                .is_some_and(|s| s.heard.elapsed() < Duration::from_secs(30)),
            Err(_) => true,
        }
    }

    fn peer(&self, name: Option<&str>) -> Result<&Peer, BackupError> {
        let name = name.unwrap_or("");
        self.peers.iter().find(|p| p.name == name).ok_or_else(|| {
            refused(
                "restore_step_invalid",
                format!("`{name}` is not a peer of node {}", self.node),
            )
        })
    }

    /// Runs one step of session `req.session`.
    pub async fn step(&self, req: &StepRequest) -> Result<StepAnswer, BackupError> {
        validate(req)?;
        let mut current = tokio::time::timeout(BUSY, self.current.lock())
            .await
            .map_err(|_| {
                refused(
                    "restore_in_progress",
                    format!("node {} is busy with a restore step", self.node),
                )
            })?;
        let mut answer = StepAnswer {
            node: self.node.clone(),
            state: NodeState::default(),
            keys: Vec::new(),
            digests: Vec::new(),
            peers: Vec::new(),
        };
        match req.step.as_str() {
            "prepare" => {
                if let Some(s) = current.as_ref()
                    && s.id != req.session
                    && s.heard.elapsed() < LEASE
                {
                    return Err(refused(
                        "restore_in_progress",
                        format!(
                            "node {} takes part in restore {} coordinated by {}",
                            self.node, s.id, s.coordinator
                        ),
                    ));
                }
                let local = Local::new(self.engine.clone(), self.peers.clone());
                answer.state = local.check().await?;
                answer.peers = self.peers.iter().map(|p| p.name.clone()).collect();
                *current = Some(Session {
                    id: req.session.clone(),
                    coordinator: req.coordinator.clone(),
                    heard: Instant::now(),
                    local,
                });
                return Ok(answer);
            }
            "cancel" => {
                if current.as_ref().is_some_and(|s| s.id == req.session) {
                    *current = None;
                }
                answer.state = Local::new(self.engine.clone(), self.peers.clone())
                    .state()
                    .await?;
                return Ok(answer);
            }
            "release" => {
                let mut local = match current.take() {
                    Some(s) => s.local,
                    None => Local::new(self.engine.clone(), self.peers.clone()),
                };
                answer.state = local.finish().await?;
                tracing::info!(session = %req.session, "restore released on this node: every configured link back, writes allowed");
                return Ok(answer);
            }
            _ => {}
        }
        let session = match current.as_mut() {
            Some(s) if s.id == req.session => s,
            _ => {
                return Err(refused(
                    "restore_session_unknown",
                    format!(
                        "node {} has no restore session {} (expired or never prepared)",
                        self.node, req.session
                    ),
                ));
            }
        };
        session.heard = Instant::now();
        let local = &mut session.local;
        answer.state = match req.step.as_str() {
            "fence" => local.fence().await?,
            "wipe" => local.wipe().await?,
            "remesh" => local.remesh().await?,
            "attach" => {
                local.attach(self.peer(req.node.as_deref())?).await?;
                local.state().await?
            }
            "detach" => {
                local.detach(self.peer(req.node.as_deref())?).await?;
                local.state().await?
            }
            "state" => local.state().await?,
            "keys" => {
                answer.keys = local.some_keys(req.count.unwrap_or(100)).await?;
                local.state().await?
            }
            "digests" => {
                answer.digests = local.digests(&req.keys).await?;
                local.state().await?
            }
            "finish" => local.finish().await?,
            other => {
                return Err(refused(
                    "restore_step_invalid",
                    format!("unknown restore step `{other}`"),
                ));
            }
        };
        Ok(answer)
    }

    /// Runs `f` on this node's session `id` (the coordinator's own load), holding it.
    pub async fn with_local<T>(
        &self,
        id: &str,
        f: impl AsyncFnOnce(&mut Local) -> Result<T, BackupError>,
    ) -> Result<T, BackupError> {
        let mut current = self.current.lock().await;
        match current.as_mut() {
            Some(s) if s.id == id => {
                s.heard = Instant::now();
                f(&mut s.local).await
            }
            _ => Err(refused(
                "restore_session_unknown",
                format!("node {} has no restore session {id}", self.node),
            )),
        }
    }
}
