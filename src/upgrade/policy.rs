//! The version policy: what kind of change a candidate generation is, judged by the
//! engine version it carries against the running one, and what the policy says to do
//! about that kind. Pure functions; the planner (`plan`) supplies the clock, windows and
//! approvals.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a generation carries, from its `generation.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationMeta {
    /// The fleet-wide name of this configuration (the same on every node for one
    /// rollout: a flake revision, or the id `keyfleet upgrade stage` gave).
    pub release: String,
    /// "keydb" or "redis".
    pub engine: String,
    /// The engine's version, e.g. "6.3.4".
    pub engine_version: String,
    /// keyfleet's own version in that generation.
    #[serde(default)]
    pub keyfleet_version: Option<String>,
}

/// The kind of change from the running generation to a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Patch,
    Minor,
    Major,
    Downgrade,
    /// The same engine version: keyfleet, the engine config or the rest of the system.
    EngineUnchanged,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Patch => "patch",
            Class::Minor => "minor",
            Class::Major => "major",
            Class::Downgrade => "downgrade",
            Class::EngineUnchanged => "engine_unchanged",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "6.3.4", "v6.3.4", "7.0" → numbers; None when it is not a dotted version.
pub fn parse_version(v: &str) -> Option<Vec<u64>> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+', ' ']).next()?;
    let parts: Option<Vec<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty() && p.len() <= 4)
}

/// Classifies `to` against `from`. A different engine (Redis to KeyDB) is a major
/// change; an unreadable version is refused, since nothing can be said about it.
pub fn classify(from: &GenerationMeta, to: &GenerationMeta) -> Result<Class, String> {
    if from.engine != to.engine {
        return Ok(Class::Major);
    }
    let parse = |m: &GenerationMeta| {
        parse_version(&m.engine_version).ok_or_else(|| {
            format!(
                "release {}: engine version `{}` is not a version like 6.3.4",
                m.release, m.engine_version
            )
        })
    };
    let (a, b) = (parse(from)?, parse(to)?);
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    for i in 0..4 {
        let (x, y) = (at(&a, i), at(&b, i));
        if y < x {
            return Ok(Class::Downgrade);
        }
        if y > x {
            return Ok(match i {
                0 => Class::Major,
                1 => Class::Minor,
                _ => Class::Patch,
            });
        }
    }
    Ok(Class::EngineUnchanged)
}

/// What the policy says for one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Inside a maintenance window, without asking.
    Auto,
    /// After a person's approval, and then inside a window unless approved `--now`.
    Approve,
    /// Never.
    Deny,
}

/// An action per class (the `[upgrades.policy]` table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "auto")]
    pub patch: Action,
    #[serde(default = "approve")]
    pub minor: Action,
    #[serde(default = "approve")]
    pub major: Action,
    #[serde(default = "deny")]
    pub downgrade: Action,
    #[serde(default = "auto")]
    pub engine_unchanged: Action,
}

fn auto() -> Action {
    Action::Auto
}
fn approve() -> Action {
    Action::Approve
}
fn deny() -> Action {
    Action::Deny
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            patch: Action::Auto,
            minor: Action::Approve,
            major: Action::Approve,
            downgrade: Action::Deny,
            engine_unchanged: Action::Auto,
        }
    }
}

impl Policy {
    pub fn action(&self, class: Class) -> Action {
        match class {
            Class::Patch => self.patch,
            Class::Minor => self.minor,
            Class::Major => self.major,
            Class::Downgrade => self.downgrade,
            Class::EngineUnchanged => self.engine_unchanged,
        }
    }
}

/// An approval a person gave for one release on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub release: String,
    /// Go without waiting for a window.
    pub now: bool,
    pub at_unix: i64,
}

/// What may happen to a candidate, before the fleet is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go now (window open, or approved `--now`).
    Go,
    /// Allowed, but only inside a window, and none is open.
    WaitWindow,
    /// Needs a person's yes first.
    WaitApproval,
    Denied(String),
}

/// The policy's verdict for a candidate of `class`.
pub fn decide(
    policy: &Policy,
    class: Class,
    approval: Option<&Approval>,
    window_open: bool,
) -> Verdict {
    match (policy.action(class), approval) {
        (Action::Deny, _) => Verdict::Denied(format!(
            "the policy denies {class} upgrades ([upgrades.policy] {} = \"deny\")",
            class.as_str()
        )),
        (Action::Approve, None) => Verdict::WaitApproval,
        (_, Some(a)) if a.now => Verdict::Go,
        _ if window_open => Verdict::Go,
        _ => Verdict::WaitWindow,
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
