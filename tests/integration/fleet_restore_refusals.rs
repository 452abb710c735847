//! In-fleet restores refused: a peer that cannot be asked stops a fleet restore and a
//! rebuild before anything changes; a Redis fleet, an unconfirmed request and a
//! malformed step are refused. On a real `keyfleet dev` fleet with s3s-fs (helpers in
//! `fleet_restore`).

use crate::backup::conn;
use crate::fixture::{get, signal};
use crate::fleet_restore::{all_hold, backup_now, cli, cmd, dbsize, filled, fleet, post};
use keyfleet::config::EngineKind;

#[test]
fn a_peer_that_cannot_be_asked_stops_fleet_restore_and_rebuild_before_any_change() {
    let Some((fleet, ports)) = filled(100) else {
        return;
    };
    let id = backup_now(&fleet);
    cmd(ports[0], &["SET", "after", "1"]).unwrap();
    signal(fleet.pid(2, "daemon"), libc::SIGKILL);

    let url = format!("{}/api/v1/backups/{id}/restore", fleet.api(0));
    let (status, v) = post(&url, r#"{"mode":"fleet","confirm":true}"#);
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "restore_peer_unreachable");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("node3"),
        "{v}"
    );
    let rebuild = format!("{}/api/v1/restores", fleet.api(1));
    let (status, v) = post(&rebuild, r#"{"mode":"rebuild","confirm":true}"#);
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "restore_peer_unreachable");

    // Nothing changed: every node writable, linked, with its data.
    for p in &ports {
        cmd(*p, &["SET", "still", "writable"]).unwrap();
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut conn(*p))
            .unwrap();
        let up = info
            .lines()
            .filter(|l| l.ends_with("link_status:up") && !l.starts_with("master_global"))
            .count();
        assert_eq!(up, 2, "{info}");
    }
    all_hold(&fleet, &ports, 106);
    let (_, history) = get(&format!("{}/api/v1/restores", fleet.api(0))).unwrap();
    assert_eq!(
        history["restores"],
        serde_json::json!([]),
        "a refused restore ran"
    );
}

#[test]
fn a_redis_fleet_and_an_unconfirmed_request_are_refused() {
    let Some(fleet) = fleet(2, EngineKind::Redis) else {
        return;
    };
    let port = fleet.engine_port(0);
    cmd(port, &["SET", "a", "1"]).unwrap();
    let id = backup_now(&fleet);
    let url = format!("{}/api/v1/backups/{id}/restore", fleet.api(0));
    let (status, v) = post(&url, r#"{"mode":"fleet"}"#);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("restore_unconfirmed"))
    );
    let (status, v) = post(&url, r#"{"mode":"fleet","confirm":true}"#);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "restore_engine_unsupported");
    let rebuild = format!("{}/api/v1/restores", fleet.api(1));
    let (status, v) = post(&rebuild, r#"{"mode":"rebuild"}"#);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("restore_unconfirmed"))
    );
    let (status, v) = post(&rebuild, r#"{"mode":"rebuild","confirm":true}"#);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "restore_engine_unsupported");
    // The peers' step route checks what it is asked.
    let steps = format!("{}/api/v1/restores/steps", fleet.api(0));
    for (body, says) in [
        (
            r#"{"session":"s1","coordinator":"node2","step":"explode"}"#,
            "unknown restore step",
        ),
        (
            r#"{"session":"s 1\n","coordinator":"node2","step":"state"}"#,
            "session and coordinator",
        ),
        (
            r#"{"session":"s1","coordinator":"node2","step":"keys","count":0}"#,
            "count is 1 to 1000",
        ),
        (r#"{"session":"s1","step":"state"}"#, "not a restore step"),
    ] {
        let (status, v) = post(&steps, body);
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "restore_step_invalid", "{body}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {v}"
        );
    }
    let (status, v) = post(
        &steps,
        r#"{"session":"s1","coordinator":"node2","step":"state"}"#,
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("restore_session_unknown")),
        "{v}"
    );
    // The CLI will not send a fleet restore without --yes.
    let (code, _, err) = cli(&fleet, 0, &["restore", &id, "--fleet"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    cmd(port, &["SET", "b", "1"]).unwrap();
    assert_eq!(dbsize(port), 2);
}
