//! Replication safety against a real `keyfleet dev --partitionable` fleet: canary lag
//! per link, staleness rising when a link is cut for real (the dev fleet's TCP proxies
//! reset and refuse the engines' connections) and falling after the heal, the
//! atomic-writes node on each side, and clock skew from a shifted daemon clock. KeyDB
//! (multi-master: every node sees every peer's canary) when KEYFLEET_KEYDB_SERVER is
//! set, else Redis (node1 the primary: its canary reaches the replicas).

use crate::fixture::*;
use crate::safety_fixture::{dev_cli, node};
use keyfleet::config::EngineKind;
use serde_json::Value;
use std::time::{Duration, Instant};

fn link(node: &Value, peer: &str) -> Value {
    node["links"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["peer"] == peer))
        .cloned()
        .unwrap_or(Value::Null)
}

/// (node index, peer name) pairs whose canary must arrive: every ordered pair with
/// KeyDB, the primary's canary on each replica with Redis.
fn inbound(kind: EngineKind) -> Vec<(usize, &'static str)> {
    match kind {
        EngineKind::Keydb => vec![
            (0, "node2"),
            (0, "node3"),
            (1, "node1"),
            (1, "node3"),
            (2, "node1"),
            (2, "node2"),
        ],
        EngineKind::Redis => vec![(1, "node1"), (2, "node1")],
    }
}

#[test]
fn canary_lag_staleness_and_partitions() {
    let Some((_, kind)) = engine() else {
        skip!(
            "skipped canary_lag_staleness_and_partitions: no engine (redis-server or KEYFLEET_KEYDB_SERVER)"
        );
        return;
    };
    let fleet = DevFleet::start_with(3, &["--partitionable", "--no-s3"], &[]);
    let started = Instant::now();

    // Every expected link reports a lag soon after the fleet is ready.
    for (i, peer) in inbound(kind) {
        let lag = eventually(Duration::from_secs(10), || {
            link(&node(&fleet, i), peer)["lag_seconds"].as_f64()
        });
        assert!(
            lag.is_some(),
            "node{} has no lag for {peer}: {}",
            i + 1,
            fleet.logs()
        );
    }
    eprintln!(
        "every link's lag reported {:?} after the fleet was ready",
        started.elapsed()
    );
    // The canary keys are left out of the user's key figures: the fleet holds no key
    // of the user's.
    let n1 = node(&fleet, 0);
    assert_eq!(n1["keys"], 0, "{n1:#}");
    assert!(n1["canary_keys"].as_u64().unwrap() >= 1, "{n1:#}");

    // Idle loopback: a few more canaries, then the median lag is under 50 ms.
    std::thread::sleep(Duration::from_secs(4));
    let (i, peer) = inbound(kind)[0];
    let (_, report) = get(&format!("{}/api/v1/safety", fleet.api(i))).unwrap();
    let p = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == peer)
        .unwrap()
        .clone();
    assert!(p["lag_samples"].as_u64().unwrap() >= 3, "{p:#}");
    let p50 = p["lag_p50_seconds"].as_f64().unwrap();
    assert!(
        p50 <= 0.05,
        "median canary lag {p50} s on an idle loopback fleet: {p:#}"
    );
    assert!(p["canary_age_seconds"].as_f64().unwrap() < 3.0, "{p:#}");
    for w in report["workers"].as_array().unwrap() {
        assert_ne!(w["state"], "failing", "{w:#}");
    }
    assert_matches_schema(&fleet.api(i), "Safety", &report);
    assert_matches_schema(&fleet.api(i), "SafetyPeer", &p);
    let (_, view) = get(&format!("{}/api/v1/fleet", fleet.api(2))).unwrap();
    assert_eq!(view["atomic_writes_node"], "node1", "{view:#}");

    // Cut node3 off: on node3 (Redis) or node1 (KeyDB), node3's side of the link goes
    // stale, the metric says so, and writes no longer arrive.
    let (ok, out) = dev_cli(&fleet, &["partition", "node3"]);
    assert!(ok, "{out}");
    assert!(out.contains("node3"), "{out}");
    let (watcher, watched) = match kind {
        EngineKind::Keydb => (0, "node3"),
        EngineKind::Redis => (2, "node1"),
    };
    let stale = eventually(Duration::from_secs(15), || {
        let age = link(&node(&fleet, watcher), watched)["canary_age_seconds"].as_f64()?;
        (age > 3.0).then_some(age)
    });
    assert!(
        stale.is_some(),
        "no staleness after the cut: {:#}",
        node(&fleet, watcher)
    );
    let (_, metrics) = get(&format!("{}/metrics", fleet.api(watcher))).unwrap();
    let metrics = metrics.as_str().unwrap().to_owned();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "keyfleet_replication_canary_age_seconds{{peer=\"{watched}\"}}"
            ))
        })
        .unwrap_or_else(|| panic!("no canary age for {watched}:\n{metrics}"));
    let age: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(age > 3.0, "{line}");
    // The other side keeps the atomic-writes node; KeyDB's node3, alone, is not fit.
    let (_, view) = get(&format!("{}/api/v1/fleet", fleet.api(1))).unwrap();
    assert_eq!(view["atomic_writes_node"], "node1", "{view:#}");
    if kind == EngineKind::Keydb {
        // Cutting node1 too leaves node2 alone with node3's link down... every node
        // alone: nobody has a majority.
        let (ok, out) = dev_cli(&fleet, &["partition", "node1"]);
        assert!(ok, "{out}");
        let none = eventually(Duration::from_secs(15), || {
            let (_, v) = get(&format!("{}/api/v1/fleet", fleet.api(1)))?;
            v["atomic_writes_node"].is_null().then_some(())
        });
        assert!(
            none.is_some(),
            "{:#}",
            get(&format!("{}/api/v1/fleet", fleet.api(1))).unwrap().1
        );
    }

    // Heal: the canary flows again and is fresh.
    let (ok, out) = dev_cli(&fleet, &["heal"]);
    assert!(ok, "{out}");
    let fresh = eventually(Duration::from_secs(20), || {
        let age = link(&node(&fleet, watcher), watched)["canary_age_seconds"].as_f64()?;
        (age < 2.0).then_some(age)
    });
    assert!(
        fresh.is_some(),
        "still stale after the heal: {:#}",
        node(&fleet, watcher)
    );
    let (_, view) = get(&format!("{}/api/v1/fleet", fleet.api(2))).unwrap();
    assert_eq!(view["atomic_writes_node"], "node1", "{view:#}");
}

