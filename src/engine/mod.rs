//! Talking to the local engine (KeyDB or Redis): one connection (`resp`), reconnected
//! after a failure, every call bounded by a timeout, and errors with stable codes. This
//! module owns the wire protocol; it knows nothing about HTTP, never logs or returns the
//! password, and leaves what a reply means to `info` and `status`.

pub mod info;
mod links;
mod pubsub;
pub mod resp;
pub mod status;

pub use info::{Info, InfoError};
pub use pubsub::{CanaryRound, CanaryWrite, Subscription};
pub use resp::Value;
pub use status::{LinkSafety, LinkStatus, NodeError, NodeStatus, PeerLink, PeerRef};

use resp::Connection;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// The ACL rules the daemon's engine user needs (after `reset`), one per item: exactly
/// the commands this module sends. From `daemon.acl`, which the NixOS module reads too.
pub fn daemon_acl_rules() -> Vec<&'static str> {
    acl_rules(include_str!("daemon.acl"))
}

/// The ACL rules of the user the safety checks read the user's keys as: `safety.acl`.
pub fn safety_acl_rules() -> Vec<&'static str> {
    acl_rules(include_str!("safety.acl"))
}

/// The ACL rules of the user in-fleet restores act as: `restore.acl`.
pub fn restore_acl_rules() -> Vec<&'static str> {
    acl_rules(include_str!("restore.acl"))
}

fn acl_rules(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The SHA-256, in hex, of a `DUMP` payload's value: without its RDB version and CRC
/// (the last 10 bytes) and without KeyDB's `mvcc-tstamp` aux field, which a node may
/// stamp differently. Two nodes hold the same value when these are equal.
pub fn value_digest(dump: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    const MVCC: &[u8] = b"\xfa\x0bmvcc-tstamp";
    let body = &dump[..dump.len().saturating_sub(10)];
    let value = match body.windows(MVCC.len()).rposition(|w| w == MVCC) {
        Some(at) => &body[..at],
        None => body,
    };
    Sha256::digest(value)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A password that never shows up in `Debug` output, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// How to reach and authenticate to the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub target: Target,
    /// ACL user; `None` authenticates as `default` when a password is set.
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// A failed exchange with the engine. Each variant is built at exactly one place below,
/// so its `code` points at one cause.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to the engine at {target}: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("the engine at {target} did not answer {command} within {after:?}")]
    Timeout {
        target: String,
        command: &'static str,
        after: Duration,
    },
    #[error("the engine at {target} refused the credentials of user {user}")]
    AuthFailed { target: String, user: String },
    #[error("the engine's user {user} may not run {command}: {detail}")]
    NoPermission {
        user: String,
        command: &'static str,
        detail: String,
    },
    #[error("lost the connection to the engine at {target} during {command}: {detail}")]
    ConnectionLost {
        target: String,
        command: &'static str,
        detail: String,
    },
    #[error("the engine answered {command} with an error: {detail}")]
    Command {
        command: &'static str,
        detail: String,
    },
    #[error("the engine's INFO reply cannot be read: {0}")]
    BadInfo(#[from] InfoError),
}

impl EngineError {
    /// A stable snake_case name for alerts, logs and API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Unreachable { .. } => "engine_unreachable",
            EngineError::Timeout { .. } => "engine_timeout",
            EngineError::AuthFailed { .. } => "engine_auth_failed",
            EngineError::NoPermission { .. } => "engine_no_permission",
            EngineError::ConnectionLost { .. } => "engine_connection_lost",
            EngineError::Command { .. } => "engine_command_failed",
            EngineError::BadInfo(_) => "engine_bad_info",
        }
    }
}

/// A client of the local engine. Cheap to share behind an `Arc`; concurrent calls take
/// turns on one connection (each exchange is a few hundred microseconds).
pub struct Engine {
    options: EngineOptions,
    /// The open connection, taken out while a command is in flight: a command cut short
    /// by its timeout drops it, so no later caller reads a stale reply.
    conn: Mutex<Option<Connection>>,
    /// Set once the engine has answered a connection, even to refuse the credentials.
    answered: AtomicBool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Prepares a client; nothing is connected until the first call.
    pub fn new(options: EngineOptions) -> Engine {
        Engine {
            options,
            conn: Mutex::new(None),
            answered: AtomicBool::new(false),
        }
    }

    /// Whether the engine has ever answered since this client was made. Until it has, a
    /// failure to reach it is the daemon starting before its engine, not an error.
    pub fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    pub fn target(&self) -> &Target {
        &self.options.target
    }

    /// `INFO everything`, or `INFO all` from an engine that refuses `everything`.
    pub async fn info(&self) -> Result<Info, EngineError> {
        let text = match self.text("INFO", &["everything"]).await {
            Ok(text) if !text.trim().is_empty() => text,
            // Engines older than the `everything` section answer it with an error or,
            // treating it as an unknown section, with nothing.
            Ok(_) | Err(EngineError::Command { .. }) => self.text("INFO", &["all"]).await?,
            Err(e) => return Err(e),
        };
        Ok(Info::parse(text)?)
    }

    /// `BGSAVE`: the engine forks and writes its RDB file (backups).
    pub async fn bgsave(&self) -> Result<(), EngineError> {
        self.text("BGSAVE", &[]).await.map(drop)
    }

