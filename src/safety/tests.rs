//! The checks' bookkeeping, without an engine: lag on first arrival, skew correction,
//! staleness, link flaps, and what the node's status shows.

use super::*;
use crate::engine::{LinkSafety, PeerLink};

fn config(extra: &str) -> Config {
    let text = format!(
        r#"
node_name = "node1"
[engine]
port = 7001
{extra}
[[peers]]
name = "node2"
address = "127.0.0.1"
engine_port = 7002
api_port = 7102
[[peers]]
name = "node3"
address = "127.0.0.1"
engine_port = 7003
api_port = 7103
"#
    );
    Config::parse(std::path::Path::new("node1.toml"), &text).unwrap()
}

/// The checks' state, with a reader engine that is never asked (nothing listens on
/// port 1) and the state in a directory of the test's own.
fn new_safety(config: &Config, clock: Clock) -> Safety {
    let mut config = config.clone();
    config.state_dir = std::env::temp_dir().join(format!(
        "keyfleet-safety-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let reader = crate::engine::Engine::new(crate::engine::EngineOptions {
        target: crate::engine::Target::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        },
        user: None,
        password: None,
        connect_timeout: std::time::Duration::from_millis(100),
        command_timeout: std::time::Duration::from_millis(100),
    });
    Safety::new(&config, clock, Vec::new(), reader, Vec::new())
}

fn link(peer: &str, up: bool) -> PeerLink {
    PeerLink {
        peer: peer.into(),
        host: "127.0.0.1".into(),
        port: 7002,
        status: if up { LinkStatus::Up } else { LinkStatus::Down },
        last_io_seconds: None,
        down_since_seconds: None,
        reason: None,
        safety: LinkSafety::default(),
    }
}

fn status(links: Vec<PeerLink>) -> NodeStatus {
    let info = crate::engine::Info::parse(
        "# Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\ndb1:keys=4,expires=0,avg_ttl=0\r\n",
    )
    .unwrap();
    let mut s = NodeStatus::from_info(
        "node1",
        EngineKind::Keydb,
        &info,
        &[],
        std::time::SystemTime::now(),
    );
    s.links = links;
    s
}

#[test]
fn a_canary_counts_once_and_its_lag_is_corrected_by_the_skew() {
    let s = new_safety(&config(""), Clock::default());
    s.canary_arrived("node2", 1, 1_000_000, 1_000_400);
    // The same canary again, by way of node3: not a second observation.
    s.canary_arrived("node2", 1, 1_000_000, 1_009_000);
    let r = s.report();
    let p2 = r.peers.iter().find(|p| p.peer == "node2").unwrap();
    assert_eq!(p2.lag_seconds, Some(0.0004));
    assert_eq!(p2.lag_samples, 1);
    assert_eq!(p2.canary_seq, Some(1));
    // node3's clock runs 30 ms ahead: its stamps are 30 ms late in ours.
    s.skew_measured("node3", Ok((30_000, 100)));
    s.canary_arrived("node3", 7, 2_030_000, 2_000_500);
    let r = s.report();
    let p3 = r.peers.iter().find(|p| p.peer == "node3").unwrap();
    assert_eq!(p3.lag_seconds, Some(0.0005));
    assert_eq!(p3.clock_skew_seconds, Some(0.03));
    // A node that is not a peer, or this node itself, is ignored.
    s.canary_arrived("node9", 1, 1, 2);
    assert_eq!(s.report().peers.len(), 2);
}

