//! Divergence: keys whose copies differ between nodes, found by `keyfleet diff` and by
//! the sampler, and matched against what every engine really holds. Redis (CI): a key
//! written on a replica made writable exists there only. KeyDB: a key deleted on one
//! side of a partition and written on the other ends on some nodes only after the heal
//! (KeyDB applies the replicated DEL without comparing stamps); the repair makes the
//! fleet agree and both checks go quiet. Both: a key changed while a node's replication
//! is cut (the daemons still reading every engine) is divergent until the heal.

use crate::fixture::*;
use crate::safety_fixture::{all_linked, cmd, cmd_in, dev, dev_cli, exists, node, safety};
use keyfleet::config::EngineKind;
use serde_json::Value;
use std::time::Duration;

/// `keyfleet diff --json` asked of node `i`: (exit code, the job).
fn diff(fleet: &DevFleet, i: usize, extra: &[&str]) -> (i32, Value) {
    let out = keyfleet()
        .args(["diff", "--json", "--api", &fleet.api(i)])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), v)
}

fn differing(job: &Value) -> Vec<String> {
    job["differing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_owned())
        .collect()
}

fn divergent_keys(fleet: &DevFleet, i: usize) -> u64 {
    safety(fleet, i)["divergence"]["divergent_keys"]
        .as_u64()
        .unwrap()
}

#[test]
fn diff_and_the_sampler_find_what_differs_and_nothing_else() {
    let Some((_, kind)) = engine() else {
        skip!("skipped diff_and_the_sampler_find_what_differs_and_nothing_else: no engine");
        return;
    };
    let fleet = DevFleet::start_with(3, &["--partitionable", "--no-s3"], &[]);
    let ports: Vec<u16> = (0..3).map(|i| fleet.engine_port(i)).collect();
    for i in 0..50 {
        cmd(ports[0], &["SET", &format!("same:{i}"), "v"]).unwrap();
    }
    cmd(ports[0], &["SET", "ttl:1", "v", "EX", "3600"]).unwrap();
    cmd(ports[0], &["SET", "back", "v1"]).unwrap();
    let replicated = eventually(Duration::from_secs(10), || {
        ports.iter().all(|p| exists(*p, "back")).then_some(())
    });
    assert!(replicated.is_some());

    // A fleet that agrees: every node's keys compared, none differs, exit 0.
    let (code, job) = diff(&fleet, 0, &[]);
    assert_eq!(code, 0, "{job:#}");
    assert_eq!(job["state"], "complete");
    assert_eq!(job["differing_total"], 0, "{job:#}");
    assert_eq!(
        job["compared"],
        3 * 52,
        "each node's 52 keys, canaries left out: {job:#}"
    );
    let (code, job) = diff(&fleet, 1, &["--pattern", "same:1*", "--rate", "5"]);
    assert_eq!(
        (code, job["compared"].clone()),
        (0, Value::from(33)),
        "{job:#}"
    );

    // Now make copies differ, as each engine allows.
    let odd = match kind {
        EngineKind::Redis => {
            // A replica made writable by hand takes a write its primary never sees.
            cmd(ports[2], &["CONFIG", "SET", "replica-read-only", "no"]).unwrap();
            cmd(ports[2], &["SET", "only-on-node3", "x"]).unwrap();
            vec!["only-on-node3".to_owned()]
        }
        EngineKind::Keydb => {
            dev(&fleet, &["partition", "node1"]);
            std::thread::sleep(Duration::from_secs(2));
            cmd(ports[0], &["DEL", "back"]).unwrap();
            cmd(ports[1], &["SET", "back", "v2"]).unwrap();
            dev(&fleet, &["heal"]);
            all_linked(&fleet);
            std::thread::sleep(Duration::from_secs(2));
            // What the engines really hold decides what must be reported.
            let holders: Vec<bool> = ports.iter().map(|p| exists(*p, "back")).collect();
            eprintln!("after the heal, `back` exists on node1..3: {holders:?}");
            if holders.iter().all(|h| *h == holders[0]) {
                vec![]
            } else {
                vec!["back".to_owned()]
            }
        }
    };
    let (code, job) = diff(&fleet, 0, &[]);
    assert_eq!(differing(&job), odd, "{job:#}");
    assert_eq!(code, if odd.is_empty() { 0 } else { 1 }, "{job:#}");
    if let Some(d) = job["differing"].as_array().unwrap().first() {
        let copies = d["copies"].as_array().unwrap();
        assert_eq!(copies.len(), 3);
        let present = copies.iter().filter(|c| c["exists"] == true).count();
        assert!((1..3).contains(&present), "{d:#}");
    }
    // The sampler, on every node, finds it too within its re-check window.
    if !odd.is_empty() {
        let found = eventually(Duration::from_secs(40), || {
            (0..3).any(|i| divergent_keys(&fleet, i) > 0).then_some(())
        });
        assert!(
            found.is_some(),
            "{:#}",
            get(&format!("{}/api/v1/safety", fleet.api(0))).unwrap().1
        );
        let (_, metrics) = get(&format!("{}/metrics", fleet.api(2))).unwrap();
        assert!(
            metrics
                .as_str()
                .unwrap()
                .contains("keyfleet_divergent_keys "),
            "{metrics}"
        );
    }

    // Made to agree again (deleted everywhere), both go quiet.
    match kind {
        EngineKind::Redis => {
            cmd(ports[2], &["DEL", "only-on-node3"]).unwrap();
        }
        EngineKind::Keydb => {
            for p in &ports {
                cmd(*p, &["DEL", "back"]).unwrap();
            }
        }
    }
    let (code, job) = diff(&fleet, 2, &[]);
    assert_eq!(
        (code, job["differing_total"].clone()),
        (0, 0.into()),
        "{job:#}"
    );
    let quiet = eventually(Duration::from_secs(40), || {
        (0..3).all(|i| divergent_keys(&fleet, i) == 0).then_some(())
    });
    assert!(quiet.is_some(), "the sampler still reports divergent keys");
}

#[test]
fn a_diff_request_that_makes_no_sense_is_refused() {
    let Some(_) = engine() else {
        skip!("skipped a_diff_request_that_makes_no_sense_is_refused: no engine");
        return;
    };
    let fleet = DevFleet::start_with(2, &["--no-s3"], &[]);
    let url = format!("{}/api/v1/safety/diff", fleet.api(0));
    let (status, v) = get(&url).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("diff_not_found")),
        "{v}"
    );
    for body in [
        "{\"rate\": 0}",
        "{\"pattern\": \"\"}",
        "{\"speed\": 3}",
        "[1]",
    ] {
        let (status, v) = request_with_body("POST", &url, None, body).unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("diff_request_invalid")),
            "{body}: {v}"
        );
    }
}

