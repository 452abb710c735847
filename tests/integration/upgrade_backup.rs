//! A minor or major upgrade backs the node up first (`upgrades.backup_before`, on by
//! default), with a dev fleet's own s3s-fs as the store: the attempt names the backup,
//! and the backup is complete in the store before the switch.

use crate::fixture::*;
use crate::s3_fixture::S3Server;
use crate::upgrade_fixture::*;
use std::time::Duration;

#[test]
fn a_major_upgrade_takes_a_backup_before_it_switches() {
    // S3Server::start only checks the tools here; dev starts its own store.
    let Some(_tools) = S3Server::start("a_major_upgrade_takes_a_backup_before_it_switches") else {
        return;
    };
    let Some((path, _)) = engine() else {
        skip!("skipped a_major_upgrade_takes_a_backup_before_it_switches: no engine");
        return;
    };
    let fleet = DevFleet::start_with(2, &["--gate-timeout", "20s"], &[]);
    // The version the candidate claims is a major step up, so it needs approval first.
    stage(
        &fleet,
        &path,
        "rel-major",
        &[],
        &["--engine-version", "99.1.0"],
    );
    waiting_for(&fleet, 0, "approval");
    assert!(
        get(&format!("{}/api/v1/backups", fleet.api(0)))
            .map(|(_, v)| v["running"].is_null())
            .unwrap_or(false),
        "no backup before the approval"
    );
    let out = keyfleet()
        .args(["upgrade", "approve", "rel-major", "--now", "--dir"])
        .arg(fleet.dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The engine does not run the version the candidate claims, so its gate fails and
    // the node rolls back; the backup was taken before the switch all the same.
    let a = finished(&fleet, 0, "rel-major", Duration::from_secs(90));
    assert_eq!(a["outcome"], "rolled_back", "{a:#}");
    let id = a["backup_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the attempt names no backup: {a:#}"));
    let (code, backup) = get(&format!("{}/api/v1/backups/{id}", fleet.api(0))).unwrap();
    assert_eq!(code, 200, "{backup}");
    assert_eq!(backup["state"], "complete", "{backup}");
    assert_eq!(backup["manifest"]["node"], "node1", "{backup}");
    // Taken before the switch: its manifest's time is no later than the switch.
    let created: jiff::Timestamp = backup["manifest"]["created_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let switched = a["switched_at_unix"]
        .as_i64()
        .unwrap_or_else(|| panic!("no switch time: {a:#}"));
    assert!(
        created.as_second() <= switched,
        "the backup ({created}) is from after the switch ({switched})"
    );
}
