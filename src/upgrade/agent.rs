//! `keyfleet upgrade-agent`: the privileged half (root, a oneshot on NixOS, started by a
//! timer and on request). It asks the daemon what to do and does only the switching:
//! switch to the candidate, wait for the daemon's gate, roll back when it fails, and
//! report every step. Before each step it writes its journal, so a killed agent resumes
//! (or rolls back) on its next start and no attempt is left unrecorded. A daemon that
//! does not answer during a gate counts as unhealthy: a generation whose daemon is
//! broken is rolled back too.

use super::generations::{Generation, Generations};
use super::journal::{Active, AgentPhase, Journal, JournalFile};
use super::now_unix;
use super::record::{Attempt, Phase};
use super::wire::{Decision, Event, PlanAnswer, PlanRequest, Step};
use crate::config::Config;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The node's keyfleet.toml (the daemon's).
    #[arg(long)]
    pub config: PathBuf,
    /// Run again this long after each run, until stopped (`keyfleet dev` plays the
    /// timer this way); without it, run once.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub every: Option<Duration>,
    /// The API token, instead of the config's `api.token_file` (a relative path is
    /// looked up in `$CREDENTIALS_DIRECTORY`, where the agent's unit puts it).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

pub fn main(args: AgentArgs) -> u8 {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyfleet upgrade-agent: {e}");
            return 2;
        }
    };
    let mut config = config;
    if let Some(f) = &args.token_file {
        config.api.token_file = Some(f.clone());
    }
    let token = match config.read_api_token(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("keyfleet upgrade-agent: {e}");
            return 2;
        }
    };
    let Some(ucfg) = config.upgrades.clone() else {
        eprintln!(
            "keyfleet upgrade-agent: {}: upgrades are not configured (no [upgrades] table)",
            args.config.display()
        );
        return 2;
    };
    let gens = match super::generations::open(&config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("keyfleet upgrade-agent: {e}");
            return 2;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut last_line = String::new();
    let agent = Agent {
        api: api_url(&config),
        token,
        gens,
        journal: JournalFile::new(&ucfg.agent_state_dir),
        request: config.state_dir.join("upgrade-request"),
    };
    loop {
        let result = rt.block_on(agent.run_once());
        let code = match result {
            // The same wait, run after run, is said once.
            Ok(line) => {
                if !line.is_empty() && line != last_line {
                    println!("keyfleet upgrade-agent: {line}");
                }
                last_line = line;
                0
            }
            Err(e) => {
                if e != last_line {
                    eprintln!("keyfleet upgrade-agent: {e}");
                }
                last_line = e;
                1
            }
        };
        let Some(every) = args.every else { return code };
        agent.sleep_or_woken(every);
    }
}

/// The daemon's API on this host.
fn api_url(config: &Config) -> String {
    let addr = config.api.listen;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("http://{host}:{}", addr.port())
}

pub struct Agent {
    pub(super) api: String,
    pub(super) token: Option<String>,
    pub(super) gens: Box<dyn Generations>,
    journal: JournalFile,
    /// The daemon touches this to wake the agent.
    request: PathBuf,
}

/// Everything the agent does ends up as one line of output; errors are Err.
pub(super) type Done = Result<String, String>;

