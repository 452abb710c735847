//! Status built from every capture in `fixtures/info/`, asserting their real values.

use super::*;
use crate::engine::links::{NEVER_UP, NOT_A_MASTER, NOT_A_PEER, NOT_A_REPLICA, dials, is_replica};
use std::time::Duration;

const KEYDB_ALL_UP: &str = include_str!("../../fixtures/info/keydb-6.3.4-multimaster-all-up.info");
const KEYDB_ONE_DOWN: &str =
    include_str!("../../fixtures/info/keydb-6.3.4-multimaster-one-peer-down.info");
const REDIS_PRIMARY: &str =
    include_str!("../../fixtures/info/redis-7.0.15-primary-with-replica.info");
const REDIS_REPLICA_DOWN: &str =
    include_str!("../../fixtures/info/redis-7.0.15-replica-link-down.info");
const REDIS_REPLICA_STARTING: &str =
    include_str!("../../fixtures/info/redis-7.0.15-replica-link-up.info");

fn peer(name: &str, port: u16) -> PeerRef {
    PeerRef {
        name: name.into(),
        host: "127.0.0.1".into(),
        engine_port: port,
        replication_port: port,
    }
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_374_626_131)
}

fn status(text: &str, kind: EngineKind, peers: &[PeerRef]) -> NodeStatus {
    NodeStatus::from_info("node1", kind, &Info::parse(text).unwrap(), peers, at())
}

fn link<'a>(s: &'a NodeStatus, peer: &str) -> &'a PeerLink {
    s.links
        .iter()
        .find(|l| l.peer == peer)
        .unwrap_or_else(|| panic!("no link {peer}"))
}

#[test]
fn every_fixture_is_covered() {
    // The crate's own copy: the Nix build and a user's clone have nothing beside it.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/info");
    let files = std::fs::read_dir(dir).expect("fixtures/info is part of the crate");
    let known = [
        "keydb-6.3.4-multimaster-all-up.info",
        "keydb-6.3.4-multimaster-one-peer-down.info",
        "redis-7.0.15-primary-with-replica.info",
        "redis-7.0.15-replica-link-down.info",
        "redis-7.0.15-replica-link-up.info",
    ];
    for file in files {
        let name = file.unwrap().file_name().into_string().unwrap();
        assert!(
            known.contains(&name.as_str()),
            "new fixture {name}: add assertions for it here"
        );
    }
}

#[test]
fn keydb_all_up() {
    let s = status(
        KEYDB_ALL_UP,
        EngineKind::Redis,
        &[peer("node2", 7102), peer("node3", 7103)],
    );
    assert_eq!(s.engine, "keydb", "INFO wins over the configured kind");
    assert_eq!(s.version.as_deref(), Some("6.3.4"));
    assert!(s.up);
    assert_eq!(s.role.as_deref(), Some("active-replica"));
    assert_eq!(s.uptime_seconds, Some(4));
    assert_eq!(s.connected_clients, Some(3));
    assert_eq!(s.used_memory_bytes, Some(2_848_584));
    assert_eq!(s.maxmemory_bytes, Some(0));
    assert_eq!(s.keys, Some(3));
    assert_eq!(s.keys_per_db, BTreeMap::from([(0, 2), (2, 1)]));
    assert_eq!(s.ops_per_sec, Some(11));
    assert_eq!(s.master_global_link_status.as_deref(), Some("up"));
    assert_eq!(s.connected_masters, Some(2));
    assert_eq!(s.links.len(), 2);
    for name in ["node2", "node3"] {
        let l = link(&s, name);
        assert_eq!(
            (l.status, l.last_io_seconds, l.down_since_seconds),
            (LinkStatus::Up, Some(1), None)
        );
        assert_eq!(l.reason, None);
    }
    assert_eq!(link(&s, "node3").port, 7103);
    assert!(s.problems().is_empty());
}

#[test]
fn keydb_one_peer_down() {
    let s = status(
        KEYDB_ONE_DOWN,
        EngineKind::Keydb,
        &[peer("node2", 7102), peer("node3", 7103)],
    );
    assert_eq!(s.master_global_link_status.as_deref(), Some("down"));
    assert_eq!(s.connected_masters, Some(1));
    assert_eq!(s.connected_clients, Some(2));
    assert_eq!(s.ops_per_sec, Some(0));
    let up = link(&s, "node2");
    assert_eq!(
        (up.status, up.last_io_seconds, up.down_since_seconds),
        (LinkStatus::Up, Some(4), None)
    );
    let down = link(&s, "node3");
    assert_eq!(
        (down.status, down.last_io_seconds, down.down_since_seconds),
        (LinkStatus::Down, None, Some(3))
    );
    assert_eq!(down.reason, None);
    assert_eq!(
        s.problems(),
        ["link with node3 (127.0.0.1:7103) is down: link down"]
    );
}

#[test]
fn unconfigured_masters_and_missing_peers_are_both_visible() {
    let s = status(
        KEYDB_ALL_UP,
        EngineKind::Keydb,
        &[peer("node2", 7102), peer("node4", 7104)],
    );
    assert_eq!(s.links.len(), 3);
    let missing = link(&s, "node4");
    assert_eq!(
        (missing.status, missing.down_since_seconds),
        (LinkStatus::Down, None)
    );
    assert_eq!(missing.reason, Some(NOT_A_MASTER));
    let stray = link(&s, "127.0.0.1:7103");
    assert_eq!(
        (stray.status, stray.port, stray.reason),
        (LinkStatus::Up, 7103, Some(NOT_A_PEER))
    );
    assert_eq!(s.problems().len(), 1);
}

