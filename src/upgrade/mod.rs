//! Rollback-able upgrades. The daemon half lives here: it decides whether this node may
//! change now (maintenance windows, the version policy, approvals, the fleet's lease
//! and order: `plan`), judges the health gate (`gate`), and keeps the record of every
//! attempt (`record`). The privileged half, `keyfleet upgrade-agent` (`agent`), asks it
//! and does only the switching, through one interface with a NixOS and a directory
//! implementation (`generations`). The daemon never switches anything itself.

pub mod agent;
mod attempt;
pub mod cli;
pub mod events;
pub mod gate;
pub mod generations;
mod journal;
pub mod lease;
mod nixos;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod record;
pub mod stage;
pub mod status;
pub mod window;
pub mod wire;

use crate::config::{Config, UpgradesConfig};
use record::{Outcome, Phase, Record};
use std::path::PathBuf;
use std::sync::Mutex;

/// The daemon's view of upgrades on this node.
pub struct Upgrades {
    pub config: Option<UpgradesConfig>,
    pub node: String,
    /// The fleet in upgrade order.
    pub order: Vec<String>,
    path: PathBuf,
    /// Touched to wake the agent (a systemd path unit on NixOS; dev's agent polls).
    request_path: PathBuf,
    record: Mutex<Record>,
    /// The record could not be read at start (the file is moved aside, not lost).
    pub load_error: Option<String>,
}

/// A change to the record that could not be made durable.
#[derive(Debug)]
pub struct SaveError(pub String);

pub use crate::logship::now_unix;

impl Upgrades {
    pub fn new(config: &Config) -> Upgrades {
        let path = config.state_dir.join("upgrades.json");
        // Made once here; a failure shows at the first write, with its path.
        let _ = std::fs::create_dir_all(&config.state_dir);
        let (record, load_error) = match crate::logship::journal::load_json::<Record>(&path) {
            Ok(r) => (r, None),
            Err(e) => {
                // Kept for a person to read; a fresh record starts beside it.
                let aside = path.with_extension(format!("json.corrupt-{}", now_unix()));
                let moved = std::fs::rename(&path, &aside);
                let message = match moved {
                    Ok(()) => format!("{e}; moved aside to {}", aside.display()),
                    Err(m) => format!("{e}; could not move it aside: {m}"),
                };
                tracing::error!("upgrade record unreadable: {message}");
                (Record::default(), Some(message))
            }
        };
        Upgrades {
            order: config
                .upgrades
                .as_ref()
                .map(|u| u.node_order(&config.node_names()))
                .unwrap_or_default(),
            config: config.upgrades.clone(),
            node: config.node_name.clone(),
            request_path: config.state_dir.join("upgrade-request"),
            path,
            record: Mutex::new(record),
            load_error,
        }
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> Record {
        self.record.lock().expect("upgrade record lock").clone()
    }

    /// Changes the record and makes it durable before answering; on a write failure the
    /// change is undone, so what the API says is what the disk holds.
    pub fn update<R>(&self, f: impl FnOnce(&mut Record) -> R) -> Result<R, SaveError> {
        let mut rec = self.record.lock().expect("upgrade record lock");
        let before = rec.clone();
        let out = f(&mut rec);
        rec.trim();
        match crate::logship::journal::save_json(&*rec, &self.path) {
            Ok(()) => Ok(out),
            Err(e) => {
                *rec = before;
                Err(SaveError(e.to_string()))
            }
        }
    }

    /// Wakes the agent: it runs now instead of at its next timer tick.
    pub fn wake_agent(&self) {
        let stamp = format!("{}\n", now_unix());
        if let Err(e) = std::fs::write(&self.request_path, stamp) {
            tracing::warn!(
                "cannot write {} to wake the upgrade agent: {e}",
                self.request_path.display()
            );
        }
    }

    /// "idle", "waiting", or the active attempt's phase.
    pub fn state_name(rec: &Record) -> &'static str {
        match (rec.active(), &rec.pending) {
            (Some(a), _) => a.phase.as_str(),
            (None, Some(_)) => "waiting",
            (None, None) => "idle",
        }
    }

    /// The result of the newest finished attempt.
    pub fn last_outcome(rec: &Record) -> Option<Outcome> {
        rec.attempts
            .iter()
            .rev()
            .find(|a| a.phase == Phase::Done)
            .and_then(|a| a.outcome)
    }
}

#[cfg(test)]
mod tests;