impl Agent {
    fn sleep_or_woken(&self, every: Duration) {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let before = mtime(&self.request);
        let deadline = Instant::now() + every;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if mtime(&self.request) != before {
                return;
            }
        }
    }

    pub(super) fn save(&self, j: &Journal) -> Result<(), String> {
        self.journal.save(j)
    }

    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<serde_json::Value, String> {
        let body = serde_json::to_value(body).expect("json");
        crate::client::call(
            crate::client::Method::PostJson(body),
            &self.api,
            path,
            self.token.as_deref(),
            // A plan may wait for a backup before a minor or major upgrade.
            Duration::from_secs(3600),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Sends what the daemon has not acknowledged, in order; stops at the first that
    /// does not go through (it is sent again later). The last answer, if any.
    pub(super) async fn flush(&self, j: &mut Journal) -> Option<Attempt> {
        let mut last = None;
        while let Some((id, ev)) = j.outbox.first().cloned() {
            match self
                .post(&format!("/api/v1/upgrades/attempts/{id}/events"), &ev)
                .await
            {
                Ok(v) => {
                    last = serde_json::from_value(v).ok();
                    j.outbox.remove(0);
                    let _ = self.save(j);
                }
                Err(e) => {
                    tracing::debug!("event {} of {id} not delivered yet: {e}", ev.seq);
                    break;
                }
            }
        }
        last
    }

    /// Journals a step, then tries to tell the daemon; returns its view if it answered.
    pub(super) async fn report(
        &self,
        j: &mut Journal,
        step: Step,
    ) -> Result<Option<Attempt>, String> {
        let active = j.active.as_mut().ok_or("no attempt under way")?;
        active.seq += 1;
        let ev = Event {
            seq: active.seq,
            step,
        };
        j.outbox.push((active.attempt.clone(), ev));
        self.save(j)?;
        Ok(self.flush(j).await)
    }

    pub async fn run_once(&self) -> Done {
        let mut j = self.journal.load()?;
        self.flush(&mut j).await;
        if j.active.is_some() {
            return self.carry_on(&mut j).await;
        }
        let current = self.gens.current()?;
        let manual_from = match &j.known_current {
            Some(k) if k.id != current.id => Some(k.clone()),
            _ => None,
        };
        let candidate = match self.gens.candidate() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("keyfleet upgrade-agent: no candidate: {e}");
                None
            }
        };
        let req = PlanRequest {
            current: current.meta.clone(),
            candidate: candidate.as_ref().map(|c| c.meta.clone()),
            manual_from: manual_from.as_ref().map(|m| m.meta.clone()),
        };
        let v = self.post("/api/v1/upgrades/plan", &req).await?;
        let ans: PlanAnswer = serde_json::from_value(v).map_err(|e| format!("plan answer: {e}"))?;
        let begin = |attempt: &Attempt, from: Generation, to: Generation, phase| Active {
            attempt: attempt.id.clone(),
            kind: attempt.kind.clone(),
            from,
            to,
            phase,
            gate_since_unix: attempt.switched_at_unix,
            gate_timeout_seconds: ans.gate_timeout_seconds,
            gate_settle_seconds: ans.gate_settle_seconds,
            seq: attempt.events_applied,
        };
        match (ans.decision, &ans.attempt) {
            (Decision::Go, Some(a)) => {
                let to = candidate.ok_or("the daemon said go without a candidate")?;
                j.active = Some(begin(a, current, to, AgentPhase::Switching));
                self.save(&j)?;
                self.carry_on(&mut j).await
            }
            (Decision::GateManual, Some(a)) => {
                let from = manual_from.ok_or("the daemon gates a hand switch nobody made")?;
                j.active = Some(begin(a, from, current, AgentPhase::Gate));
                self.save(&j)?;
                self.carry_on(&mut j).await
            }
            (Decision::Resume, Some(a)) => self.adopt(&mut j, a, current, &ans).await,
            (Decision::Rollback, _) => {
                let Some(prev) = self.gens.previous()? else {
                    return Err(
                        "a rollback was asked for, but there is no previous generation".into(),
                    );
                };
                // Switched first, then gated as a hand switch the operator asked for.
                self.gens.switch(&prev)?;
                j.known_current = Some(current);
                self.save(&j)?;
                eprintln!(
                    "keyfleet upgrade-agent: rolled back to {} on request; its gate runs now",
                    prev.id
                );
                Box::pin(self.run_once()).await
            }
            (Decision::Nothing, _) => {
                j.known_current = Some(current);
                self.save(&j)?;
                Ok(String::new())
            }
            (d, _) => {
                j.known_current = Some(current);
                self.save(&j)?;
                let word = if d == Decision::Deny {
                    "denied"
                } else {
                    "waiting"
                };
                Ok(format!("{word}: {}", ans.reason))
            }
        }
    }

    /// The daemon holds an attempt this agent's journal lost: take it up from what runs.
    async fn adopt(
        &self,
        j: &mut Journal,
        a: &Attempt,
        current: Generation,
        ans: &PlanAnswer,
    ) -> Done {
        let mut active = Active {
            attempt: a.id.clone(),
            kind: a.kind.clone(),
            from: current.clone(),
            to: current.clone(),
            phase: AgentPhase::Gate,
            gate_since_unix: a.switched_at_unix,
            gate_timeout_seconds: ans.gate_timeout_seconds,
            gate_settle_seconds: ans.gate_settle_seconds,
            seq: a.events_applied,
        };
        let prev = self.gens.previous()?;
        match a.phase {
            Phase::Switching if current.meta == a.from => {
                j.active = Some(active);
                self.report(
                    j,
                    Step::Aborted {
                        reason: "the agent lost its journal before switching".into(),
                    },
                )
                .await?;
                j.active = None;
                self.save(j)?;
                return Ok(format!("attempt {} aborted: nothing had changed", a.id));
            }
            Phase::Switching | Phase::Gate if current.meta == a.to => {
                let prev = prev.ok_or("no previous generation to roll back to")?;
                active.from = prev;
                if a.phase == Phase::Switching {
                    j.active = Some(active);
                    self.report(
                        j,
                        Step::Switched {
                            at_unix: now_unix(),
                        },
                    )
                    .await?;
                } else {
                    j.active = Some(active);
                }
            }
            _ => {
                active.phase = AgentPhase::RollbackGate;
                active.gate_since_unix = a.rolled_back_at_unix.or(Some(now_unix()));
                j.active = Some(active);
            }
        }
        self.save(j)?;
        self.carry_on(j).await
    }
}
