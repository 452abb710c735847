//! A 3-node `keyfleet dev` fleet: readiness, replication, a killed engine, a killed or
//! frozen peer daemon, `keyfleet status`, busy ports and a clean stop.

use crate::fixture::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn link<'a>(node: &'a Value, peer: &str) -> Option<&'a Value> {
    node["links"].as_array()?.iter().find(|l| l["peer"] == peer)
}

fn status_cmd(api: &str, json: bool) -> std::process::Output {
    let mut cmd = keyfleet();
    cmd.args(["status", "--api", api])
        .env_remove("KEYFLEET_TOKEN_FILE");
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

#[test]
fn three_node_fleet_lifecycle() {
    let Some((engine, kind)) = engine() else {
        skip!(
            "skipped three_node_fleet_lifecycle: no keydb-server or redis-server on PATH and KEYFLEET_KEYDB_SERVER unset"
        );
        return;
    };
    eprintln!("dev fleet on {} ({})", engine.display(), kind.as_str());
    let mut fleet = DevFleet::start(3);
    assert_eq!(fleet.nodes.len(), 3);

    // Healthy: every node's fleet view agrees, and `status` exits 0 with a table.
    for i in 0..3 {
        let (code, view) = get(&format!("{}/api/v1/fleet", fleet.api(i))).unwrap();
        assert_eq!(code, 200);
        assert_eq!(view["healthy"], true, "node{} sees {view:#}", i + 1);
        assert_eq!(view["nodes"].as_array().unwrap().len(), 3);
    }
    let out = status_cmd(&fleet.api(0), false);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    for n in ["node1", "node2", "node3"] {
        assert!(table.contains(n), "{table}");
    }
    assert!(table.contains("fleet: healthy"), "{table}");
    let json: Value = serde_json::from_slice(&status_cmd(&fleet.api(0), true).stdout).unwrap();
    assert_eq!(json["healthy"], true);

    // A write on node1 is read on node3 (multi-master with KeyDB; primary to replica
    // with Redis).
    let c1 = redis::Client::open(format!("redis://127.0.0.1:{}/", fleet.engine_port(0))).unwrap();
    let c3 = redis::Client::open(format!("redis://127.0.0.1:{}/", fleet.engine_port(2))).unwrap();
    let mut w = c1.get_connection().unwrap();
    redis::cmd("SET")
        .arg("kf:test")
        .arg("from-node1")
        .exec(&mut w)
        .unwrap();
    let mut r = c3.get_connection().unwrap();
    let seen = eventually(Duration::from_secs(5), || {
        let v: Option<String> = redis::cmd("GET").arg("kf:test").query(&mut r).ok()?;
        v.filter(|v| v == "from-node1")
    });
    assert!(seen.is_some(), "node3 never saw node1's write");
    if kind == keyfleet::config::EngineKind::Keydb {
        // And the other way round: node3 accepts writes too.
        redis::cmd("SET")
            .arg("kf:back")
            .arg("from-node3")
            .exec(&mut r)
            .unwrap();
        let back = eventually(Duration::from_secs(5), || {
            let v: Option<String> = redis::cmd("GET").arg("kf:back").query(&mut w).ok()?;
            v.filter(|v| v == "from-node3")
        });
        assert!(back.is_some(), "node1 never saw node3's write");
    } else {
        skip!(
            "skipped the write-on-node3 check: Redis replicas are read-only; set KEYFLEET_KEYDB_SERVER for multi-master"
        );
    }

    // Kill node3's engine: the nodes linked to it report the link down within 2 s.
    // With KeyDB that is every other node; with Redis only the primary (node1) holds a
    // link to a replica.
    signal(fleet.pid(2, "engine"), libc::SIGKILL);
    let killed = Instant::now();
    let watchers: &[usize] = if kind == keyfleet::config::EngineKind::Keydb {
        &[0, 1]
    } else {
        &[0]
    };
    for &i in watchers {
        let api = fleet.api(i);
        let down = eventually(
            Duration::from_secs(2).saturating_sub(killed.elapsed()),
            || {
                let (_, node) = get(&format!("{api}/api/v1/node"))?;
                (link(&node, "node3")?["status"] == "down").then_some(node)
            },
        );
        assert!(
            down.is_some(),
            "node{} did not report node3's link down within 2 s: {}",
            i + 1,
            fleet.logs()
        );
        assert_node_matches_openapi(&api, down.as_ref().unwrap());
        let (code, ready) = get(&format!("{api}/readyz")).unwrap();
        assert_eq!(code, 503, "{ready}");
        assert_eq!(ready["error"]["code"], "not_ready");
        assert!(
            ready["reasons"].to_string().contains("node3"),
            "the reason names node3: {ready}"
        );
    }
    let (_, view) = get(&format!("{}/api/v1/fleet", fleet.api(0))).unwrap();
    assert_eq!(view["healthy"], false);
    let node3 = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node3")
        .unwrap();
    assert_eq!(node3["up"], false, "node3's engine is dead: {node3}");
    let out = status_cmd(&fleet.api(0), false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "status exits 1 on an unhealthy fleet"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("UNHEALTHY"));

    // Freeze node2's daemon: node1's fleet view lists it down with peer_timeout, and
    // answers within the peer timeout (1 s in dev) plus scheduling slack.
    let daemon2 = fleet.pid(1, "daemon");
    signal(daemon2, libc::SIGSTOP);
    let asked = Instant::now();
    let (_, view) = get(&format!("{}/api/v1/fleet", fleet.api(0))).unwrap();
    let waited = asked.elapsed();
    signal(daemon2, libc::SIGCONT);
    let node2 = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node2")
        .unwrap();
    assert_eq!(node2["up"], false, "{view:#}");
    assert_eq!(node2["error"]["code"], "peer_timeout", "{node2}");
    assert!(
        waited < Duration::from_secs(3),
        "the fleet view waited {waited:?} on a frozen peer"
    );

    // Kill node2's daemon: listed down as unreachable, never dropped.
    signal(daemon2, libc::SIGKILL);
    let listed = eventually(Duration::from_secs(2), || {
        let (_, view) = get(&format!("{}/api/v1/fleet", fleet.api(0)))?;
        let n2 = view["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "node2")?
            .clone();
        (n2["error"]["code"] == "peer_unreachable").then_some(n2)
    });
    assert!(
        listed.is_some(),
        "node2's dead daemon was not listed as peer_unreachable"
    );

    // Ctrl-C (SIGTERM) stops every child: none left behind.
    let pids: Vec<u32> = (0..3)
        .flat_map(|i| [fleet.pid(i, "engine"), fleet.pid(i, "daemon")])
        .collect();
    let status = fleet.stop();
    assert!(status.success(), "dev exits 0 on SIGTERM: {status}");
    let leftovers: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(leftovers.is_empty(), "children left running: {leftovers:?}");
}

#[test]
fn a_second_dev_on_busy_ports_names_the_port() {
    if engine().is_none() {
        skip!("skipped a_second_dev_on_busy_ports_names_the_port: no engine on PATH");
        return;
    }
    let base = free_base_port(2);
    let _held = std::net::TcpListener::bind(("127.0.0.1", base + 101)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = keyfleet()
        .args([
            "dev",
            "--nodes",
            "2",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "port {} (node2 API) is already in use",
            base + 101
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("--base-port") && stderr.contains("--dir"),
        "{stderr}"
    );
}

/// `keyfleet status` with nothing but `--dir`, `KEYFLEET_DIR` or the working directory
/// (the rule every client command shares), and a second `dev` in a directory in use.
#[test]
fn clients_find_a_dev_fleet_and_its_directory_is_locked() {
    if engine().is_none() {
        skip!("skipped clients_find_a_dev_fleet_and_its_directory_is_locked: no engine on PATH");
        return;
    }
    let fleet = DevFleet::start(2);
    let dir = fleet.dir();
    let status = |cwd: &std::path::Path, args: &[&str], env: &[(&str, &std::path::Path)]| {
        let mut cmd = keyfleet();
        cmd.arg("status")
            .args(args)
            .current_dir(cwd)
            .env_remove("KEYFLEET_API")
            .env_remove("KEYFLEET_DIR")
            .env_remove("KEYFLEET_TOKEN_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    // Where `dev` was started (its ./.keyfleet-dev): no flag at all.
    let (code, out) = status(fleet.root.path(), &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("node1") && out.contains("node2"), "{out}");
    assert!(out.contains("fleet: healthy"), "{out}");
    // Anywhere else: --dir DIR, or KEYFLEET_DIR.
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, out) = status(
        elsewhere.path(),
        &["--dir", dir.to_str().unwrap(), "--json"],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["healthy"],
        true
    );
    let (code, out) = status(elsewhere.path(), &[], &[("KEYFLEET_DIR", &dir)]);
    assert_eq!(code, Some(0), "{out}");
    // A directory with no fleet says so, and `status` exits 3.
    let (code, out) = status(
        elsewhere.path(),
        &["--dir", elsewhere.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("fleet.json: not found"), "{out}");

    // A second `dev` on other ports but the same directory is refused, names the first,
    // and leaves the running fleet's files alone.
    let fleet_json = std::fs::read_to_string(dir.join("fleet.json")).unwrap();
    let node1_toml = std::fs::read_to_string(dir.join("node1/keyfleet.toml")).unwrap();
    let out = keyfleet()
        .args([
            "dev",
            "--nodes",
            "1",
            "--base-port",
            &free_base_port(1).to_string(),
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is in use by another `keyfleet dev` (process {})",
            fleet.child.id()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--dir"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("fleet.json")).unwrap(),
        fleet_json
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("node1/keyfleet.toml")).unwrap(),
        node1_toml
    );

    // node1's daemon gone: the client asks the next node fleet.json lists, which reports
    // node1 down (exit 1), rather than failing to reach the fleet (exit 3).
    signal(fleet.pid(0, "daemon"), libc::SIGKILL);
    let answered = eventually(Duration::from_secs(5), || {
        let (code, out) = status(fleet.root.path(), &[], &[]);
        (code == Some(1)).then_some(out)
    });
    let out = answered.expect("status did not fall back to node2");
    assert!(out.contains("NO (peer_unreachable)"), "{out}");
    assert!(out.contains("  node1: peer_unreachable: "), "{out}");
}
