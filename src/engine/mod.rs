//! Talking to the local engine (KeyDB or Redis): one multiplexed connection, reconnected
//! after a failure, every call bounded by a timeout, and errors with stable codes. This
//! module owns the wire protocol; it knows nothing about HTTP, never logs or returns the
//! password, and leaves what a reply means to `info` and `status`.

pub mod info;
pub mod status;

pub use info::{Info, InfoError};
pub use status::{LinkStatus, NodeError, NodeStatus, PeerLink, PeerRef};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, RedisConnectionInfo,
    RedisError,
};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// The ACL rules the daemon's engine user needs (after `reset`), one per item: exactly
/// the commands this module sends. From `daemon.acl`, which the NixOS module reads too.
pub fn daemon_acl_rules() -> Vec<&'static str> {
    include_str!("daemon.acl")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
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

/// A client of the local engine. Cheap to share behind an `Arc`; concurrent calls share
/// one multiplexed connection.
pub struct Engine {
    options: EngineOptions,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
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
        let addr = match &options.target {
            Target::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
            Target::Unix(path) => ConnectionAddr::Unix(path.clone()),
        };
        let redis = RedisConnectionInfo {
            username: options.user.clone(),
            password: options.password.as_ref().map(|p| p.expose().to_owned()),
            ..RedisConnectionInfo::default()
        };
        let client = redis::Client::open(ConnectionInfo { addr, redis })
            .expect("a ConnectionInfo built from parts is always accepted");
        Engine {
            options,
            client,
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
        let text = match self.run::<String>("INFO", &["everything"]).await {
            Ok(text) if !text.trim().is_empty() => text,
            // Engines older than the `everything` section answer it with an error or,
            // treating it as an unknown section, with nothing.
            Ok(_) | Err(EngineError::Command { .. }) => {
                self.run::<String>("INFO", &["all"]).await?
            }
            Err(e) => return Err(e),
        };
        Ok(Info::parse(text)?)
    }

    /// `BGSAVE`: the engine forks and writes its RDB file (backups).
    pub async fn bgsave(&self) -> Result<(), EngineError> {
        self.run::<String>("BGSAVE", &[]).await.map(drop)
    }

    /// `PING`: the engine is reachable, authenticated and answering.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.run::<String>("PING", &[]).await.map(drop)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        command: &'static str,
        args: &[&str],
    ) -> Result<T, EngineError> {
        let mut conn = self.connection().await?;
        let mut cmd = redis::cmd(command);
        for arg in args {
            cmd.arg(*arg);
        }
        let error =
            match tokio::time::timeout(self.options.command_timeout, cmd.query_async(&mut conn))
                .await
            {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if e.code() == Some("NOPERM") => {
                    return Err(EngineError::NoPermission {
                        user: self.user().to_owned(),
                        command,
                        detail: e.to_string(),
                    });
                }
                Ok(Err(e)) if is_auth_error(&e) => self.auth_failed(),
                Ok(Err(e))
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_unrecoverable_error() =>
                {
                    EngineError::ConnectionLost {
                        target: self.options.target.to_string(),
                        command,
                        detail: e.to_string(),
                    }
                }
                Ok(Err(e)) => {
                    return Err(EngineError::Command {
                        command,
                        detail: e.to_string(),
                    });
                }
                Err(_) => EngineError::Timeout {
                    target: self.options.target.to_string(),
                    command,
                    after: self.options.command_timeout,
                },
            };
        // A timeout, an auth or an I/O failure usually means the engine restarted, hung or
        // changed its credentials; a fresh connection on the next call finds out which.
        *self.conn.lock().await = None;
        Err(error)
    }

    /// The shared connection, opened if there is none. The lock is held while connecting
    /// so that a burst of callers after an outage opens one connection, not one each.
    async fn connection(&self) -> Result<MultiplexedConnection, EngineError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        // No response timeout here: `run` bounds each command itself, so that a slow
        // answer is always `engine_timeout`, never an I/O error racing it.
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(self.options.connect_timeout);
        // The outer timeout also bounds the AUTH and HELLO exchanges after connecting.
        let limit = self.options.connect_timeout + self.options.command_timeout;
        let attempt = tokio::time::timeout(
            limit,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        );
        let conn = match attempt.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) if is_auth_error(&e) => {
                self.answered.store(true, Ordering::Relaxed);
                return Err(self.auth_failed());
            }
            Ok(Err(e)) => return Err(self.unreachable(e.to_string())),
            Err(_) => return Err(self.unreachable(format!("no connection within {limit:?}"))),
        };
        self.answered.store(true, Ordering::Relaxed);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn user(&self) -> &str {
        self.options.user.as_deref().unwrap_or("default")
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

fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
