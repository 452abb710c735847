//! Generations as NixOS keeps them: the system profile. The candidate is built from a
//! flake (`nixos-rebuild build --flake REF`) or is a store path pushed to the node and
//! linked at `candidate_link`; what a generation carries is read from its
//! `etc/keyfleet/generation.json` (written by `modules/upgrades.nix`). A switch is
//! `nix-env -p PROFILE --set PATH` then `PATH/bin/switch-to-configuration switch`; a
//! rollback switches the profile back to the previous number, activates it, and deletes
//! the failed generation. Only the root agent runs these.

use super::generations::{Generation, Generations, read_meta};
use crate::config::UpgradesConfig;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PROFILE: &str = "/nix/var/nix/profiles/system";
/// What runs.
const CURRENT: &str = "/run/current-system";

pub struct Nixos {
    flake: Option<String>,
    candidate_link: PathBuf,
    build_dir: PathBuf,
    profile: PathBuf,
}

impl Nixos {
    pub fn new(cfg: &UpgradesConfig) -> Nixos {
        Nixos {
            flake: cfg.flake.clone(),
            candidate_link: cfg.candidate_link.clone(),
            build_dir: cfg.agent_state_dir.join("build"),
            profile: PathBuf::from(PROFILE),
        }
    }

    fn at(&self, store_path: &Path, id: String) -> Result<Generation, String> {
        Ok(Generation {
            id,
            meta: read_meta(&store_path.join("etc/keyfleet/generation.json"))?,
        })
    }

    /// `system-42-link` → 42.
    fn number(link: &str) -> Option<u64> {
        link.strip_prefix("system-")?
            .strip_suffix("-link")?
            .parse()
            .ok()
    }

    fn profile_dir(&self) -> &Path {
        self.profile
            .parent()
            .unwrap_or(Path::new("/nix/var/nix/profiles"))
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(format!(
        "{shown} failed ({}): {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}

impl Nixos {
    /// The store path of a generation id: a profile link name or a store path.
    fn store_path(&self, id: &str) -> Result<PathBuf, String> {
        match Self::number(id) {
            Some(_) => {
                std::fs::canonicalize(self.profile_dir().join(id)).map_err(|e| format!("{id}: {e}"))
            }
            None => Ok(PathBuf::from(id)),
        }
    }
}

impl Generations for Nixos {
    /// What runs is /run/current-system; its id is the profile's generation when the
    /// profile points at it (a system booted without one, as a test VM, has none yet).
    fn current(&self) -> Result<Generation, String> {
        let running = std::fs::canonicalize(CURRENT).map_err(|e| format!("{CURRENT}: {e}"))?;
        let id = match (
            std::fs::read_link(&self.profile),
            std::fs::canonicalize(&self.profile),
        ) {
            (Ok(link), Ok(target)) if target == running => link.to_string_lossy().into_owned(),
            _ => running.display().to_string(),
        };
        self.at(&running, id)
    }

    fn candidate(&self) -> Result<Option<Generation>, String> {
        let path = match &self.flake {
            Some(flake) => {
                std::fs::create_dir_all(&self.build_dir)
                    .map_err(|e| format!("{}: {e}", self.build_dir.display()))?;
                run(Command::new("nixos-rebuild")
                    .args(["build", "--flake", flake])
                    .current_dir(&self.build_dir))?;
                self.build_dir.join("result")
            }
            None => self.candidate_link.clone(),
        };
        match std::fs::canonicalize(&path) {
            Ok(store) => self.at(&store, store.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn previous(&self) -> Result<Option<Generation>, String> {
        let current = self.current()?;
        let n = Self::number(&current.id).unwrap_or(u64::MAX);
        let dir = self.profile_dir();
        let best = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned))
            .filter_map(|name| Self::number(&name).map(|k| (k, name)))
            .filter(|(k, _)| *k < n)
            .max();
        match best {
            Some((_, name)) => {
                let path = self.store_path(&name)?;
                self.at(&path, name).map(Some)
            }
            None => Ok(None),
        }
    }

    fn switch(&self, to: &Generation) -> Result<Generation, String> {
        let store = self.store_path(&to.id)?;
        run(Command::new("nix-env")
            .arg("-p")
            .arg(&self.profile)
            .arg("--set")
            .arg(&store))?;
        run(Command::new(store.join("bin/switch-to-configuration")).arg("switch"))?;
        self.current()
    }

    fn rollback(&self, failed: &Generation, to: &Generation) -> Result<(), String> {
        // `--switch-generation N` is `--rollback` made exact: the generation the
        // attempt started from, even if another was added meanwhile. A system that ran
        // outside the profile is set again.
        match Self::number(&to.id) {
            Some(n) => run(Command::new("nix-env")
                .arg("-p")
                .arg(&self.profile)
                .args(["--switch-generation", &n.to_string()]))?,
            None => run(Command::new("nix-env")
                .arg("-p")
                .arg(&self.profile)
                .arg("--set")
                .arg(&to.id))?,
        };
        let store = self.store_path(&to.id)?;
        run(Command::new(store.join("bin/switch-to-configuration")).arg("switch"))?;
        if let Some(bad) = Self::number(&failed.id).filter(|b| Some(*b) != Self::number(&to.id)) {
            run(Command::new("nix-env")
                .arg("-p")
                .arg(&self.profile)
                .args(["--delete-generations", &bad.to_string()]))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_link_numbers() {
        assert_eq!(Nixos::number("system-42-link"), Some(42));
        assert_eq!(Nixos::number("system-x-link"), None);
        assert_eq!(Nixos::number("/nix/store/abc-nixos-system"), None);
    }
}
