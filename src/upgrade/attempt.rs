//! The agent's attempt from its journaled phase to its end: switch, gate, roll back
//! when the gate fails, gate the previous generation, and report each step. The gate is
//! polled on the daemon until it holds for `gate_settle` or `gate_timeout` runs out.

use super::agent::{Agent, Done};
use super::journal::{Active, AgentPhase, Journal};
use super::now_unix;
use super::record::{GateResult, Phase};
use super::wire::{GateCheck, Step};
use std::time::{Duration, Instant};

impl Agent {
    /// Carries the journaled attempt on from its phase to its end.
    pub(super) async fn carry_on(&self, j: &mut Journal) -> Done {
        loop {
            let active = j.active.clone().ok_or("no attempt under way")?;
            match active.phase {
                AgentPhase::Switching => {
                    let running = self.gens.current()?;
                    // Already switched when the agent died? Then only the report is missing.
                    let switched = if running.meta == active.to.meta && running.id != active.from.id
                    {
                        Ok(running)
                    } else {
                        self.gens.switch(&active.to)
                    };
                    match switched {
                        Ok(now_running) => {
                            let at = now_unix();
                            if let Some(a) = j.active.as_mut() {
                                a.to = now_running;
                                a.phase = AgentPhase::Gate;
                                a.gate_since_unix = Some(at);
                            }
                            self.report(j, Step::Switched { at_unix: at }).await?;
                        }
                        Err(message) => {
                            if let Some(a) = j.active.as_mut() {
                                a.phase = AgentPhase::RollingBack;
                                // What runs now, whatever the switch left, is what goes.
                                if let Ok(r) = self.gens.current() {
                                    a.to = r;
                                }
                            }
                            self.report(j, Step::SwitchFailed { message }).await?;
                        }
                    }
                }
                AgentPhase::Gate => {
                    let gate = self.gate(j, &active).await;
                    if gate.passed {
                        self.report(j, Step::GatePassed { gate }).await?;
                        j.known_current = Some(active.to.clone());
                        j.active = None;
                        self.save(j)?;
                        return Ok(format!(
                            "attempt {}: {} passed its gate",
                            active.attempt, active.to.meta.release
                        ));
                    }
                    let seconds = gate.seconds;
                    let reasons = gate.reasons.join("; ");
                    let answer = self.report(j, Step::GateFailed { gate }).await?;
                    if answer.as_ref().is_some_and(|a| a.phase == Phase::Done) {
                        // Kept (a confirmed hand switch) or nothing to go back to.
                        j.known_current = Some(active.to.clone());
                        j.active = None;
                        self.save(j)?;
                        return Ok(format!(
                            "attempt {}: the gate failed ({reasons}); kept as the daemon says ({})",
                            active.attempt,
                            answer.and_then(|a| a.outcome).map_or("?", |o| o.as_str())
                        ));
                    }
                    eprintln!(
                        "keyfleet upgrade-agent: attempt {}: the gate failed after {seconds:.1} s ({reasons}); rolling back to {}",
                        active.attempt, active.from.id
                    );
                    if let Some(a) = j.active.as_mut() {
                        a.phase = AgentPhase::RollingBack;
                    }
                    self.save(j)?;
                }
                AgentPhase::RollingBack => {
                    let running = self.gens.current()?;
                    if running.id != active.from.id {
                        self.gens.rollback(&active.to, &active.from)?;
                    }
                    let at = now_unix();
                    if let Some(a) = j.active.as_mut() {
                        a.phase = AgentPhase::RollbackGate;
                        a.gate_since_unix = Some(at);
                    }
                    self.report(j, Step::RolledBack { at_unix: at }).await?;
                }
                AgentPhase::RollbackGate => {
                    let gate = self.gate(j, &active).await;
                    let passed = gate.passed;
                    self.report(j, Step::RollbackGate { gate }).await?;
                    j.known_current = Some(active.from.clone());
                    j.active = None;
                    self.save(j)?;
                    return Ok(format!(
                        "attempt {}: rolled back to {} ({})",
                        active.attempt,
                        active.from.id,
                        if passed {
                            "healthy"
                        } else {
                            "NOT healthy: see keyfleet upgrade status"
                        }
                    ));
                }
            }
        }
    }

    /// Asks the daemon's gate until it holds for `settle` or `timeout` passes since the
    /// generation started running. The daemon not answering counts as unhealthy.
    async fn gate(&self, j: &mut Journal, active: &Active) -> GateResult {
        let since = active.gate_since_unix.unwrap_or_else(now_unix);
        let started = Instant::now();
        let already = (now_unix() - since).max(0) as f64;
        let timeout = Duration::from_secs_f64((active.gate_timeout_seconds - already).max(1.0));
        let settle = Duration::from_secs_f64(active.gate_settle_seconds);
        let mut healthy_since: Option<Instant> = None;
        let mut reasons = vec!["no gate check has answered yet".to_owned()];
        while started.elapsed() < timeout {
            self.flush(j).await;
            let path = format!("/api/v1/upgrades/attempts/{}/gate", active.attempt);
            let answer = crate::client::call(
                crate::client::Method::Get,
                &self.api,
                &path,
                self.token.as_deref(),
                Duration::from_secs(5),
            )
            .await;
            match answer.map(serde_json::from_value::<GateCheck>) {
                Ok(Ok(c)) if c.healthy => {
                    let t = *healthy_since.get_or_insert_with(Instant::now);
                    if t.elapsed() >= settle {
                        return GateResult {
                            passed: true,
                            seconds: already + started.elapsed().as_secs_f64(),
                            reasons: Vec::new(),
                        };
                    }
                }
                Ok(Ok(c)) => {
                    healthy_since = None;
                    reasons = c.reasons();
                }
                Ok(Err(e)) => {
                    healthy_since = None;
                    reasons = vec![format!("the gate answer is not understood: {e}")];
                }
                Err(e) => {
                    healthy_since = None;
                    reasons = vec![format!("the daemon does not answer: {e}")];
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        GateResult {
            passed: false,
            seconds: already + started.elapsed().as_secs_f64(),
            reasons,
        }
    }
}
