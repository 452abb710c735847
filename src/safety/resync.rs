//! Full syncs per link, from the engine's log. INFO's `sync_full` counts the full syncs
//! the engine served, all replicas together; its log names each one ("Full resync
//! requested by replica 10.0.0.2:6379", KeyDB's and Redis's `replicationGetSlaveName`:
//! the replica's address and listening port). With `[logs]` the engine logs to a file
//! the daemon knows; the `resync_log` worker reads what was appended since its last look
//! (from the end of the file at start, so old syncs are not counted again) and counts
//! them per peer: a link that full-syncs again and again is a resync loop (KeyDB #569).
//! A line the log rotation moved away before it was read is not counted.

use crate::daemon::State;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The master's log lines of a sync: a replica asks; then either its partial resync is
/// accepted, or it is refused (a full sync follows), or the replica asked for a full one.
const ASKS: &str = " asks for synchronization";
const FULL_ASKED: &str = "Full resync requested by replica ";
const PARTIAL_REFUSED: &str = "Partial resynchronization not accepted";
/// The most log read per look, so a huge burst cannot hold the daemon.
const READ_MAX: u64 = 4 << 20;

/// Where the reading stands: the file's inode and the offset read up to.
#[derive(Debug, Default)]
pub(super) struct LogPosition {
    inode: Option<u64>,
    offset: u64,
}

/// The replicas given a full sync in `text` ("10.0.0.2:6379", "[::1]:6379"), one per
/// sync. `asker` carries the replica whose request is open across calls (a chunk can end
/// between its request and the answer).
pub fn full_resyncs(text: &str, asker: &mut Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some((head, _)) = line.split_once(ASKS)
            && let Some(name) = head.rsplit("Replica ").next()
        {
            *asker = Some(name.trim().to_owned());
        } else if let Some((_, name)) = line.split_once(FULL_ASKED) {
            out.push(name.trim().to_owned());
            *asker = None;
        } else if line.contains(PARTIAL_REFUSED) {
            out.extend(asker.take());
        } else if line.contains("Partial resynchronization request from") {
            *asker = None;
        }
    }
    out
}

/// The configured peer a replica name stands for: the same port (its engine port, which
/// a replica announces, or its replication port), and the same address
/// when the peer's is written as one; else the name itself.
pub fn peer_of(name: &str, peers: &[crate::config::Peer]) -> String {
    let (host, port) = match name.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
        None => return name.to_owned(),
    };
    let port: Option<u16> = port.parse().ok();
    let same_port: Vec<&crate::config::Peer> = peers
        .iter()
        .filter(|p| port.is_some_and(|port| port == p.engine_port || port == p.replication_port()))
        .collect();
    same_port
        .iter()
        .find(|p| p.address == host)
        .or_else(|| (same_port.len() == 1).then(|| &same_port[0]))
        .map_or_else(|| name.to_owned(), |p| p.name.clone())
}

/// Reads what `path` gained since `pos`: (the new text, whole lines only).
fn read_new(path: &Path, pos: &mut LogPosition, first: bool) -> std::io::Result<String> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        // Not there yet at start: everything the engine writes later is new.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if first {
                *pos = LogPosition::default();
            }
            return Ok(String::new());
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if first {
        *pos = LogPosition {
            inode: Some(meta.ino()),
            offset: meta.len(),
        };
        return Ok(String::new());
    }
    // A new file (rotated) or a shorter one (truncated): from its start.
    if pos.inode != Some(meta.ino()) || meta.len() < pos.offset {
        *pos = LogPosition {
            inode: Some(meta.ino()),
            offset: 0,
        };
    }
    f.seek(SeekFrom::Start(pos.offset))?;
    let mut buf = Vec::new();
    f.take(READ_MAX).read_to_end(&mut buf)?;
    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(whole);
    pos.offset += whole as u64;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