#[test]
fn redis_primary_links_are_its_replicas() {
    let s = status(REDIS_PRIMARY, EngineKind::Keydb, &[peer("node2", 7202)]);
    assert_eq!(s.engine, "redis");
    assert_eq!(s.version.as_deref(), Some("7.0.15"));
    assert_eq!(s.role.as_deref(), Some("master"));
    assert_eq!(
        (s.uptime_seconds, s.connected_clients, s.ops_per_sec),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(s.used_memory_bytes, Some(1_087_688));
    assert_eq!(s.keys, Some(2));
    assert_eq!(s.keys_per_db, BTreeMap::from([(0, 1), (3, 1)]));
    assert_eq!(
        (s.master_global_link_status.as_deref(), s.connected_masters),
        (None, None)
    );
    // The replica is still waiting for its first sync, so the link is not up yet.
    let l = link(&s, "node2");
    assert_eq!(
        (l.status, l.last_io_seconds, l.reason),
        (LinkStatus::Down, None, None)
    );

    let s = status(
        REDIS_PRIMARY,
        EngineKind::Redis,
        &[peer("node2", 7202), peer("node3", 7203)],
    );
    assert_eq!(link(&s, "node3").reason, Some(NOT_A_REPLICA));
}

#[test]
fn redis_replica_link_down() {
    let s = status(
        REDIS_REPLICA_DOWN,
        EngineKind::Redis,
        &[peer("primary", 7201)],
    );
    assert_eq!(s.engine, "redis");
    assert_eq!(s.role.as_deref(), Some("replica"));
    assert_eq!((s.uptime_seconds, s.keys), (Some(7), Some(2)));
    let l = link(&s, "primary");
    assert_eq!(
        (l.status, l.last_io_seconds, l.down_since_seconds),
        (LinkStatus::Down, None, Some(2))
    );
    assert_eq!(l.reason, None);
}

#[test]
fn redis_replica_before_first_sync() {
    // The "link-up" capture was taken 3 s after start, before the first sync finished:
    // the engine still reports the link down, never up since start (down_since -1).
    let s = status(
        REDIS_REPLICA_STARTING,
        EngineKind::Redis,
        &[peer("primary", 7201)],
    );
    assert_eq!(
        (s.uptime_seconds, s.keys, s.keys_per_db.len()),
        (Some(3), Some(0), 0)
    );
    let l = link(&s, "primary");
    assert_eq!(
        (l.status, l.last_io_seconds, l.down_since_seconds),
        (LinkStatus::Down, None, None)
    );
    assert_eq!(l.reason, Some(NEVER_UP));
}

#[test]
fn json_shape_follows_the_design() {
    let s = status(
        KEYDB_ONE_DOWN,
        EngineKind::Keydb,
        &[peer("node2", 7102), peer("node3", 7103)],
    );
    let json = serde_json::to_value(&s).unwrap();
    for field in [
        "name",
        "engine",
        "version",
        "up",
        "role",
        "uptime_seconds",
        "connected_clients",
        "used_memory_bytes",
        "maxmemory_bytes",
        "keys",
        "ops_per_sec",
        "links",
        "checked_at",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
    assert!(json.get("error").is_none());
    assert_eq!(json["checked_at"], "2026-11-22T19:10:26.131Z");
    assert_eq!(json["keys_per_db"]["2"], 1);
    assert_eq!(json["links"][1]["status"], "down");
    assert_eq!(json["links"][1]["down_since_seconds"], 3);
    assert!(json["links"][1]["last_io_seconds"].is_null());
    assert!(json["links"][0].get("reason").is_none());
}

#[test]
fn down_node() {
    let s = NodeStatus::down(
        "node1",
        EngineKind::Keydb,
        NodeError {
            code: "engine_unreachable",
            message: "connection refused".into(),
        },
        &[peer("node2", 7102)],
        at(),
    );
    assert!(!s.up);
    assert_eq!(s.engine, "keydb");
    assert_eq!(s.links[0].status, LinkStatus::Down);
    assert_eq!(s.links[0].reason, Some(ENGINE_DOWN));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["error"]["code"], "engine_unreachable");
    assert_eq!(json["error"]["message"], "connection refused");
    assert!(json["keys"].is_null() && json["role"].is_null());
    assert_eq!(
        s.problems(),
        ["engine is down: engine_unreachable: connection refused"]
    );
}

#[test]
fn rfc3339_dates() {
    let t = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(t(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(t(951_827_696), "2000-02-29T12:34:56.000Z");
    assert_eq!(t(4_102_444_799), "2099-12-31T23:59:59.000Z");
}

#[test]
fn a_tunnelled_peer_is_matched_as_master_by_where_it_is_dialled_and_as_replica_by_either_port() {
    let peer = PeerRef {
        name: "n2".into(),
        host: "10.0.0.2".into(),
        engine_port: 6379,
        replication_port: 16379,
    };
    assert!(dials(&peer, "10.0.0.2", 16379));
    assert!(
        !dials(&peer, "10.0.0.2", 6379),
        "this node dials the tunnel"
    );
    assert!(
        is_replica(&peer, "10.0.0.2", 6379),
        "a replica announces its own port"
    );
    assert!(is_replica(&peer, "10.0.0.2", 16379));
    assert!(!is_replica(&peer, "10.0.0.3", 6379));
}
