//! Mode `to`: a backup loaded into an engine outside the mesh, by replication (`feed`).

use super::super::{BackupError, Backups, Manifest};
use super::history::Record;
use super::{Request, feed, fetch, new_id, parse_target, refused};
use crate::engine::{Engine, EngineOptions, Target, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Backups {
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
        let manifest = self.restorable(&req.backup).await?;
        let guard = self.restores.one_at_a_time()?;
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
        let id = new_id()?;
        let record = self.restores.record(
            &id,
            &req.backup,
            "to",
            &req.target,
            &req.requested_by,
            manifest.keys.clone(),
        );
        let me = self.clone();
        tokio::spawn(async move {
            let _one_at_a_time = guard;
            let result = me
                .load(&id, &target, &host, port, &manifest, &old_auth)
                .await;
            // The backup's canaries were loaded too; the record counts the user's keys.
            let result =
                result.map(|k| super::super::manifest::without_canaries(k, manifest.canary_keys));
            me.restores.finished(&me.metrics, &id, result);
        });
        Ok(record)
    }

    /// Loads the backup into `target` by replication and turns it back into a master;
    /// returns its keys per db.
    async fn load(
        &self,
        id: &str,
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
            let (tx, rx) = self.restores.counted(id, m.rdb_bytes);
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