#[test]
fn canary_age_grows_from_the_newest_value_seen() {
    let clock = Clock::default();
    let s = new_safety(&config(""), clock);
    let now = clock.now_us();
    s.canaries_read(&[
        ("node1".into(), Some(format!("5 {now}").into_bytes())),
        (
            "node2".into(),
            Some(format!("9 {}", now - 3_000_000).into_bytes()),
        ),
        ("node3".into(), None),
    ]);
    let r = s.report();
    assert_eq!(r.canary_keys, 2);
    let p2 = r.peers.iter().find(|p| p.peer == "node2").unwrap();
    let age = p2.canary_age_seconds.unwrap();
    assert!((3.0..3.5).contains(&age), "{age}");
    assert_eq!(p2.canary_seq, Some(9));
    // Never seen: at least as old as the checks.
    let p3 = r.peers.iter().find(|p| p.peer == "node3").unwrap();
    assert!(p3.canary_age_seconds.unwrap() < 1.0);
    // An older value read later does not make the canary younger... or older.
    s.canaries_read(&[(
        "node2".into(),
        Some(format!("8 {}", now - 9_000_000).into_bytes()),
    )]);
    let p2 = s
        .report()
        .peers
        .into_iter()
        .find(|p| p.peer == "node2")
        .unwrap();
    assert_eq!(p2.canary_seq, Some(9));
}

#[test]
fn the_status_leaves_canary_keys_out_and_shows_each_link() {
    let s = new_safety(&config(""), Clock::default());
    let now = s.clock.now_us();
    s.canaries_read(&[
        ("node1".into(), Some(format!("1 {now}").into_bytes())),
        ("node2".into(), Some(format!("1 {now}").into_bytes())),
        ("node3".into(), Some(format!("1 {now}").into_bytes())),
    ]);
    s.canary_arrived("node2", 2, now, now + 250);
    let mut st = status(vec![link("node2", true), link("node3", true)]);
    s.annotate(&mut st);
    assert_eq!(st.keys, Some(11));
    assert_eq!(st.keys_per_db.get(&0), Some(&7));
    assert_eq!(st.keys_per_db.get(&1), Some(&4));
    assert_eq!(st.canary_keys, Some(3));
    assert_eq!(st.links[0].safety.lag_seconds, Some(0.00025));
    assert!(st.links[1].safety.canary_age_seconds.is_some());
    assert_eq!(st.links[1].safety.lag_seconds, None);
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["links"][0]["lag_seconds"], 0.00025);
    assert!(json["links"][1].get("lag_seconds").is_none());
}

#[test]
fn link_flaps_are_counted_on_the_way_down() {
    let s = new_safety(&config(""), Clock::default());
    for up in [true, false, false, true, false] {
        s.observe(&status(vec![link("node2", up)]), Some(3));
    }
    let r = s.report();
    assert_eq!(r.full_syncs, Some(3));
    assert_eq!(
        r.peers
            .iter()
            .find(|p| p.peer == "node2")
            .unwrap()
            .link_flaps,
        2
    );
}

#[test]
fn off_means_no_worker_and_no_figures() {
    let s = new_safety(&config("[safety]\nenabled = false\n"), Clock::default());
    let r = s.report();
    assert!(!r.enabled && !r.writes_canary);
    assert!(r.workers.iter().all(|w| w.state == "off"));
    let mut st = status(vec![link("node2", true)]);
    s.annotate(&mut st);
    assert_eq!(st.keys, Some(14));
    assert_eq!(st.canary_keys, None);
}

#[test]
fn a_redis_replica_expects_the_primarys_canary_and_writes_none() {
    let replica = config("kind = \"redis\"\nprimary = \"node2\"\n");
    let s = new_safety(&replica, Clock::default());
    let r = s.report();
    assert!(!r.writes_canary);
    let expected: Vec<_> = r
        .peers
        .iter()
        .filter(|p| p.canary_expected)
        .map(|p| p.peer.as_str())
        .collect();
    assert_eq!(expected, ["node2"]);
    let primary = config("kind = \"redis\"\nprimary = \"node1\"\n");
    let s = new_safety(&primary, Clock::default());
    let r = s.report();
    assert!(r.writes_canary);
    assert!(r.peers.iter().all(|p| !p.canary_expected));
    assert!(
        r.workers
            .iter()
            .any(|w| w.name == "canary_listener" && w.state == "off")
    );
}
