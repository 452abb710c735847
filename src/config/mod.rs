//! The node configuration: one TOML file per node, its schema, defaults and validation.
//! Owns reading the file and the secret files it names; knows nothing about HTTP or
//! the engine protocol. Every error names the file and the key that is wrong, and
//! `main` turns it into exit status 2.

mod api;
mod backups;
mod logs;
mod safety;
mod secrets;
pub(crate) mod units;
mod upgrades;
mod validate;

pub use api::{ApiConfig, ApiLimits};
pub use backups::{BackupCompression, BackupsConfig};
pub use logs::{Compression, LogsConfig, MIN_PART_SIZE, OnBudgetFull, RotateConfig, S3Config};
pub use safety::SafetyConfig;
pub use secrets::{S3Keys, Secrets};
pub use units::{parse_duration, parse_size, show_duration};
pub use upgrades::{GenerationsKind, UpgradesConfig};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration that cannot be used; `Display` names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// The value of one engine directive in `engine.settings`: `true`/`false` render as
/// `yes`/`no`, a list as one line per element.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Directive {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Scalar>),
}

/// One element of a list directive (`save = ["900 1", "300 10"]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Str(String),
}

/// Which engine a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// KeyDB in active-replica multi-master mode with every peer.
    Keydb,
    /// Redis: one primary, the other nodes its replicas.
    Redis,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Keydb => "keydb",
            EngineKind::Redis => "redis",
        }
    }
}

/// One node's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's name, unique in the fleet.
    pub node_name: String,
    /// The local engine: how to reach it and how to render its config.
    pub engine: EngineConfig,
    /// The daemon's HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Polling and peer timeouts.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// Every other node of the fleet.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Where the daemon keeps its state (journals), written atomically.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Log rotation and shipping to S3; absent means the engine logs to stdout.
    pub logs: Option<LogsConfig>,
    /// Backups to S3; absent means none.
    #[serde(default)]
    pub backups: Option<BackupsConfig>,
    /// Replication safety checks (canary lag, clock skew); on by default.
    #[serde(default)]
    pub safety: SafetyConfig,
    /// Rollback-able upgrades; absent means the node never upgrades on its own.
    #[serde(default)]
    pub upgrades: Option<UpgradesConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// "keydb" (multi-master) or "redis" (primary and replicas).
    #[serde(default = "default_kind")]
    pub kind: EngineKind,
    /// Address the engine listens on and the daemon connects to.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// The engine's TCP port.
    #[serde(default = "default_engine_port")]
    pub port: u16,
    /// Unix socket the daemon connects through instead of TCP.
    pub unix_socket: Option<PathBuf>,
    /// ACL user the daemon authenticates as.
    pub user: Option<String>,
    /// File holding that user's password.
    pub password_file: Option<PathBuf>,
    /// The engine's data directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Memory cap for the data set in bytes; 0 is unlimited.
    #[serde(default, deserialize_with = "units::size")]
    pub maxmemory: u64,
    /// Eviction policy once `maxmemory` is reached.
    #[serde(default = "default_policy")]
    pub maxmemory_policy: String,
    /// Append-only file persistence.
    #[serde(default = "default_true")]
    pub appendonly: bool,
    /// RDB snapshot rules, each "seconds changes".
    #[serde(default)]
    pub save: Vec<String>,
    /// KeyDB worker threads.
    #[serde(default = "default_threads")]
    pub server_threads: u32,
    /// How many databases the engine has (`databases`); metrics list each one.
    #[serde(default = "default_databases")]
    pub databases: u32,
    /// Further engine directives, rendered as they are (`"hz" = 20`, `"save" = [...]`);
    /// one here replaces the directive a typed key above renders. Directives the daemon
    /// depends on, or that carry secrets, are refused (see `validate`).
    #[serde(default)]
    pub settings: BTreeMap<String, Directive>,
    /// A run-time file the engine includes last (secrets that stay out of the store).
    pub include: Option<PathBuf>,
    /// With kind = "redis": the node the others replicate from.
    pub primary: Option<String>,
    /// Connecting to the engine gives up after this long.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "units::duration"
    )]
    pub connect_timeout: Duration,
    /// One engine command gives up after this long.
    #[serde(
        default = "default_command_timeout",
        deserialize_with = "units::duration"
    )]
    pub command_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// How often the local engine's INFO is read.
    #[serde(default = "default_poll", deserialize_with = "units::duration")]
    pub poll_interval: Duration,
    /// How long one peer daemon is waited on before it is listed down.
    #[serde(default = "default_peer_timeout", deserialize_with = "units::duration")]
    pub peer_timeout: Duration,
    /// Callers of `/api/v1/fleet` that arrive while the peers are being asked share
    /// that answer; with more than 0, so do callers within this long of when it began
    /// (an answer up to this old).
    #[serde(default = "default_coalesce", deserialize_with = "units::duration")]
    pub coalesce: Duration,
}

