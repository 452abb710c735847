//! Where generations live and how the agent moves between them: one interface, two
//! implementations. `nixos` is the system profile (`nix-env --set`,
//! `switch-to-configuration`); `Dir` is a directory of generations for `keyfleet dev`
//! and the tests, where a generation is an engine binary plus its rendered config and a
//! switch has the supervisor (dev's, playing systemd) restart the real engine process.
//!
//! Dir layout:
//!   gen-1/ gen-2/ …        generation.json, engine (a symlink to the binary), engine.conf
//!   current -> gen-2       what the supervisor runs
//!   candidate -> staged/R  what `keyfleet upgrade stage` left
//!   staged/R/              a candidate's files
//!   running.json           written by the supervisor: the generation it started, its pid

use super::policy::GenerationMeta;
use crate::config::{Config, GenerationsKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One generation: its id in the implementation and what it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub id: String,
    pub meta: GenerationMeta,
}

pub trait Generations {
    /// What runs now.
    fn current(&self) -> Result<Generation, String>;
    /// What could run next: built from the flake, pushed, or staged. None: nothing.
    fn candidate(&self) -> Result<Option<Generation>, String>;
    /// The generation before the current one (for a requested rollback).
    fn previous(&self) -> Result<Option<Generation>, String>;
    /// Makes `to` the running generation; returns it as it is now known.
    fn switch(&self, to: &Generation) -> Result<Generation, String>;
    /// Goes back from `failed` to `to` and removes `failed`.
    fn rollback(&self, failed: &Generation, to: &Generation) -> Result<(), String>;
}

/// The implementation `[upgrades]` names.
pub fn open(config: &Config) -> Result<Box<dyn Generations>, String> {
    let u = config
        .upgrades
        .as_ref()
        .ok_or("upgrades are not configured (no [upgrades] table)")?;
    Ok(match (u.generations, &u.generations_dir) {
        (GenerationsKind::Dir, Some(dir)) => Box::new(Dir::new(dir)),
        (GenerationsKind::Dir, None) => {
            return Err("generations = \"dir\" needs generations_dir".into());
        }
        (GenerationsKind::Nixos, _) => Box::new(super::nixos::Nixos::new(u)),
    })
}

pub fn read_meta(path: &Path) -> Result<GenerationMeta, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a generation.json: {e}", path.display()))
}

/// A directory of generations.
pub struct Dir {
    pub root: PathBuf,
    /// How long a switch waits for the supervisor to run the new generation.
    pub restart_timeout: Duration,
}

/// What the supervisor last started (`running.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    pub generation: String,
    pub pid: u32,
    pub started_at_unix: i64,
}

impl Dir {
    pub fn new(root: &Path) -> Dir {
        Dir {
            root: root.to_owned(),
            restart_timeout: Duration::from_secs(30),
        }
    }

    fn generation(&self, id: &str) -> Result<Generation, String> {
        Ok(Generation {
            id: id.to_owned(),
            meta: read_meta(&self.root.join(id).join("generation.json"))?,
        })
    }

    fn link(&self, name: &str) -> Result<Option<String>, String> {
        match std::fs::read_link(self.root.join(name)) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.root.join(name).display())),
        }
    }

    /// Points `name` at `target`, atomically (a new link renamed over the old).
    pub fn set_link(&self, name: &str, target: &str) -> Result<(), String> {
        let tmp = self.root.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp)
            .and_then(|()| std::fs::rename(&tmp, self.root.join(name)))
            .and_then(|()| crate::logship::journal::sync_dir(&self.root))
            .map_err(|e| {
                format!(
                    "{}: cannot point {name} at {target}: {e}",
                    self.root.display()
                )
            })
    }

    /// The numbered generations, oldest first.
    pub fn numbers(&self) -> Result<Vec<u64>, String> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.root)
            .map_err(|e| format!("{}: {e}", self.root.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("gen-")?.parse().ok())
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    pub fn running(&self) -> Option<Running> {
        let text = std::fs::read_to_string(self.root.join("running.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until the supervisor runs generation `id`.
    fn wait_running(&self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.restart_timeout;
        while Instant::now() < deadline {
            if self.running().is_some_and(|r| r.generation == id) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "the supervisor did not start {id} within {:?} (is `keyfleet dev` running?)",
            self.restart_timeout
        ))
    }

    /// Copies a staged candidate into the next numbered generation; returns its id.
    pub fn install(&self, staged: &Path) -> Result<String, String> {
        let next = self.numbers()?.last().copied().unwrap_or(0) + 1;
        let id = format!("gen-{next}");
        let tmp = self.root.join(format!(".{id}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
        std::fs::create_dir_all(&tmp).map_err(err)?;
        for f in ["generation.json", "engine.conf"] {
            std::fs::copy(staged.join(f), tmp.join(f))
                .map_err(|e| format!("{}: {e}", staged.join(f).display()))?;
        }
        let engine = std::fs::read_link(staged.join("engine"))
            .map_err(|e| format!("{}: {e}", staged.join("engine").display()))?;
        std::os::unix::fs::symlink(&engine, tmp.join("engine")).map_err(err)?;
        std::fs::rename(&tmp, self.root.join(&id)).map_err(err)?;
        Ok(id)
    }
}

impl Generations for Dir {
    fn current(&self) -> Result<Generation, String> {
        let id = self
            .link("current")?
            .ok_or_else(|| format!("{}: no current generation", self.root.display()))?;
        self.generation(&id)
    }

    fn candidate(&self) -> Result<Option<Generation>, String> {
        let Some(target) = self.link("candidate")? else {
            return Ok(None);
        };
        let dir = self.root.join(&target);
        Ok(Some(Generation {
            id: target,
            meta: read_meta(&dir.join("generation.json"))?,
        }))
    }

    fn previous(&self) -> Result<Option<Generation>, String> {
        let current = self.current()?.id;
        let n: u64 = current.trim_start_matches("gen-").parse().unwrap_or(0);
        match self.numbers()?.into_iter().filter(|g| *g < n).max() {
            Some(p) => self.generation(&format!("gen-{p}")).map(Some),
            None => Ok(None),
        }
    }

    fn switch(&self, to: &Generation) -> Result<Generation, String> {
        // A staged candidate becomes a numbered generation first; a numbered one (a
        // requested rollback) is switched to as it is.
        let id = if to.id.starts_with("gen-") {
            to.id.clone()
        } else {
            self.install(&self.root.join(&to.id))?
        };
        self.set_link("current", &id)?;
        self.wait_running(&id)?;
        self.generation(&id)
    }

    fn rollback(&self, failed: &Generation, to: &Generation) -> Result<(), String> {
        self.set_link("current", &to.id)?;
        self.wait_running(&to.id)?;
        if failed.id != to.id && failed.id.starts_with("gen-") {
            let _ = std::fs::remove_dir_all(self.root.join(&failed.id));
        }
        Ok(())
    }
}
