//! Restoring a backup into an engine outside the mesh (`mode = "to"`), for inspection
//! or to copy single keys back; the fleet is untouched. The backup is read from the
//! store, checked, and loaded by replication (`feed`): no file of the target is touched
//! and it is not restarted, so this works on any engine keyfleet can reach with a user
//! allowed `REPLICAOF`, `CONFIG SET masterauth` and `INFO`. The target must be empty,
//! a master, and neither this node's engine nor a peer's.
//!
//! One restore at a time per node; each is recorded in the history (`history`).

mod feed;
mod fetch;
pub mod history;

use super::{BackupError, Backups, Manifest};
use crate::engine::{Engine, EngineOptions, Secret, Target, Value};
use history::{History, Record};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A restore asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub backup: String,
    /// `HOST:PORT` of the target engine.
    pub target: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub requested_by: String,
}

/// What the node keeps of restores.
pub struct Restores {
    pub history: History,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Restores {
    pub fn new(state_dir: &std::path::Path) -> Restores {
        Restores {
            history: History::new(state_dir),
            running: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

fn refused(code: &'static str, message: String) -> BackupError {
    BackupError::new(code, message)
}

/// `HOST:PORT` (`[V6]:PORT` for an IPv6 address) as a target.
pub fn parse_target(text: &str) -> Result<(String, u16), BackupError> {
    let bad = || {
        refused(
            "restore_target_invalid",
            format!("`{text}` is not HOST:PORT"),
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

impl Backups {
    /// The restores recorded on this node, oldest first.
    pub fn restore_history(&self) -> Vec<Record> {
        self.restores.history.all()
    }

    /// Checks the preconditions, records the restore and starts it; the record comes
    /// back at once, and the history has its outcome later. `mesh` is every engine of
    /// this fleet as (host, port): none of them may be the target.
    pub async fn restore_to(
        self: &Arc<Self>,
        req: Request,
        mesh: &[(String, u16)],
    ) -> Result<Record, BackupError> {
        let (host, port) = parse_target(&req.target)?;
        if mesh
            .iter()
            .any(|(h, p)| *p == port && (h == &host || is_loopback(h) && is_loopback(&host)))
        {
            return Err(refused(
                "restore_target_in_mesh",
                format!(
                    "{} is an engine of this fleet; a restore `to` loads a backup into an engine outside the mesh",
                    req.target
                ),
            ));
        }
        let Some(manifest) = self.show(&req.backup).await? else {
            return Err(refused(
                "backup_not_found",
                format!("no complete backup `{}`", req.backup),
            ));
        };
        if manifest.encryption == "age" && !self.age.decrypts() {
            return Err(refused(
                "restore_identity_missing",
                format!(
                    "backup {} is encrypted with age and this node has no identity to decrypt it ([backups] age_identity_file)",
                    req.backup
                ),
            ));
        }
        let guard = self
            .restores
            .running
            .clone()
            .try_lock_owned()
            .map_err(|_| {
                refused(
                    "restore_in_progress",
                    "a restore is already running on this node".into(),
                )
            })?;
        let target = Engine::new(EngineOptions {
            target: Target::Tcp {
                host: host.clone(),
                port,
            },
            user: req.user.clone(),
            password: req.password.clone(),
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(10),
        });
        check_target(&target, &manifest, &req.target).await?;
        let old_auth = masterauth(&target, &req.target).await?;
        let record = Record {
            backup: req.backup.clone(),
            mode: "to".into(),
            target: req.target.clone(),
            requested_by: req.requested_by.clone(),
            requested_at: crate::logship::now_unix(),
            finished_at: None,
            outcome: "running".into(),
            error: None,
            keys: BTreeMap::new(),
            backup_keys: manifest.keys.clone(),
        };
        self.restores.history.put(&record);
        let me = self.clone();
        let mut done = record.clone();
        tokio::spawn(async move {
            let _one_at_a_time = guard;
            let result = me.load(&target, &host, port, &manifest, &old_auth).await;
            done.finished_at = Some(crate::logship::now_unix());
            match result {
                Ok(keys) => {
                    done.outcome = "complete".into();
                    done.keys = keys;
                    tracing::info!(backup = %done.backup, target = %done.target, "restore complete");
                }
                Err(e) => {
                    tracing::warn!(code = e.code, backup = %done.backup, "restore failed: {}", e.message);
                    me.metrics.record_error(e.code);
                    done.outcome = "failed".into();
                    done.error = Some(history::Failure {
                        code: e.code.to_owned(),
                        message: e.message,
                    });
                }
            }
            me.restores.history.put(&done);
        });
        Ok(record)
    }

    /// Loads the backup into `target` by replication and turns it back into a master;
    /// returns its keys per db.
    async fn load(
        &self,
        target: &Engine,
        host: &str,
        port: u16,
        m: &Manifest,
        old_auth: &str,
    ) -> Result<BTreeMap<String, u64>, BackupError> {
        let unreachable =
            |e: std::io::Error| refused("engine_unreachable", format!("{host}:{port}: {e}"));
        // Listen where the target can reach us: the address our connection to it uses.
        let probe = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(unreachable)?;
        let local = probe.local_addr().map_err(unreachable)?.ip();
        drop(probe);
        let listener = tokio::net::TcpListener::bind((local, 0))
            .await
            .map_err(|e| refused("restore_failed", format!("listening on {local}: {e}")))?;
        let feed_port = listener
            .local_addr()
            .map_err(|e| refused("restore_failed", e.to_string()))?
            .port();
        let password = crate::s3::random_hex(16).map_err(|e| refused("restore_failed", e))?;
        let cmd = |e: crate::engine::EngineError| refused(e.code(), e.to_string());
        target
            .command("CONFIG", &["SET", "masterauth", &password])
            .await
            .map_err(cmd)?;
        let result = async {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            target
                .command("REPLICAOF", &[&local.to_string(), &feed_port.to_string()])
                .await
                .map_err(cmd)?;
            let (fed, fetched) = tokio::join!(
                feed::serve(listener, &password, m.rdb_bytes, rx),
                fetch::rdb(&self.client, m, self.age.clone(), tx)
            );
            fetched?;
            let link = fed?;
            wait_loaded(target).await?;
            drop(link);
            Ok::<(), BackupError>(())
        }
        .await;
        // Whatever happened, the target is a master again with its own masterauth.
        let undo = target.command("REPLICAOF", &["NO", "ONE"]).await;
        let reset = target
            .command("CONFIG", &["SET", "masterauth", old_auth])
            .await;
        result?;
        undo.map_err(cmd)?;
        reset.map_err(cmd)?;
        let info = target.info().await.map_err(cmd)?;
        Ok(info
            .dbs()
            .map(|d| (format!("db{}", d.db), d.keys))
            .collect())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The target answers, is a master with no data, and can read the backup's RDB.
async fn check_target(target: &Engine, m: &Manifest, name: &str) -> Result<(), BackupError> {
    let info = target
        .info()
        .await
        .map_err(|e| refused(e.code(), e.to_string()))?;
    if info.get("role") != Some("master") && info.get("role") != Some("active-replica") {
        return Err(refused(
            "restore_target_is_replica",
            format!("{name} is a replica; load a backup into a master"),
        ));
    }
    if info.get_u64("connected_slaves").unwrap_or(0) > 0 || info.get("master_host").is_some() {
        return Err(refused(
            "restore_target_replicates",
            format!("{name} replicates to or from other engines; use one outside any mesh"),
        ));
    }
    let keys: u64 = info.dbs().map(|d| d.keys).sum();
    if keys > 0 {
        return Err(refused(
            "restore_target_not_empty",
            format!(
                "{name} holds {keys} keys; a restore `to` loads only into an empty engine (its data would be replaced)"
            ),
        ));
    }
    let major = |v: &str| v.split('.').next().and_then(|n| n.parse::<u32>().ok());
    let target_version = info.get("redis_version").unwrap_or("0");
    if m.engine == "redis" && major(&m.engine_version) > major(target_version) {
        return Err(refused(
            "restore_target_too_old",
            format!(
                "{name} runs version {target_version}, older than the backup's {} {}: it cannot read that RDB",
                m.engine, m.engine_version
            ),
        ));
    }
    Ok(())
}

/// The target's `masterauth`, to put back afterwards. Reading it is also the check that
/// the user may run `CONFIG`, which the load needs.
async fn masterauth(target: &Engine, name: &str) -> Result<String, BackupError> {
    match target.command("CONFIG", &["GET", "masterauth"]).await {
        Ok(Value::Array(kv)) => Ok(match kv.into_iter().nth(1) {
            Some(Value::Bulk(v)) => String::from_utf8_lossy(&v).into_owned(),
            _ => String::new(),
        }),
        Ok(_) => Ok(String::new()),
        Err(e) if e.code() == "engine_no_permission" => Err(refused(
            "restore_target_no_permission",
            format!(
                "{name}: the user may not run CONFIG, which a restore needs (with REPLICAOF and INFO): {e}"
            ),
        )),
        Err(e) => Err(refused(e.code(), e.to_string())),
    }
}

/// Waits until the target has received and loaded the snapshot.
async fn wait_loaded(target: &Engine) -> Result<(), BackupError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let info = target
            .info()
            .await
            .map_err(|e| refused(e.code(), e.to_string()))?;
        let link_up = info.get("master_link_status") == Some("up")
            || info.get("master_0_master_link_status") == Some("up");
        if link_up
            && info.get("master_sync_in_progress") != Some("1")
            && info.get("loading") == Some("0")
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(refused(
                "restore_failed",
                "the target did not finish loading within 1h".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("127.0.0.1:6379").unwrap(),
            ("127.0.0.1".into(), 6379)
        );
        assert_eq!(parse_target("[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert_eq!(
            parse_target("db.example:1").unwrap(),
            ("db.example".into(), 1)
        );
        for bad in ["", "host", "host:", ":1", "h:0", "h:99999", "a b:1"] {
            assert_eq!(
                parse_target(bad).unwrap_err().code,
                "restore_target_invalid",
                "{bad}"
            );
        }
    }
}