/// Another node of the fleet.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's node name.
    pub name: String,
    /// Host name or IP address the peer's engine and API listen on.
    pub address: String,
    /// The peer's engine port: where this node's daemon reads the peer's engine.
    pub engine_port: u16,
    /// Where this node's engine dials the peer's engine to replicate from it, when that
    /// is not `engine_port` (a tunnel or a proxy on the replication path; `keyfleet dev
    /// --partitionable` puts one there). Links are matched to peers by this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_port: Option<u16>,
    /// The peer's keyfleet API port.
    pub api_port: u16,
}

impl Peer {
    /// The port this node's engine replicates from: `replication_port`, else `engine_port`.
    pub fn replication_port(&self) -> u16 {
        self.replication_port.unwrap_or(self.engine_port)
    }

    pub fn api_url(&self) -> String {
        if self.address.contains(':') {
            format!("http://[{}]:{}", self.address, self.api_port)
        } else {
            format!("http://{}:{}", self.address, self.api_port)
        }
    }
}

fn default_state_dir() -> PathBuf {
    "/var/lib/keyfleet".into()
}
fn default_kind() -> EngineKind {
    EngineKind::Keydb
}
fn default_bind() -> String {
    "127.0.0.1".into()
}
fn default_engine_port() -> u16 {
    6379
}
fn default_data_dir() -> PathBuf {
    "/var/lib/keydb".into()
}
fn default_policy() -> String {
    "noeviction".into()
}
fn default_true() -> bool {
    true
}
fn default_threads() -> u32 {
    2
}
fn default_databases() -> u32 {
    16
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_peer_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_coalesce() -> Duration {
    Duration::ZERO
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            poll_interval: default_poll(),
            peer_timeout: default_peer_timeout(),
            coalesce: default_coalesce(),
        }
    }
}

impl Config {
    /// Reads and validates a config file. Secret files are not read here: `render`
    /// runs at Nix build time, where they do not exist.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Config::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Every node of the fleet, this one first.
    pub fn node_names(&self) -> Vec<&str> {
        std::iter::once(self.node_name.as_str())
            .chain(self.peers.iter().map(|p| p.name.as_str()))
            .collect()
    }

    /// The engine's RDB file: `dbfilename` (default `dump.rdb`) in its data directory.
    pub fn engine_rdb_path(&self) -> PathBuf {
        let name = match self.engine.settings.get("dbfilename") {
            Some(Directive::Str(s)) => s.clone(),
            _ => "dump.rdb".into(),
        };
        self.engine.data_dir.join(name)
    }

    /// The engine's log file, when logs are shipped (else the engine logs to stdout).
    pub fn engine_logfile(&self) -> Option<PathBuf> {
        self.logs.as_ref().map(|l| l.dir.join("engine.log"))
    }

    /// The host the daemon dials for its own engine: the bind address, or loopback when
    /// the engine binds every address.
    pub fn engine_host(&self) -> String {
        match self.engine.bind.as_str() {
            "0.0.0.0" | "::" | "*" => "127.0.0.1".into(),
            b => b
                .split_whitespace()
                .next()
                .unwrap_or("127.0.0.1")
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
