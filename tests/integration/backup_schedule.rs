//! Scheduled backups in a three-node fleet against s3s-fs: one backup per slot, made by
//! the first healthy node in name order; when that node's daemon dies the next one
//! takes over; retention keeps the last two; and a node that never backs up still knows
//! the fleet's newest backup (the alert's metric).

use crate::fixture::{eventually, free_port};
use crate::s3_fixture::{Node, S3Server};
use std::collections::BTreeSet;
use std::time::Duration;

const DIR: &str = "backups/sched/";

/// The complete backups in the store (those with a manifest), by id.
fn complete(s3: &S3Server) -> BTreeSet<String> {
    s3.objects(DIR)
        .into_iter()
        .filter_map(|(k, _)| {
            k.strip_prefix(DIR)?
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn one_node_backs_up_per_slot_and_the_next_takes_over_when_it_dies() {
    let Some(s3) = S3Server::start("scheduled backups") else {
        return;
    };
    let names = ["a", "b", "c"];
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let mut nodes: Vec<Node> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut extra = "\n[backups]\nfleet = \"sched\"\nschedule = \"every 10s\"\nkeep_last = 2\n"
                .to_owned();
            for (j, peer) in names.iter().enumerate().filter(|(j, _)| *j != i) {
                extra += &format!(
                    "[[peers]]\nname = \"{peer}\"\naddress = \"127.0.0.1\"\nengine_port = {}\napi_port = {}\n",
                    ports[j].0, ports[j].1
                );
            }
            Node::start_as(name, ports[i], &s3.endpoint(), "", &extra)
        })
        .collect();

    // Two slots: node a takes both, and nobody else uploads a copy.
    let two = eventually(Duration::from_secs(40), || {
        let ids = complete(&s3);
        (ids.len() >= 2).then_some(ids)
    })
    .expect("two scheduled backups within 40 s");
    assert!(two.iter().all(|id| id.ends_with("-a")), "{two:?}");
    let slots: BTreeSet<&str> = two.iter().map(|id| &id[..14]).collect();
    assert_eq!(slots.len(), two.len(), "one backup per 10 s slot: {two:?}");

    // Node c never backed up, yet it knows the fleet's newest backup and the period.
    let c_last = eventually(Duration::from_secs(25), || {
        nodes[2]
            .metric("keyfleet_backup_last_success_timestamp_seconds")
            .filter(|v| *v > 0.0)
    });
    assert!(
        c_last.is_some(),
        "node c read the newest backup from the store"
    );
    assert_eq!(
        nodes[2].metric("keyfleet_backup_schedule_period_seconds"),
        Some(10.0)
    );

    // Node a's daemon dies: node b is now the first healthy node and takes the slots.
    nodes[0].kill_daemon();
    let from_b = eventually(Duration::from_secs(30), || {
        complete(&s3).into_iter().find(|id| id.ends_with("-b"))
    });
    assert!(from_b.is_some(), "node b took over: {:?}", complete(&s3));
    assert!(
        !complete(&s3).iter().any(|id| id.ends_with("-c")),
        "node c never backs up while b is healthy: {:?}",
        complete(&s3)
    );

    // Retention (keep_last = 2) runs after each backup: never more than two complete
    // ones once it has run, and no snapshot left without its manifest.
    let kept = eventually(Duration::from_secs(15), || {
        let ids = complete(&s3);
        (ids.len() == 2).then_some(ids)
    })
    .unwrap_or_else(|| panic!("retention keeps two: {:?}", complete(&s3)));
    let snapshots: BTreeSet<String> = s3
        .objects(DIR)
        .into_iter()
        .filter_map(|(k, _)| {
            k.strip_prefix(DIR)?
                .strip_suffix(".rdb.zst")
                .map(str::to_owned)
        })
        .collect();
    assert!(snapshots.is_superset(&kept), "{snapshots:?} vs {kept:?}");
}
