//! Taking the snapshot: `BGSAVE` on the local engine, waiting for it to end, and
//! checking it succeeded (`rdb_last_bgsave_status`).

use super::BackupError;
use crate::engine::{Engine, Info};
use std::time::{Duration, Instant};

/// Asks for a background save and waits until it has ended well; returns what INFO
/// said just before it.
pub async fn bgsave(engine: &Engine, timeout: Duration) -> Result<Info, BackupError> {
    let deadline = Instant::now() + timeout;
    let before = loop {
        let info = engine.info().await.map_err(BackupError::engine)?;
        // A save the engine is already making (its own schedule) ends first: the
        // snapshot must start after the backup was asked for.
        if info.get_u64("rdb_bgsave_in_progress") == Some(1) {
            wait_a_little(deadline).await?;
            continue;
        }
        match engine.bgsave().await {
            Ok(()) => break info,
            Err(e) if e.to_string().contains("in progress") => wait_a_little(deadline).await?,
            Err(e) => return Err(BackupError::engine(e)),
        }
    };
    loop {
        wait_a_little(deadline).await?;
        let info = engine.info().await.map_err(BackupError::engine)?;
        if info.get_u64("rdb_bgsave_in_progress") == Some(0) {
            return match info.get("rdb_last_bgsave_status") {
                Some("ok") => Ok(before),
                other => Err(BackupError::new(
                    "backup_bgsave_failed",
                    format!(
                        "the engine's BGSAVE failed (rdb_last_bgsave_status: {}); see the engine's log",
                        other.unwrap_or("missing")
                    ),
                )),
            };
        }
    }
}

async fn wait_a_little(deadline: Instant) -> Result<(), BackupError> {
    if Instant::now() >= deadline {
        return Err(BackupError::new(
            "backup_bgsave_timeout",
            "the engine's BGSAVE did not end within backups.bgsave_timeout".into(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