pub(super) async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let Some(path) = state.config.engine_logfile() else {
        return;
    };
    let safety = &state.safety;
    let mut pos = LogPosition::default();
    let mut asker = None;
    let mut first = true;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let result = match read_new(&path, &mut pos, first) {
            Ok(text) => {
                first = false;
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for name in full_resyncs(&text, &mut asker) {
                    *counts
                        .entry(peer_of(&name, &state.config.peers))
                        .or_default() += 1;
                }
                if !counts.is_empty() {
                    tracing::info!(?counts, "full syncs served, from the engine log");
                    let mut inner = safety.lock();
                    for (peer, n) in counts {
                        *inner.full_syncs_by_peer.entry(peer).or_default() += n;
                    }
                }
                Ok(())
            }
            Err(e) => Err((
                "safety_engine_log_unreadable",
                format!("reading {}: {e}", path.display()),
            )),
        };
        safety.record_run("resync_log", true, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, address: &str, port: u16) -> crate::config::Peer {
        crate::config::Peer {
            name: name.into(),
            address: address.into(),
            engine_port: port,
            replication_port: None,
            api_port: 9850,
        }
    }

    #[test]
    fn full_resync_lines_name_the_replica_and_map_to_its_peer() {
        // Redis asked for a full sync, a partial one accepted, and KeyDB refusing a
        // partial one (as 6.3.4 logs it), the answer in a later chunk.
        let log = "1:M 02 Dec 2026 07:05:49.915 * Replica 10.0.0.2:6379 asks for synchronization\n\
                   1:M 02 Dec 2026 07:05:49.915 * Full resync requested by replica 10.0.0.2:6379\n\
                   1:M 02 Dec 2026 07:05:50.000 * Replica 10.0.0.3:6379 asks for synchronization\n\
                   1:M 02 Dec 2026 07:05:50.000 * Partial resynchronization request from 10.0.0.3:6379 accepted.\n\
                   7665:7674:S 02 Dec 2026 07:56:39.214 * Replica 10.0.0.9:7000 asks for synchronization\n";
        let mut asker = None;
        assert_eq!(full_resyncs(log, &mut asker), ["10.0.0.2:6379"]);
        let later = "7665:7674:S 02 Dec 2026 07:56:39.214 * Partial resynchronization not accepted: Replication ID mismatch (Replica asked for 'a5e7', my replication IDs are '4ff4' and '0000')\n";
        assert_eq!(full_resyncs(later, &mut asker), ["10.0.0.9:7000"]);
        assert_eq!(
            full_resyncs(later, &mut asker),
            Vec::<String>::new(),
            "one per request"
        );
        let peers = [
            peer("node2", "10.0.0.2", 6379),
            peer("node3", "10.0.0.3", 6379),
        ];
        assert_eq!(peer_of("10.0.0.2:6379", &peers), "node2");
        // Another address of the same host, on the one peer with that port.
        let one = [peer("node2", "192.168.1.2", 7001)];
        assert_eq!(peer_of("10.0.0.2:7001", &one), "node2");
        // Two peers on the port and neither address: the name as it is.
        assert_eq!(peer_of("10.0.0.7:6379", &peers), "10.0.0.7:6379");
        assert_eq!(peer_of("[::1]:6379", &[peer("n", "::1", 6379)]), "n");
        // A tunnelled peer announces its own port; its tunnel's port names it too.
        let tunnelled = [crate::config::Peer {
            replication_port: Some(16379),
            ..peer("node2", "10.0.0.2", 6379)
        }];
        assert_eq!(peer_of("10.0.0.2:6379", &tunnelled), "node2");
        assert_eq!(peer_of("10.0.0.2:16379", &tunnelled), "node2");
    }

    #[test]
    fn the_log_is_read_from_where_it_was_and_again_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut pos = LogPosition::default();
        assert_eq!(
            read_new(&path, &mut pos, true).unwrap(),
            "",
            "history is skipped"
        );
        let append = |t: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(t.as_bytes()).unwrap();
        };
        append("a\nb");
        assert_eq!(
            read_new(&path, &mut pos, false).unwrap(),
            "a\n",
            "half a line waits"
        );
        append("\n");
        assert_eq!(read_new(&path, &mut pos, false).unwrap(), "b\n");
        std::fs::rename(&path, dir.path().join("engine.log.1")).unwrap();
        std::fs::write(&path, "c\n").unwrap();
        assert_eq!(read_new(&path, &mut pos, false).unwrap(), "c\n");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read_new(&path, &mut pos, false).unwrap(), "");
    }
}
