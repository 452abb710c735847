//! Backups against a real engine and a real S3 server (s3s-fs): what lands in the bucket
//! is the engine's own RDB, byte for byte, and an engine it is restored into holds every
//! key and value; a store that is down gives its error code and the failure metric.

use crate::fixture::{Engine, eventually, get, keyfleet};
use crate::s3_fixture::{Node, S3Server};
use keyfleet::s3::hex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub const BACKUPS: &str = "\n[backups]\nfleet = \"itest\"\n";

pub fn conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

pub fn backup(node: &Node, args: &[&str]) -> (i32, Value, String) {
    let out = keyfleet()
        .args(["backup"])
        .args(args)
        .args(["--api", &node.api, "--json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `DUMP` payload without what is not the value: its CRC, and KeyDB's `mvcc-tstamp`
/// field, which a KeyDB without `active-replica` reports as unset whatever the RDB said.
fn comparable(dump: &[u8]) -> Vec<u8> {
    let body = &dump[..dump.len().saturating_sub(8)];
    const MVCC: &[u8] = b"\xfa\x0bmvcc-tstamp";
    match body.windows(MVCC.len()).position(|w| w == MVCC) {
        Some(at) => [&body[..at], &body[body.len() - 2..]].concat(),
        None => body.to_vec(),
    }
}

/// Every key of the engine on `port` with its `DUMP` payload (`comparable`), sorted;
/// the daemons' replication canaries (`keyfleet:canary:*`, rewritten every second) left
/// out, as the daemon's own key figures leave them out.
pub fn dump_all(port: u16) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = conn(port);
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.retain(|k| !k.starts_with(b"keyfleet:canary:"));
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("DUMP").arg(k);
        }
        let dumps: Vec<Vec<u8>> = pipe.query(&mut c).unwrap();
        out.extend(
            chunk
                .iter()
                .cloned()
                .zip(dumps.iter().map(|d| comparable(d))),
        );
    }
    out
}

