//! The checks a parsed configuration must pass before anything uses it: names, ports
//! and addresses unique across the fleet, no node its own peer, a token wherever the API
//! leaves loopback. Each failure names the key; nothing here reads files.

use super::{Config, ConfigError, Directive, EngineKind, Scalar};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

impl Config {
    pub(super) fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            message,
        };
        if !valid_name(&self.node_name) {
            return Err(invalid(
                "node_name".into(),
                format!(
                    "`{}` is not a node name (letters, digits, `-`, `_`, `.`)",
                    self.node_name
                ),
            ));
        }
        let mut names = HashSet::from([self.node_name.as_str()]);
        let mut endpoints: HashSet<(String, u16)> = HashSet::new();
        endpoints.insert((self.engine.bind.clone(), self.engine.port));
        if !endpoints.insert((self.api.listen.ip().to_string(), self.api.listen.port())) {
            return Err(invalid(
                "api.listen".into(),
                format!("port {} is also the engine's port", self.api.listen.port()),
            ));
        }
        for (i, peer) in self.peers.iter().enumerate() {
            let key = |k: &str| format!("peers[{i}].{k}");
            if peer.name == self.node_name {
                return Err(invalid(
                    key("name"),
                    format!(
                        "`{}` is this node itself; a node is not its own peer",
                        peer.name
                    ),
                ));
            }
            if !valid_name(&peer.name) {
                return Err(invalid(
                    key("name"),
                    format!("`{}` is not a node name", peer.name),
                ));
            }
            if !names.insert(&peer.name) {
                return Err(invalid(
                    key("name"),
                    format!("duplicate node name `{}`", peer.name),
                ));
            }
            let replication = peer
                .replication_port
                .filter(|p| *p != peer.engine_port)
                .map(|p| ("replication_port", p));
            for (k, port) in [
                ("engine_port", peer.engine_port),
                ("api_port", peer.api_port),
            ]
            .into_iter()
            .chain(replication)
            {
                if port == 0 {
                    return Err(invalid(key(k), "port 0 is not a port".into()));
                }
                if !endpoints.insert((peer.address.clone(), port)) {
                    return Err(invalid(
                        key(k),
                        format!("{}:{} is used twice in this fleet", peer.address, port),
                    ));
                }
            }
        }
        if self.engine.port == 0 {
            return Err(invalid("engine.port".into(), "port 0 is not a port".into()));
        }
        if self.api.token_file.is_none() && !self.api.listen.ip().is_loopback() {
            return Err(invalid(
                "api.token_file".into(),
                format!(
                    "api.listen {} is not loopback, so a token_file is required",
                    self.api.listen
                ),
            ));
        }
        if self.engine.user.is_some() && self.engine.password_file.is_none() {
            return Err(invalid(
                "engine.password_file".into(),
                "engine.user is set without a password_file".into(),
            ));
        }
        for (i, rule) in self.engine.save.iter().enumerate() {
            let parts: Vec<_> = rule.split_whitespace().collect();
            if parts.len() != 2 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
                return Err(invalid(
                    format!("engine.save[{i}]"),
                    format!("`{rule}` is not \"seconds changes\""),
                ));
            }
        }
        if self.engine.maxmemory_policy.is_empty()
            || !self
                .engine
                .maxmemory_policy
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
        {
            return Err(invalid(
                "engine.maxmemory_policy".into(),
                format!(
                    "`{}` is not an eviction policy",
                    self.engine.maxmemory_policy
                ),
            ));
        }
        match (self.engine.kind, &self.engine.primary) {
            (EngineKind::Redis, None) if !self.peers.is_empty() => {
                return Err(invalid(
                    "engine.primary".into(),
                    "kind = \"redis\" with peers needs the primary's node name".into(),
                ));
            }
            (_, Some(p)) if !names.contains(p.as_str()) => {
                return Err(invalid(
                    "engine.primary".into(),
                    format!("`{p}` is not a node of this fleet"),
                ));
            }
            _ => {}
        }
        if self.engine.databases == 0 {
            return Err(invalid(
                "engine.databases".into(),
                "an engine has at least 1 database".into(),
            ));
        }
        for (name, value) in &self.engine.settings {
            let key = format!("engine.settings.{name}");
            if let Some(message) = directive_problem(name, value) {
                return Err(invalid(key, message));
            }
        }
        if let Some((key, message)) = self
            .backups
            .as_ref()
            .and_then(|b| b.problem(self.logs.as_ref().map(|l| &l.s3)))
        {
            return Err(invalid(format!("backups.{key}"), message));
        }
        if let Some((key, message)) = self
            .upgrades
            .as_ref()
            .and_then(|u| u.problem(&self.node_names()))
        {
            return Err(invalid(format!("upgrades.{key}"), message));
        }
        if let Some((key, message)) = self.api.problem() {
            return Err(invalid(format!("api.{key}"), message));
        }
        if self.fleet.coalesce > Duration::from_secs(10) {
            return Err(invalid(
                "fleet.coalesce".into(),
                "must be at most 10s: the fleet view would be stale".into(),
            ));
        }
        if let Some((key, message)) = self.safety.problem(&self.node_names()) {
            return Err(invalid(format!("safety.{key}"), message));
        }
        if self.safety.enabled
            && let Some(Directive::Str(events)) = self.engine.settings.get("notify-keyspace-events")
            && let Some(missing) = super::SafetyConfig::missing_events(events)
        {
            return Err(invalid(
                "engine.settings.notify-keyspace-events".into(),
                format!(
                    "`{events}` lacks `{missing}`: the safety checks track deleted and expired \
                     keys by keyevent notifications (E, g, x); add them, or set \
                     safety.enabled = false"
                ),
            ));
        }
        if let Some(logs) = &self.logs {
            if let Some((key, message)) = logs.problem() {
                return Err(invalid(format!("logs.{key}"), message));
            }
            if self.engine.settings.contains_key("logfile") {
                return Err(invalid(
                    "engine.settings.logfile".into(),
                    format!(
                        "with [logs] the engine logs to {}/engine.log, where the daemon rotates it",
                        logs.dir.display()
                    ),
                ));
            }
        }
        if !self.state_dir.is_absolute() {
            return Err(invalid(
                "state_dir".into(),
                format!("`{}` is not absolute", self.state_dir.display()),
            ));
        }
        if self.fleet.poll_interval.is_zero() {
            return Err(invalid(
                "fleet.poll_interval".into(),
                "must be more than 0".into(),
            ));
        }
        if self.fleet.peer_timeout.is_zero() {
            return Err(invalid(
                "fleet.peer_timeout".into(),
                "must be more than 0".into(),
            ));
        }
        Ok(())
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Why `engine.settings` may not set the directive `name` (the daemon depends on it, or
/// it is a secret), from `reserved-directives.txt`, which the NixOS module reads too.
fn reserved(name: &str) -> Option<&'static str> {
    include_str!("reserved-directives.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(n, _)| *n == name)
        .map(|(_, why)| why.trim())
}

/// Why one `engine.settings` entry cannot be rendered, or None when it can.
fn directive_problem(name: &str, value: &Directive) -> Option<String> {
    let well_formed = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Some(format!(
            "`{name}` is not a directive name (lowercase letters, digits and `-`)"
        ));
    }
    if let Some(why) = reserved(name) {
        return Some(format!("cannot be set here: {why}"));
    }
    let bad_text = |s: &str| s.trim().is_empty() || s.chars().any(char::is_control);
    match value {
        Directive::Str(s) if bad_text(s) => Some(format!(
            "{s:?} is empty or holds a line break or control character"
        )),
        Directive::List(items) => items.iter().find_map(|item| match item {
            Scalar::Str(s) if bad_text(s) => Some(format!(
                "list element {s:?} is empty or holds a line break or control character"
            )),
            _ => None,
        }),
        _ => None,
    }
}