#[test]
fn a_shifted_clock_shows_as_skew() {
    let Some(_) = engine() else {
        skip!(
            "skipped a_shifted_clock_shows_as_skew: no engine (redis-server or KEYFLEET_KEYDB_SERVER)"
        );
        return;
    };
    // node2's daemon reads a clock 200 ms ahead of the engines': every peer engine's
    // TIME is 200 ms behind it.
    let fleet = DevFleet::start_with(
        3,
        &["--no-s3"],
        &[("KEYFLEET_TEST_CLOCK_OFFSET_node2", "+200ms")],
    );
    // Every peer is measured (/api/v1/safety); a Redis replica's node status lists
    // only its link with the primary.
    let safety_peer = |i: usize, peer: &str| -> Option<f64> {
        let (_, r) = get(&format!("{}/api/v1/safety", fleet.api(i)))?;
        r["peers"].as_array()?.iter().find(|p| p["peer"] == peer)?["clock_skew_seconds"].as_f64()
    };
    for peer in ["node1", "node3"] {
        let skew = eventually(Duration::from_secs(20), || safety_peer(1, peer))
            .unwrap_or_else(|| panic!("no skew for {peer}: {:#}", node(&fleet, 1)));
        assert!(
            (skew + 0.2).abs() <= 0.01,
            "node2 sees {peer}'s clock {skew} s off; the offset was -0.2 s"
        );
    }
    // node1's clock is not shifted: it sees node2's engine within 10 ms.
    let skew = eventually(Duration::from_secs(20), || safety_peer(0, "node2")).unwrap();
    // And a link of the node status carries it too.
    let on_link = link(&node(&fleet, 1), "node1")["clock_skew_seconds"].as_f64();
    assert!(
        on_link.is_some_and(|s| (s + 0.2).abs() <= 0.01),
        "{on_link:?}"
    );
    assert!(skew.abs() <= 0.01, "node1 sees node2's engine {skew} s off");
    let (_, metrics) = get(&format!("{}/metrics", fleet.api(1))).unwrap();
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("keyfleet_clock_skew_threshold_seconds 0.05"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyfleet_clock_skew_seconds{peer=\"node1\"} -0.")
            || metrics.contains("keyfleet_clock_skew_seconds{peer=\"node1\"} -0"),
        "{metrics}"
    );
}

#[test]
fn partition_commands_refuse_what_they_cannot_do() {
    let Some(_) = engine() else {
        skip!("skipped partition_commands_refuse_what_they_cannot_do: no engine");
        return;
    };
    // No fleet at all.
    let empty = tempfile::tempdir().unwrap();
    let out = keyfleet()
        .args(["dev", "partition", "node1", "--dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running fleet"), "{err}");
    // A fleet without --partitionable, and a node it does not have.
    let fleet = DevFleet::start_with(2, &["--no-s3"], &[]);
    let (ok, out) = dev_cli(&fleet, &["partition", "node1"]);
    assert!(!ok && out.contains("without --partitionable"), "{out}");
    drop(fleet);
    let fleet = DevFleet::start_with(2, &["--no-s3", "--partitionable"], &[]);
    let (ok, out) = dev_cli(&fleet, &["partition", "node7"]);
    assert!(!ok && out.contains("`node7` is not a node"), "{out}");
    // The proxies are where the configs say: node1 dials node2 through one.
    let fleet_json: Value =
        serde_json::from_str(&std::fs::read_to_string(fleet.dir().join("fleet.json")).unwrap())
            .unwrap();
    assert_eq!(fleet_json["partitionable"], true);
    assert_eq!(fleet_json["links"].as_array().unwrap().len(), 2);
    // node1's engine replicates from node2 through one proxy, its daemon reads node2's
    // engine through the other.
    let toml = std::fs::read_to_string(fleet.dir().join("node1/keyfleet.toml")).unwrap();
    let link = fleet_json["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["from"] == "node1")
        .unwrap();
    let (replication, reads) = (
        link["proxy_port"].as_u64().unwrap(),
        link["reads_proxy_port"].as_u64().unwrap(),
    );
    assert_ne!(replication, reads);
    assert!(
        toml.contains(&format!("engine_port = {reads}"))
            && toml.contains(&format!("replication_port = {replication}")),
        "{toml}"
    );
    // One kind of partition at a time.
    let (ok, out) = dev_cli(&fleet, &["partition", "node1"]);
    assert!(ok, "{out}");
    let (ok, out) = dev_cli(&fleet, &["partition", "--replication-only", "node2"]);
    assert!(!ok && out.contains("heal first"), "{out}");
    let (ok, out) = dev_cli(&fleet, &["heal"]);
    assert!(ok, "{out}");
}