#[test]
fn a_backup_of_100k_keys_restores_into_an_engine_with_every_key_and_value() {
    let Some(s3) = S3Server::start("backup restore") else {
        return;
    };
    let node = Node::start(&s3.endpoint(), "", BACKUPS);
    let mut c = conn(node.engine_port);
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(100_000)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg("x")
        .arg("EX")
        .arg(3600)
        .query(&mut c)
        .unwrap();

    let (code, v, err) = backup(&node, &["create"]);
    assert_eq!(code, 0, "backup create failed: {err}");
    assert_eq!(v["state"], "complete", "{v}");
    let m = &v["manifest"];
    assert_eq!(m["keys"]["db0"], 100_003, "{m}");
    assert_eq!(m["fleet"], "itest");

    // The bucket holds the snapshot and the manifest, and the manifest is what the API said.
    let objects = s3.objects("backups/itest/");
    assert_eq!(
        objects.len(),
        2,
        "{:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    let (_, stored) = objects
        .iter()
        .find(|(k, _)| k.ends_with(".rdb.zst"))
        .unwrap();
    let (_, manifest) = objects.iter().find(|(k, _)| k.ends_with(".json")).unwrap();
    assert_eq!(&serde_json::from_slice::<Value>(manifest).unwrap(), m);
    assert_eq!(
        hex(&Sha256::digest(stored)),
        m["stored_sha256"].as_str().unwrap()
    );
    let rdb = zstd::decode_all(&stored[..]).unwrap();
    assert_eq!(
        hex(&Sha256::digest(&rdb)),
        m["rdb_sha256"].as_str().unwrap()
    );
    assert_eq!(rdb.len() as u64, m["rdb_bytes"].as_u64().unwrap());

    // Restored into an empty engine by `keyfleet backup restore --to`, it holds exactly
    // the node's keys and values.
    let target = Engine::start().unwrap();
    let id = m["id"].as_str().unwrap();
    let (code, record, err) = backup(
        &node,
        &["restore", id, "--to", &format!("127.0.0.1:{}", target.port)],
    );
    assert_eq!(code, 0, "restore failed: {err} {record}");
    assert_eq!(record["outcome"], "complete", "{record}");
    assert_eq!(record["keys"]["db0"], 100_003, "{record}");
    let want = dump_all(node.engine_port);
    let got = dump_all(target.port);
    assert_eq!(want.len(), 100_003);
    let differing: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|(w, _)| String::from_utf8_lossy(&w.0).into_owned())
        .collect();
    assert!(
        want == got,
        "the restored engine differs ({} keys against {}); {} differ, first {:?}",
        got.len(),
        want.len(),
        differing.len(),
        differing.iter().take(5).collect::<Vec<_>>()
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("ttl")
        .query(&mut conn(target.port))
        .unwrap();
    assert!(ttl > 0, "the key with a TTL keeps one: {ttl}");

    // Listed, and shown by id.
    let (code, list, _) = backup(&node, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(list["backups"][0]["id"], m["id"]);
    let (code, shown, _) = backup(&node, &["show", m["id"].as_str().unwrap()]);
    assert_eq!((code, &shown["manifest"]), (0, m));
}

#[test]
fn a_store_that_is_down_fails_the_backup_with_its_code_and_counts_it() {
    let Some(mut s3) = S3Server::start("backup with the store down") else {
        return;
    };
    let node = Node::start(&s3.endpoint(), "", BACKUPS);
    s3.stop();
    let (code, v, err) = backup(&node, &["create"]);
    assert_eq!(code, 1, "{v} {err}");
    assert_eq!(v["progress"]["error"]["code"], "s3_unreachable", "{v}");
    assert_eq!(node.metric("keyfleet_backup_failures_total"), Some(1.0));
    assert_eq!(
        node.metric("keyfleet_backup_last_success_timestamp_seconds"),
        Some(0.0)
    );
    assert!(
        node.metric("keyfleet_errors_total{code=\"s3_unreachable\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    // Nothing half-written is listed once the store is back.
    s3.restart();
    assert!(s3.objects("backups/").is_empty());
    let (code, list, err) = backup(&node, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(list["backups"], serde_json::json!([]));
    // And the next backup completes.
    let (code, v, err) = backup(&node, &["create"]);
    assert_eq!((code, &v["state"]), (0, &Value::from("complete")), "{err}");
}

#[test]
fn a_daemon_killed_mid_upload_leaves_no_backup_and_no_open_upload() {
    let Some(s3) = S3Server::start("backup killed mid-upload") else {
        return;
    };
    // The store behind a relay passing 4 MiB/s: a 24 MiB RDB of random bytes (which zstd
    // cannot shrink) takes six seconds to go up in four parts.
    let relay = crate::net_fixture::Relay::start(s3.port, 4 << 20);
    let mut node = Node::start(&format!("http://127.0.0.1:{}", relay.port), "", BACKUPS);
    let mut c = conn(node.engine_port);
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    for chunk in 0..24 {
        let mut pipe = redis::pipe();
        for i in 0..64 {
            let mut value = vec![0u8; 16 << 10];
            std::io::Read::read_exact(&mut random, &mut value).unwrap();
            pipe.cmd("SET")
                .arg(format!("k{chunk}:{i}"))
                .arg(value)
                .ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    let (code, started) =
        crate::fixture::request("POST", &format!("{}/api/v1/backups", node.api), None).unwrap();
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let mid = eventually(Duration::from_secs(30), || {
        let (_, v) = get(&format!("{}/api/v1/backups/{id}", node.api))?;
        (v["progress"]["uploaded_bytes"].as_u64().unwrap_or(0) >= 6 << 20).then_some(v)
    });
    assert!(mid.is_some(), "the upload got under way");
    node.kill_daemon();
    assert_eq!(
        s3.open_uploads().len(),
        1,
        "the killed daemon left its upload open"
    );
    assert!(
        s3.objects("backups/").is_empty(),
        "no manifest, no object: {:?}",
        s3.objects("backups/")
            .iter()
            .map(|o| &o.0)
            .collect::<Vec<_>>()
    );

    // Restarted: the journaled upload is aborted, and the next backup completes.
    relay.set_rate(u64::MAX);
    node.start_daemon();
    let aborted = eventually(Duration::from_secs(20), || {
        s3.open_uploads().is_empty().then_some(())
    });
    assert!(
        aborted.is_some(),
        "the interrupted upload is aborted: {:?}",
        s3.open_uploads()
    );
    let (code, v, err) = backup(&node, &["create"]);
    assert_eq!((code, &v["state"]), (0, &Value::from("complete")), "{err}");
    let (_, list, _) = backup(&node, &["list"]);
    let ids: Vec<&str> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [v["manifest"]["id"].as_str().unwrap()],
        "only the complete one is listed"
    );
    assert_ne!(ids[0], id);
    assert_eq!(s3.objects("backups/").len(), 2);
}
