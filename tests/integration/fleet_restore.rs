//! Restores inside the fleet, on a real `keyfleet dev` fleet with s3s-fs: a fleet
//! restore after writes, deletes and a FLUSHALL leaves every node equal to the backup
//! (all keys compared, values by DUMP) while writes during it are refused; a node
//! rebuild ends equal to its peers; a restore that fails before the peers are wiped
//! puts every node back. Refusals are in `fleet_restore_refusals`. KeyDB scenarios skip
//! with a line without KEYFLEET_KEYDB_SERVER, all without s3s-fs.

use crate::backup::{conn, dump_all};
use crate::fixture::{DevFleet, engine, eventually, get, keyfleet, request_with_body};
use keyfleet::config::EngineKind;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A dev fleet of `n` nodes with backups, when this machine can run one of `kind`.
pub fn fleet(n: u16, kind: EngineKind) -> Option<DevFleet> {
    if engine().map(|(_, k)| k) != Some(kind) {
        skip!("skipped: this scenario needs {kind:?} as the dev fleet's engine");
        return None;
    }
    let fleet = DevFleet::start(n);
    match get(&format!("{}/api/v1/backups", fleet.api(0))) {
        Some((200, _)) => Some(fleet),
        other => {
            skip!("skipped: the dev fleet has no backup store (s3s-fs not on PATH): {other:?}");
            None
        }
    }
}

/// A 3-node KeyDB dev fleet holding `n` strings and four more keys on every node.
pub fn filled(n: usize) -> Option<(DevFleet, Vec<u16>)> {
    let fleet = fleet(3, EngineKind::Keydb)?;
    let ports: Vec<u16> = (0..3).map(|i| fleet.engine_port(i)).collect();
    fill(ports[0], n);
    all_hold(&fleet, &ports, n as u64 + 4);
    Some((fleet, ports))
}