#[test]
fn a_key_changed_while_replication_is_cut_is_divergent_until_the_heal() {
    let Some(_) = engine() else {
        skip!(
            "skipped a_key_changed_while_replication_is_cut_is_divergent_until_the_heal: no engine"
        );
        return;
    };
    let fleet = DevFleet::start_with(3, &["--partitionable", "--no-s3"], &[]);
    let ports: Vec<u16> = (0..3).map(|i| fleet.engine_port(i)).collect();
    cmd(ports[0], &["SET", "moved", "v1"]).unwrap();
    let replicated = eventually(Duration::from_secs(10), || {
        ports.iter().all(|p| exists(*p, "moved")).then_some(())
    });
    assert!(replicated.is_some());

    // node2's replication is cut, the daemons still read every engine: a key changed on
    // node1 meanwhile is seen to differ on node2 (not node3), past the re-check window;
    // so is one written in another database (the sampler goes through all 16).
    let (ok, out) = dev_cli(&fleet, &["partition", "--replication-only", "node2"]);
    assert!(ok && out.contains("(replication only)"), "{out}");
    cmd(ports[0], &["SET", "moved", "v2"]).unwrap();
    cmd_in(ports[0], 9, &["SET", "new-in-db9", "v"]).unwrap();
    let seen = eventually(Duration::from_secs(60), || {
        let report = safety(&fleet, 0);
        let examples = report["divergence"]["examples"].as_array()?;
        let example = examples.iter().find(|d| d["key"] == "moved")?.clone();
        examples
            .iter()
            .find(|d| d["key"] == "new-in-db9" && d["db"] == 9)?;
        Some((report["divergence"]["divergent_keys"].as_u64()?, example))
    });
    let Some((count, example)) = seen else {
        panic!(
            "`moved` and db 9's `new-in-db9` never both reported divergent: {:#}",
            safety(&fleet, 0)["divergence"]
        );
    };
    assert_eq!(count, 2, "only `moved` and `new-in-db9` differ");
    let digest = |node: &str| -> Value {
        example["copies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == node)
            .unwrap_or_else(|| panic!("no copy of {node}: {example:#}"))["digest"]
            .clone()
    };
    assert_ne!(digest("node1"), digest("node2"), "{example:#}");
    assert_eq!(digest("node1"), digest("node3"), "{example:#}");
    assert_eq!(
        String::from_utf8(redis_get(ports[1], "moved")).unwrap(),
        "v1",
        "node2 still holds the old value"
    );
    // The links say why: node2's link to node1 is down in node1's view.
    let down = node(&fleet, 0)["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["peer"] == "node2" && l["status"] == "down");
    assert!(down, "{:#}", node(&fleet, 0)["links"]);

    // Healed, node2 catches up and the sampler goes quiet.
    dev(&fleet, &["heal"]);
    all_linked(&fleet);
    let caught_up = eventually(Duration::from_secs(20), || {
        (redis_get(ports[1], "moved") == b"v2").then_some(())
    });
    assert!(caught_up.is_some(), "node2 never received the write");
    let quiet = eventually(Duration::from_secs(40), || {
        (0..3).all(|i| divergent_keys(&fleet, i) == 0).then_some(())
    });
    assert!(
        quiet.is_some(),
        "still divergent after the heal: {:#}",
        safety(&fleet, 0)["divergence"]
    );
}

fn redis_get(port: u16, key: &str) -> Vec<u8> {
    match cmd(port, &["GET", key]).unwrap() {
        redis::Value::BulkString(b) => b,
        other => panic!("GET {key}: {other:?}"),
    }
}