    /// `PING`: the engine is reachable, authenticated and answering.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.text("PING", &[]).await.map(drop)
    }

    /// `TIME` as microseconds since the epoch (replication safety: clock skew).
    pub async fn time_micros(&self) -> Result<i64, EngineError> {
        let parts = match self.run("TIME", &[]).await? {
            Value::Array(parts) if parts.len() == 2 => parts,
            other => return Err(unexpected("TIME", &other)),
        };
        let num = |v: &Value| match v {
            Value::Bulk(b) => std::str::from_utf8(b).ok()?.parse::<i64>().ok(),
            _ => None,
        };
        match (num(&parts[0]), num(&parts[1])) {
            (Some(secs), Some(micros)) => Ok(secs * 1_000_000 + micros),
            _ => Err(unexpected("TIME", &Value::Array(parts))),
        }
    }

    /// `MGET`: each key's value, `None` when it does not exist or is not a string.
    pub async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        match self.run("MGET", keys).await? {
            Value::Array(values) if values.len() == keys.len() => Ok(values
                .into_iter()
                .map(|v| match v {
                    Value::Bulk(b) => Some(b),
                    _ => None,
                })
                .collect()),
            other => Err(unexpected("MGET", &other)),
        }
    }

    /// Any command, for engines other than the node's own (a restore's target): the
    /// node's own engine gets only the commands above, which its ACL user allows.
    pub async fn command(
        &self,
        command: &'static str,
        args: &[&str],
    ) -> Result<Value, EngineError> {
        self.run(command, args).await
    }

    /// A command whose reply is a status or a bulk string.
    async fn text(&self, command: &'static str, args: &[&str]) -> Result<String, EngineError> {
        match self.run(command, args).await? {
            Value::Status(text) => Ok(text),
            Value::Bulk(bytes) => String::from_utf8(bytes).map_err(|_| EngineError::Command {
                command,
                detail: "the reply is not UTF-8 text".to_owned(),
            }),
            other => Err(unexpected(command, &other)),
        }
    }

    /// Sends one command and sorts its failures. The whole exchange, waiting for the
    /// connection included, is bounded by the connect and command timeouts.
    async fn run(&self, command: &'static str, args: &[&str]) -> Result<Value, EngineError> {
        let limit = self.options.connect_timeout + self.options.command_timeout;
        match tokio::time::timeout(limit, self.exchange(command, args)).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout(command, limit)),
        }
    }

    async fn exchange(&self, command: &'static str, args: &[&str]) -> Result<Value, EngineError> {
        let mut slot = self.conn.lock().await;
        let mut conn = self.kept_or_new(slot.take()).await?;
        let mut words: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
        words.push(command.as_bytes());
        words.extend(args.iter().map(|a| a.as_bytes()));
        let reply = tokio::time::timeout(self.options.command_timeout, conn.call(&words)).await;
        // On a timeout, an I/O failure or an auth failure the connection is not put back:
        // the engine restarted, hung or changed its credentials, and a fresh connection on
        // the next call finds out which.
        let value = match reply {
            Err(_) => return Err(self.timeout(command, self.options.command_timeout)),
            Ok(Err(e)) => {
                return Err(EngineError::ConnectionLost {
                    target: self.options.target.to_string(),
                    command,
                    detail: e.to_string(),
                });
            }
            Ok(Ok(value)) => value,
        };
        if matches!(value.error_code(), Some("NOAUTH" | "WRONGPASS")) {
            return Err(self.auth_failed());
        }
        *slot = Some(conn);
        self.refused(command, value)
    }

    /// A reply as a result: an error reply becomes `NoPermission` (NOPERM) or `Command`.
    fn refused(&self, command: &'static str, value: Value) -> Result<Value, EngineError> {
        match value {
            Value::Error(text) => Err(self.reply_error(command, &text)),
            value => Ok(value),
        }
    }

    /// The kept connection when it is still open, else a new one.
    async fn kept_or_new(&self, kept: Option<Connection>) -> Result<Connection, EngineError> {
        match kept {
            Some(conn) if !conn.is_stale() => Ok(conn),
            _ => self.connect().await,
        }
    }

    /// A new connection, authenticated when a password is set.
    async fn connect(&self) -> Result<Connection, EngineError> {
        let connecting = async {
            match &self.options.target {
                Target::Tcp { host, port } => Connection::tcp(host, *port).await,
                Target::Unix(path) => Connection::unix(path).await,
            }
        };
        let attempt = tokio::time::timeout(self.options.connect_timeout, connecting).await;
        let mut conn = match attempt {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.unreachable(e.to_string())),
            Err(_) => {
                let after = self.options.connect_timeout;
                return Err(self.unreachable(format!("no connection within {after:?}")));
            }
        };
        if let Some(password) = &self.options.password {
            let mut words: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.options.user {
                words.push(user.as_bytes());
            }
            words.push(password.expose().as_bytes());
            let reply = tokio::time::timeout(self.options.command_timeout, conn.call(&words));
            match reply.await {
                Ok(Ok(Value::Error(_))) => {
                    self.answered.store(true, Ordering::Relaxed);
                    return Err(self.auth_failed());
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(self.unreachable(e.to_string())),
                Err(_) => return Err(self.unreachable("no answer to AUTH".to_owned())),
            }
        }
        self.answered.store(true, Ordering::Relaxed);
        Ok(conn)
    }

    fn user(&self) -> &str {
        self.options.user.as_deref().unwrap_or("default")
    }

    fn timeout(&self, command: &'static str, after: Duration) -> EngineError {
        EngineError::Timeout {
            target: self.options.target.to_string(),
            command,
            after,
        }
    }

    fn auth_failed(&self) -> EngineError {
        EngineError::AuthFailed {
            target: self.options.target.to_string(),
            user: self.user().to_owned(),
        }
    }

    fn unreachable(&self, detail: String) -> EngineError {
        EngineError::Unreachable {
            target: self.options.target.to_string(),
            detail,
        }
    }
}

fn unexpected(command: &'static str, reply: &Value) -> EngineError {
    EngineError::Command {
        command,
        detail: format!("unexpected reply {reply:.60?}"),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
