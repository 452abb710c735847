//! What the replication-safety tests share: commands to an engine, the node and safety
//! views of a daemon, and `keyfleet dev partition|heal` on a fleet.

use crate::fixture::*;
use serde_json::Value;
use std::time::Duration;

/// One command to the engine on `port`, as a client would send it.
pub fn cmd(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    cmd_in(port, 0, args)
}

/// A command on database `db` of the engine at `port`.
pub fn cmd_in(port: u16, db: u32, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))?.get_connection()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c)
}

pub fn exists(port: u16, key: &str) -> bool {
    matches!(cmd(port, &["EXISTS", key]), Ok(redis::Value::Int(1)))
}

/// Node `i`'s `/api/v1/node`.
pub fn node(fleet: &DevFleet, i: usize) -> Value {
    get(&format!("{}/api/v1/node", fleet.api(i))).unwrap().1
}

/// Node `i`'s `/api/v1/safety`.
pub fn safety(fleet: &DevFleet, i: usize) -> Value {
    get(&format!("{}/api/v1/safety", fleet.api(i))).unwrap().1
}

/// `keyfleet dev ARGS --dir DIR`: (success, stdout and stderr).
pub fn dev_cli(fleet: &DevFleet, args: &[&str]) -> (bool, String) {
    let out = keyfleet()
        .arg("dev")
        .args(args)
        .arg("--dir")
        .arg(fleet.dir())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `keyfleet dev ARGS`, which must succeed.
pub fn dev(fleet: &DevFleet, args: &[&str]) {
    let (ok, text) = dev_cli(fleet, args);
    assert!(ok, "keyfleet dev {args:?}: {text}");
}

/// Waits until every node's link with every peer it expects is up.
pub fn all_linked(fleet: &DevFleet) {
    let ok = eventually(Duration::from_secs(30), || {
        (0..fleet.nodes.len())
            .all(|i| {
                get(&format!("{}/api/v1/node", fleet.api(i))).is_some_and(|(_, n)| {
                    n["links"]
                        .as_array()
                        .is_some_and(|l| l.iter().all(|l| l["status"] == "up"))
                })
            })
            .then_some(())
    });
    assert!(ok.is_some(), "links not all up: {}", fleet.logs());
}