pub fn cli(fleet: &DevFleet, node: usize, args: &[&str]) -> (i32, Value, String) {
    let out = keyfleet()
        .arg("backup")
        .args(args)
        .args(["--api", &fleet.api(node), "--json"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn post(url: &str, body: &str) -> (u16, Value) {
    request_with_body("POST", url, None, body).unwrap()
}

pub fn backup_now(fleet: &DevFleet) -> String {
    let (code, v, err) = cli(fleet, 0, &["create"]);
    assert_eq!(code, 0, "{err}");
    v["id"].as_str().unwrap().to_owned()
}

pub fn cmd(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(&mut conn(port))
}

/// The user's keys: DBSIZE less the daemons' replication canaries.
pub fn dbsize(port: u16) -> u64 {
    crate::fixture::user_keys(port)
}

/// Waits until every node holds `n` keys.
pub fn all_hold(fleet: &DevFleet, ports: &[u16], n: u64) {
    eventually(Duration::from_secs(20), || {
        ports.iter().all(|p| dbsize(*p) == n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "not every node holds {n} keys: {:?}; {}",
            ports.iter().map(|p| dbsize(*p)).collect::<Vec<_>>(),
            fleet.logs()
        )
    });
}

pub fn fill(port: u16, n: usize) {
    let mut c = conn(port);
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET")
            .arg(format!("k{i}"))
            .arg(format!("v{i}"))
            .ignore();
    }
    pipe.cmd("HSET").arg("h").arg("f").arg("1").ignore();
    pipe.cmd("RPUSH").arg("l").arg("a").arg("b").ignore();
    pipe.cmd("SADD").arg("s").arg("x").ignore();
    pipe.cmd("SET")
        .arg("victim")
        .arg("from the backup")
        .ignore();
    pipe.query::<()>(&mut c).unwrap();
}

#[test]
fn a_fleet_restore_brings_every_node_back_to_the_backup_and_refuses_writes_meanwhile() {
    let Some((fleet, ports)) = filled(2000) else {
        return;
    };
    let id = backup_now(&fleet);
    let backup = dump_all(ports[0]);

    // After the backup: a delete, a change, a write, then FLUSHALL, then a write.
    cmd(ports[1], &["DEL", "victim"]).unwrap();
    cmd(ports[0], &["SET", "k1", "changed"]).unwrap();
    cmd(ports[2], &["SET", "after", "x"]).unwrap();
    cmd(ports[1], &["FLUSHALL"]).unwrap();
    all_hold(&fleet, &ports, 0);
    cmd(ports[2], &["SET", "after-flush", "x"]).unwrap();
    all_hold(&fleet, &ports, 1);

    // A client writing to node2 throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let port = ports[1];
        std::thread::spawn(move || {
            let mut c = conn(port);
            // Writes that succeeded before the first READONLY, and after it.
            let (mut early, mut ok, mut readonly, mut other) =
                (Vec::new(), Vec::new(), 0, Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w:{n}");
                match redis::cmd("SET").arg(&key).arg("1").query::<()>(&mut c) {
                    Ok(()) if readonly == 0 => early.push(key),
                    Ok(()) => ok.push(key),
                    Err(e) if e.code() == Some("READONLY") => readonly += 1,
                    Err(e) => other.push(e.to_string()),
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (early, ok, readonly, other)
        })
    };

    // Coordinated by node3, which did not take the backup.
    let (code, record, err) = cli(&fleet, 2, &["restore", &id, "--fleet", "--yes"]);
    stop.store(true, Ordering::Relaxed);
    let (early, written, readonly, other) = writer.join().unwrap();
    assert_eq!(code, 0, "{err}\n{record:#}\n{}", fleet.logs());
    assert_eq!(record["mode"], "fleet");
    assert_eq!(record["outcome"], "complete");
    assert_eq!(record["keys"]["db0"], 2004);
    assert!(record["rdb_bytes"].as_u64().unwrap() > 0, "{record:#}");
    assert_eq!(
        record["sent_bytes"], record["rdb_bytes"],
        "the whole RDB was sent"
    );
    assert!(readonly > 0, "no write was refused during the restore");
    assert!(other.is_empty(), "writes failed otherwise: {other:?}");

    // Every node: exactly the backup, plus only writes the client saw succeed.
    let written: std::collections::HashSet<Vec<u8>> =
        written.into_iter().map(String::into_bytes).collect();
    eventually(Duration::from_secs(10), || {
        let dumps: Vec<_> = ports.iter().map(|p| dump_all(*p)).collect();
        dumps.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .expect("the nodes do not converge after the restore");
    for p in &ports {
        let (ours, theirs): (Vec<_>, Vec<_>) = dump_all(*p)
            .into_iter()
            .partition(|(k, _)| !k.starts_with(b"w:"));
        if ours != backup {
            let extra: Vec<_> = ours
                .iter()
                .filter(|kv| !backup.contains(kv))
                .take(5)
                .collect();
            let missing: Vec<_> = backup
                .iter()
                .filter(|kv| !ours.contains(kv))
                .take(5)
                .collect();
            panic!(
                "node on port {p} differs from the backup ({} keys, backup {}): not in the backup {extra:?}; missing {missing:?}",
                ours.len(),
                backup.len()
            );
        }
        for (k, _) in theirs {
            assert!(
                written.contains(&k),
                "{k:?} exists but its write was refused"
            );
        }
        for k in early.iter().rev().take(50) {
            assert_eq!(
                cmd(*p, &["EXISTS", k]).unwrap(),
                redis::Value::Int(0),
                "{k}, written before the restore, survived it"
            );
        }
        assert_eq!(
            cmd(*p, &["GET", "victim"]).unwrap(),
            redis::Value::BulkString(b"from the backup".to_vec())
        );
    }
    for p in &ports {
        cmd(*p, &["SET", "writable", "again"]).unwrap();
    }
    let (_, history) = get(&format!("{}/api/v1/restores", fleet.api(2))).unwrap();
    let last = history["restores"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["outcome"], "complete", "{last:#}");
    assert_eq!(last["phase"], "finish");
    eventually(Duration::from_secs(20), || {
        let (_, v) = get(&format!("{}/api/v1/fleet", fleet.api(0)))?;
        (v["healthy"] == true).then_some(())
    })
    .expect("the fleet is not healthy after the restore");
}

#[test]
fn a_node_rebuild_ends_equal_to_its_peers() {
    let Some((fleet, ports)) = filled(500) else {
        return;
    };
    // node2 drifts: cut off, it gains junk and loses a key; the others move on.
    for (from, to) in [(1, 0), (1, 2), (0, 1), (2, 1)] {
        cmd(
            ports[from],
            &["REPLICAOF", "REMOVE", "127.0.0.1", &ports[to].to_string()],
        )
        .unwrap();
    }
    cmd(ports[1], &["SET", "junk", "1"]).unwrap();
    cmd(ports[1], &["DEL", "k5"]).unwrap();
    cmd(ports[0], &["SET", "new", "1"]).unwrap();

    let (code, record, err) = cli(&fleet, 1, &["rebuild", "--yes"]);
    assert_eq!(code, 0, "{err}\n{record:#}\n{}", fleet.logs());
    assert_eq!(record["mode"], "rebuild");
    assert_eq!(record["target"], "node2 from node1");
    let dumps: Vec<_> = ports.iter().map(|p| dump_all(*p)).collect();
    assert_eq!(dumps[0].len(), 505);
    assert!(
        dumps[1] == dumps[0] && dumps[2] == dumps[0],
        "node2 differs from its peers"
    );
    assert_eq!(
        cmd(ports[1], &["EXISTS", "junk"]).unwrap(),
        redis::Value::Int(0)
    );
    // Linked both ways again: a write on node2 reaches node1.
    cmd(ports[1], &["SET", "from-node2", "1"]).unwrap();
    eventually(Duration::from_secs(10), || {
        (cmd(ports[0], &["EXISTS", "from-node2"]).ok()? == redis::Value::Int(1)).then_some(())
    })
    .expect("node2's writes do not reach node1 after the rebuild");
}

#[test]
fn a_fleet_restore_that_fails_before_the_peers_are_wiped_puts_every_node_back() {
    let Some((fleet, ports)) = filled(300) else {
        return;
    };
    let id = backup_now(&fleet);
    cmd(ports[1], &["SET", "after", "1"]).unwrap();
    cmd(ports[2], &["DEL", "k7"]).unwrap();
    all_hold(&fleet, &ports, 304);
    let before = dump_all(ports[0]);
    // The stored object altered: the coordinator's load fails its checksum half way.
    let object = fleet
        .dir()
        .join(format!("s3/data/keyfleet-dev/backups/dev/{id}.rdb.zst"));
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&object, &bytes).unwrap();

    let (code, record, err) = cli(&fleet, 0, &["restore", &id, "--fleet", "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(record["outcome"], "failed", "{record:#}");
    assert_eq!(record["phase"], "load");
    assert_eq!(record["error"]["code"], "restore_checksum_mismatch");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("every node is linked as configured"),
        "{message}"
    );
    // Back as before: same data everywhere, linked, writable.
    eventually(Duration::from_secs(20), || {
        ports.iter().all(|p| dump_all(*p) == before).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the nodes did not come back to their data: {}",
            fleet.logs()
        )
    });
    for p in &ports {
        cmd(*p, &["SET", "writable", "again"]).unwrap();
    }
    eventually(Duration::from_secs(20), || {
        let (_, v) = get(&format!("{}/api/v1/fleet", fleet.api(0)))?;
        (v["healthy"] == true).then_some(())
    })
    .expect("the fleet is not healthy after the failed restore");
}
