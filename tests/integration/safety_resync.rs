//! Full syncs per link, from the engine log: a node's engine restarted without its data
//! is given a full sync by its master(s), and their daemons count it for that peer.
//! Needs log shipping on the dev fleet (an s3s-fs on PATH), which sends the engines'
//! logs to files the daemons know.

use crate::fixture::*;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn full_syncs_of(fleet: &DevFleet, i: usize, peer: &str) -> u64 {
    crate::safety_fixture::safety(fleet, i)["full_syncs_by_peer"][peer]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn full_syncs_are_counted_per_link_from_the_engine_log() {
    let Some((binary, _)) = engine() else {
        skip!("skipped full_syncs_are_counted_per_link_from_the_engine_log: no engine");
        return;
    };
    if keyfleet::dev::on_path("s3s-fs").is_none() {
        skip!(
            "skipped full_syncs_are_counted_per_link_from_the_engine_log: no s3s-fs on PATH, so the dev fleet has no engine log files"
        );
        return;
    }
    let fleet = DevFleet::start(3);
    // The fleet's first syncs settle (counted too: the log began after the daemon).
    std::thread::sleep(Duration::from_secs(3));
    let before = full_syncs_of(&fleet, 0, "node2");
    let node3_before = full_syncs_of(&fleet, 0, "node3");

    // node2's engine dies and starts again with nothing (killed, so it saved no
    // replication state, and its data removed): its masters full-sync it.
    let pid = fleet.pid(1, "engine");
    signal(pid, libc::SIGKILL);
    assert!(eventually(Duration::from_secs(10), || (!alive(pid)).then_some(())).is_some());
    for f in std::fs::read_dir(fleet.dir().join("node2/data"))
        .unwrap()
        .flatten()
    {
        let _ = std::fs::remove_file(f.path());
    }
    let conf = fleet.dir().join("node2/engine.conf");
    let _engine = Killed(
        Command::new(&binary)
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let counted = eventually(Duration::from_secs(30), || {
        (full_syncs_of(&fleet, 0, "node2") > before).then_some(())
    });
    assert!(
        counted.is_some(),
        "node1 counted no full sync for node2: {:#}\n{}",
        get(&format!("{}/api/v1/safety", fleet.api(0))).unwrap().1,
        fleet.logs()
    );
    let (_, metrics) = get(&format!("{}/metrics", fleet.api(0))).unwrap();
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("keyfleet_peer_full_syncs_total{peer=\"node2\"} "),
        "{metrics}"
    );
    // node3 was not resynced by node1.
    assert_eq!(full_syncs_of(&fleet, 0, "node3"), node3_before);
}
