//! A dev node's engine and upgrade agent, supervised the way systemd would on NixOS:
//! the engine runs the generation `generations/current` points at and is restarted
//! when the agent points it elsewhere (what `switch-to-configuration` does to a unit
//! whose config changed); an engine that exits is reported and left down until the
//! next switch. The agent runs on a timer (`--every`) and is started again if it dies,
//! as the timer would.

use super::supervise::{Supervised, spawn_logging};
use crate::upgrade::generations::Running;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct NodeProcs {
    pub name: String,
    node_dir: PathBuf,
    gens: PathBuf,
    pub engine: Option<Supervised>,
    engine_generation: String,
    pub agent: Option<Supervised>,
    agent_cmd: Option<(PathBuf, PathBuf)>,
    agent_again_at: Option<Instant>,
}

impl NodeProcs {
    pub fn new(name: &str, node_dir: &Path, gens: &Path) -> NodeProcs {
        NodeProcs {
            name: name.to_owned(),
            node_dir: node_dir.to_owned(),
            gens: gens.to_owned(),
            engine: None,
            engine_generation: String::new(),
            agent: None,
            agent_cmd: None,
            agent_again_at: None,
        }
    }

    fn current(&self) -> Option<String> {
        std::fs::read_link(self.gens.join("current"))
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }

    /// Starts the engine of the current generation and says so in `running.json`.
    pub fn start_engine(&mut self) -> Result<u32, String> {
        let generation = self
            .current()
            .ok_or_else(|| format!("{}: no current generation", self.gens.display()))?;
        let dir = self.gens.join(&generation);
        let append = self.engine.is_some() || !self.engine_generation.is_empty();
        let child = spawn_logging(
            Command::new(dir.join("engine")).arg(dir.join("engine.conf")),
            &self.node_dir.join("engine.log"),
            append,
        )?;
        let pid = child.id();
        let running = Running {
            generation: generation.clone(),
            pid,
            started_at_unix: crate::upgrade::now_unix(),
        };
        let json = serde_json::to_string(&running).expect("json");
        let path = self.gens.join("running.json");
        let tmp = self.gens.join("running.json.tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        self.engine = Some(Supervised {
            what: format!("{} engine", self.name),
            child,
            exited: false,
        });
        self.engine_generation = generation;
        Ok(pid)
    }

    /// Runs `keyfleet upgrade-agent --config CONFIG --every 1s`.
    pub fn start_agent(&mut self, me: &Path, config: &Path) -> Result<(), String> {
        self.agent_cmd = Some((me.to_owned(), config.to_owned()));
        let mut cmd = Command::new(me);
        cmd.args(["upgrade-agent", "--every", "1s", "--config"])
            .arg(config)
            .env("RUST_LOG", "info");
        let append = self.agent.is_some();
        let child = spawn_logging(&mut cmd, &self.node_dir.join("agent.log"), append)?;
        let _ = std::fs::write(self.node_dir.join("agent.pid"), format!("{}\n", child.id()));
        self.agent = Some(Supervised {
            what: format!("{} upgrade agent", self.name),
            child,
            exited: false,
        });
        Ok(())
    }

    /// One supervision round; returns what is worth a line on stderr.
    pub fn poll(&mut self) -> Vec<String> {
        let mut said = Vec::new();
        if let Some(e) = self.engine.as_mut().filter(|e| !e.exited)
            && let Ok(Some(status)) = e.child.try_wait()
        {
            e.exited = true;
            said.push(format!(
                "{} engine ({}) exited ({status}); it starts again on the next switch",
                self.name, self.engine_generation
            ));
        }
        if let Some(current) = self.current()
            && current != self.engine_generation
        {
            if let Some(old) = self.engine.take() {
                super::supervise::stop_all(vec![old]);
            }
            said.push(match self.start_engine() {
                Ok(pid) => format!("{} engine restarted for {current} (pid {pid})", self.name),
                Err(e) => format!("{} engine could not start for {current}: {e}", self.name),
            });
            // The failed start is not retried in a loop: the next switch tries again.
            self.engine_generation = current;
        }
        if let Some(a) = self.agent.as_mut().filter(|a| !a.exited)
            && let Ok(Some(status)) = a.child.try_wait()
        {
            a.exited = true;
            said.push(format!(
                "{} upgrade agent exited ({status}); started again in 1s",
                self.name
            ));
            self.agent_again_at = Some(Instant::now() + Duration::from_secs(1));
        }
        if self.agent_again_at.is_some_and(|t| Instant::now() >= t) {
            self.agent_again_at = None;
            if let Some((me, config)) = self.agent_cmd.clone()
                && let Err(e) = self.start_agent(&me, &config)
            {
                said.push(format!("{} upgrade agent could not start: {e}", self.name));
            }
        }
        said
    }
}
