//! The `[upgrades]` table: maintenance windows, the version policy, the health gate and
//! where generations come from (`crate::upgrade`). Absent, the node never upgrades on
//! its own and a hand switch is not gated.

use super::units;
use crate::upgrade::policy::Policy;
use crate::upgrade::window::Window;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradesConfig {
    /// Weekly windows in which the node may change (`Sun 02:00-03:00 Asia/Kolkata`),
    /// or `always`. None: automatic upgrades never start; an approval `--now` still can.
    #[serde(default, deserialize_with = "windows")]
    pub windows: Vec<Window>,
    /// What each kind of change may do.
    #[serde(default)]
    pub policy: Policy,
    /// How long a new generation has to prove healthy before it is rolled back.
    #[serde(default = "default_gate_timeout", deserialize_with = "units::duration")]
    pub gate_timeout: Duration,
    /// How long every check must hold without a break for the gate to pass.
    #[serde(default = "default_gate_settle", deserialize_with = "units::duration")]
    pub gate_settle: Duration,
    /// The order in which the fleet's nodes upgrade; empty means by name.
    #[serde(default)]
    pub order: Vec<String>,
    /// How long a peer keeps the upgrade lease for a node that stops renewing it (a
    /// holder that died).
    #[serde(default = "default_lease_ttl", deserialize_with = "units::duration")]
    pub lease_ttl: Duration,
    /// Take a backup before a minor or major upgrade (needs `[backups]`).
    #[serde(default = "default_true")]
    pub backup_before: bool,
    /// Where generations live: "nixos" (the system profile) or "dir" (`generations_dir`,
    /// for `keyfleet dev` and the tests).
    #[serde(default = "default_generations")]
    pub generations: GenerationsKind,
    /// With generations = "dir": the directory of generations.
    pub generations_dir: Option<PathBuf>,
    /// With "nixos": build the candidate from this flake reference
    /// (`nixos-rebuild build --flake REF`); absent, a store path pushed to the node and
    /// linked at `candidate_link` is the candidate.
    pub flake: Option<String>,
    /// With "nixos" and no flake: the symlink to a pushed candidate system.
    #[serde(default = "default_candidate_link")]
    pub candidate_link: PathBuf,
    /// The agent's own state (its journal), root's.
    #[serde(default = "default_agent_state_dir")]
    pub agent_state_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationsKind {
    Nixos,
    Dir,
}

fn windows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Window>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| t.parse().map_err(serde::de::Error::custom))
        .collect()
}

fn default_gate_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_gate_settle() -> Duration {
    Duration::from_secs(3)
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(120)
}
fn default_true() -> bool {
    true
}
fn default_generations() -> GenerationsKind {
    GenerationsKind::Nixos
}
fn default_candidate_link() -> PathBuf {
    "/var/lib/keyfleet-upgrade/candidate".into()
}
fn default_agent_state_dir() -> PathBuf {
    "/var/lib/keyfleet-upgrade".into()
}

impl UpgradesConfig {
    /// The first problem as (key under `upgrades.`, message). `nodes`: the fleet.
    pub(super) fn problem(&self, nodes: &[&str]) -> Option<(String, String)> {
        let p = |k: &str, m: String| Some((k.to_owned(), m));
        if self.gate_timeout < Duration::from_secs(5)
            || self.gate_timeout > Duration::from_secs(3600)
        {
            return p("gate_timeout", "must be between 5s and 1h".into());
        }
        if self.gate_settle >= self.gate_timeout {
            return p(
                "gate_settle",
                format!(
                    "must be shorter than gate_timeout ({})",
                    units::show_duration(self.gate_timeout)
                ),
            );
        }
        if self.lease_ttl <= self.gate_timeout {
            return p(
                "lease_ttl",
                format!(
                    "must be longer than gate_timeout ({}): the lease is renewed while the \
                     gate runs",
                    units::show_duration(self.gate_timeout)
                ),
            );
        }
        match (self.generations, &self.generations_dir) {
            (GenerationsKind::Dir, None) => {
                return p(
                    "generations_dir",
                    "generations = \"dir\" needs generations_dir".into(),
                );
            }
            (GenerationsKind::Nixos, Some(_)) => {
                return p("generations_dir", "only with generations = \"dir\"".into());
            }
            _ => {}
        }
        if let Some(f) = &self.flake
            && (f.is_empty() || f.chars().any(char::is_whitespace))
        {
            return p("flake", format!("`{f}` is not a flake reference"));
        }
        for (i, name) in self.order.iter().enumerate() {
            if !nodes.contains(&name.as_str()) {
                return p(
                    &format!("order[{i}]"),
                    format!("`{name}` is not a node of this fleet (node_name or a peer)"),
                );
            }
            if self.order[..i].contains(name) {
                return p(&format!("order[{i}]"), format!("`{name}` is listed twice"));
            }
        }
        if !self.order.is_empty()
            && let Some(missing) = nodes.iter().find(|n| !self.order.iter().any(|o| o == *n))
        {
            return p(
                "order",
                format!("lists some nodes but not `{missing}`: list every node, or none"),
            );
        }
        None
    }

    /// The fleet's nodes in upgrade order.
    pub fn node_order(&self, nodes: &[&str]) -> Vec<String> {
        if self.order.is_empty() {
            let mut v: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
            v.sort();
            v
        } else {
            self.order.clone()
        }
    }
}
