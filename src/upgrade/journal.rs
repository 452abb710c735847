//! The agent's own journal (`AGENT_STATE_DIR/journal.json`, written atomically before
//! every step it takes): the attempt under way and its phase, the generation it last
//! accepted as running, and the events the daemon has not acknowledged yet. A killed
//! agent reads it on its next start and carries on from where it stopped.

use super::generations::Generation;
use super::wire::Event;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentPhase {
    /// About to switch (or switching) to `to`.
    Switching,
    /// `to` runs; its gate is under way.
    Gate,
    /// Going back to `from`.
    RollingBack,
    /// `from` runs again; proving it healthy.
    RollbackGate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Active {
    pub attempt: String,
    pub kind: String,
    pub from: Generation,
    pub to: Generation,
    pub phase: AgentPhase,
    /// When the generation now under its gate started running.
    pub gate_since_unix: Option<i64>,
    pub gate_timeout_seconds: f64,
    pub gate_settle_seconds: f64,
    /// The last event number used.
    pub seq: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Journal {
    #[serde(default)]
    pub active: Option<Active>,
    /// The generation the agent last saw running and accepted; another one running
    /// means somebody switched by hand.
    #[serde(default)]
    pub known_current: Option<Generation>,
    /// Events not yet acknowledged, in order: (attempt, event).
    #[serde(default)]
    pub outbox: Vec<(String, Event)>,
}

pub struct JournalFile {
    path: PathBuf,
}

impl JournalFile {
    pub fn new(dir: &Path) -> JournalFile {
        JournalFile {
            path: dir.join("journal.json"),
        }
    }

    pub fn load(&self) -> Result<Journal, String> {
        crate::logship::journal::load_json(&self.path).map_err(|e| e.to_string())
    }

    pub fn save(&self, j: &Journal) -> Result<(), String> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        crate::logship::journal::save_json(j, &self.path).map_err(|e| e.to_string())
    }
}
