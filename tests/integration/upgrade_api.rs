//! The upgrade API's refusals, the fleet lease as peers see it, and the pre-switch check
//! NixOS runs (`keyfleet upgrade check-switch`), against a real dev fleet.

use crate::fixture::*;
use std::time::Duration;

#[test]
fn the_upgrade_api_names_what_is_wrong_with_a_request() {
    let Some(_) = engine() else {
        skip!("skipped the_upgrade_api_names_what_is_wrong_with_a_request: no engine");
        return;
    };
    let fleet = DevFleet::start_with(2, &["--no-s3"], &[]);
    let api = fleet.api(0);
    let post = |path: &str, body: &str| {
        request_with_body("POST", &format!("{api}{path}"), None, body).unwrap()
    };
    let code_of = |v: &serde_json::Value| v["error"]["code"].as_str().unwrap_or("").to_owned();
    for (path, body, status, code) in [
        ("/api/v1/upgrades/plan", "{", 400, "upgrade_plan_invalid"),
        (
            "/api/v1/upgrades/plan",
            "{\"current\": 1}",
            400,
            "upgrade_plan_invalid",
        ),
        (
            "/api/v1/upgrades/attempts/nope/events",
            "{\"seq\": 1, \"event\": \"switched\", \"at_unix\": 1}",
            404,
            "upgrade_attempt_not_found",
        ),
        (
            "/api/v1/upgrades/attempts/a%20b/events",
            "{}",
            400,
            "upgrade_attempt_id_invalid",
        ),
        (
            "/api/v1/upgrades/attempts/x/events",
            "{\"seq\": 1, \"event\": \"exploded\"}",
            400,
            "upgrade_event_invalid",
        ),
        (
            "/api/v1/upgrades/lease",
            "{\"holder\": 3}",
            400,
            "upgrade_lease_invalid",
        ),
        (
            "/api/v1/upgrades/rel-x/approve",
            "{\"now\": \"yes\"}",
            400,
            "upgrade_approve_invalid",
        ),
        (
            "/api/v1/upgrades/rel-x/approve",
            "",
            404,
            "upgrade_not_pending",
        ),
    ] {
        let (got, v) = post(path, body);
        assert_eq!(
            (got, code_of(&v).as_str()),
            (status, code),
            "POST {path} {body}: {v}"
        );
    }
    // Once the agent has said what runs, confirming it is possible.
    let confirmed = eventually(Duration::from_secs(10), || {
        let (got, v) = post("/api/v1/upgrades/confirm", "");
        (got == 200).then_some(v)
    });
    assert_eq!(confirmed.unwrap()["confirmed"], "initial");
    let (got, v) = get(&format!("{api}/api/v1/upgrades/attempts/nope/gate")).unwrap();
    assert_eq!(
        (got, code_of(&v).as_str()),
        (404, "upgrade_attempt_not_found")
    );
    // node2 holds the lease: node1 refuses it to anyone else, and says who has it.
    let lease = |holder: &str| {
        post(
            "/api/v1/upgrades/lease",
            &format!("{{\"holder\": \"{holder}\", \"release\": \"r1\", \"ttl_seconds\": 60}}"),
        )
    };
    assert_eq!(lease("node2").0, 200);
    let (got, v) = lease("node9");
    assert_eq!((got, code_of(&v).as_str()), (409, "lease_held"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node2 holds"),
        "{v}"
    );
    // While it is held, a hand switch is refused, with the reason.
    let (got, v) = get(&format!("{api}/api/v1/upgrades/preflight")).unwrap();
    assert_eq!((got, v["allowed"].as_bool()), (409, Some(false)), "{v}");
    let out = keyfleet()
        .args([
            "upgrade",
            "check-switch",
            "/nix/store/x",
            "switch",
            "--api",
            &api,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node2 holds the upgrade lease") && err.contains("NIXOS_NO_CHECK=1"),
        "{err}"
    );
    let (got, _) = post("/api/v1/upgrades/lease/release", "{\"holder\": \"node2\"}");
    assert_eq!(got, 200);
    let allowed = eventually(Duration::from_secs(10), || {
        let (got, _) = get(&format!("{api}/api/v1/upgrades/preflight")).unwrap();
        (got == 200).then_some(())
    });
    assert!(
        allowed.is_some(),
        "{:#}",
        get(&format!("{api}/api/v1/upgrades/preflight")).unwrap().1
    );
    let out = keyfleet()
        .args([
            "upgrade",
            "check-switch",
            "/nix/store/x",
            "switch",
            "--api",
            &api,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // dry-activate and the like are never refused.
    let out = keyfleet()
        .args([
            "upgrade",
            "check-switch",
            "/nix/store/x",
            "dry-activate",
            "--api",
            "http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
}
