//! How a coordinating daemon runs a step on a member of the fleet: on itself directly,
//! on a peer through the peer's `POST /api/v1/restores/steps` (with the fleet's token).
//! A peer that cannot be reached or refuses fails the step with the peer named.

use super::super::BackupError;
use super::session::{Sessions, StepAnswer, StepRequest};
use crate::config::Peer;
use std::time::Duration;

/// The longest step (`wipe` waits up to a minute for the engine) and some margin.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Steps that only read (and `prepare`, which decides whether to start at all): a peer
/// that hangs must not hold the operator up for minutes.
const QUICK_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer's refusals that keep their code when the coordinator reports them.
const PASSED_ON: &[&str] = &[
    "restore_engine_unsupported",
    "restore_in_progress",
    "restore_no_permission",
    "restore_not_isolated",
    "restore_session_unknown",
    "backups_not_configured",
];

/// A member: this node (None) or a peer.
pub type Member<'a> = Option<&'a Peer>;

pub struct Members<'a> {
    pub sessions: &'a Sessions,
    pub token: Option<&'a str>,
    pub session: String,
    pub me: String,
}

impl Members<'_> {
    /// Every member, this node first.
    pub fn all(&self) -> Vec<Member<'_>> {
        std::iter::once(None)
            .chain(self.sessions.peers().iter().map(Some))
            .collect()
    }

    pub fn name<'b>(&'b self, m: Member<'b>) -> &'b str {
        m.map_or(self.me.as_str(), |p| p.name.as_str())
    }

    pub fn request(&self, step: &str) -> StepRequest {
        StepRequest::new(&self.session, &self.me, step)
    }

    pub async fn on(&self, m: Member<'_>, req: &StepRequest) -> Result<StepAnswer, BackupError> {
        match m {
            None => self.sessions.step(req).await,
            Some(peer) => self.remote(peer, req).await,
        }
    }

    pub async fn step(&self, m: Member<'_>, step: &str) -> Result<StepAnswer, BackupError> {
        self.on(m, &self.request(step)).await
    }

    /// `step` on every member of `ms` at once; the first failure, once all are done.
    pub async fn each(
        &self,
        ms: &[Member<'_>],
        step: &str,
    ) -> Result<Vec<StepAnswer>, BackupError> {
        self.each_with(ms, &self.request(step)).await
    }

    /// `req` on every member of `ms` at once; the first failure, once all are done.
    pub async fn each_with(
        &self,
        ms: &[Member<'_>],
        req: &StepRequest,
    ) -> Result<Vec<StepAnswer>, BackupError> {
        let all = futures::future::join_all(ms.iter().map(|m| self.on(*m, req))).await;
        all.into_iter().collect()
    }

    async fn remote(&self, peer: &Peer, req: &StepRequest) -> Result<StepAnswer, BackupError> {
        let url = format!("{}/api/v1/restores/steps", peer.api_url());
        let body = serde_json::to_vec(req).expect("a step is JSON");
        let name = &peer.name;
        let unreachable = |why: String| {
            BackupError::new(
                "restore_peer_unreachable",
                format!("node {name} ({url}) cannot be asked: {why}"),
            )
        };
        let limit = match req.step.as_str() {
            "prepare" | "cancel" | "state" => QUICK_TIMEOUT,
            _ => STEP_TIMEOUT,
        };
        let sent = crate::http_client::post_json(&url, self.token, body.into(), &[]);
        let resp = tokio::time::timeout(limit, sent)
            .await
            .map_err(|_| unreachable(format!("no answer within {limit:?}")))?
            .map_err(|e| unreachable(crate::http_client::error_chain(&e)))?;
        if resp.status == 200 {
            return serde_json::from_slice(&resp.body)
                .map_err(|e| unreachable(format!("its answer is not a step answer: {e}")));
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let (code, message) = (&v["error"]["code"], &v["error"]["message"]);
        // A refusal that means the same on any node keeps its code.
        let kept = code
            .as_str()
            .and_then(|c| PASSED_ON.iter().find(|k| **k == c).copied());
        Err(BackupError::new(
            kept.unwrap_or("restore_peer_failed"),
            format!(
                "node {name}: step {} failed with HTTP {}: {} ({})",
                req.step,
                resp.status,
                message.as_str().unwrap_or("no message"),
                code.as_str().unwrap_or("no code")
            ),
        ))
    }
}
