//! Rollback-able upgrades against a real `keyfleet dev` fleet: its directory of
//! generations, real engine processes restarted on each switch, and one real upgrade
//! agent per node. KeyDB 6.3.3 → 6.3.4 when KEYFLEET_KEYDB_SERVER_OLD and
//! KEYFLEET_KEYDB_SERVER are set, else the engine there is (Redis in CI) upgraded to a
//! new engine config.

use crate::fixture::*;
use crate::upgrade_fixture::*;
use std::time::{Duration, Instant};

const BUSY: [&str; 4] = ["switching", "gate", "rolling_back", "rollback_gate"];

#[test]
fn a_rolling_upgrade_goes_one_node_at_a_time_while_a_client_writes() {
    let Some(e) = engines("a_rolling_upgrade_goes_one_node_at_a_time_while_a_client_writes") else {
        return;
    };
    let fleet = start(3, &e, &[]);
    let writer = Writer::start(fleet.engine_port(0), "roll");
    std::thread::sleep(Duration::from_millis(500));
    stage(&fleet, &e.candidate, "rel-roll", &e.extra_conf, &[]);
    // Every node's state, sampled until all three run the candidate.
    let mut overlaps = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let states: Vec<String> = (0..3)
            .map(|i| {
                upgrades(&fleet, i)["state"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect();
        let busy = states.iter().filter(|s| BUSY.contains(&s.as_str())).count();
        if busy > 1 {
            overlaps.push(states.clone());
        }
        let done = (0..3).all(|i| {
            history(&fleet, i)
                .iter()
                .any(|a| a["release"] == "rel-roll" && a["phase"] == "done")
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not finish: {states:?}\n{}",
            fleet.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (acked, refused) = writer.finish();
    assert!(
        overlaps.is_empty(),
        "two nodes upgrading at once: {overlaps:?}"
    );
    let attempts: Vec<_> = (0..3)
        .map(|i| finished(&fleet, i, "rel-roll", Duration::from_secs(1)))
        .collect();
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["outcome"], "succeeded", "node{}: {a:#}", i + 1);
        assert_eq!(a["class"], e.class, "{a:#}");
        assert!(a["gate"]["passed"] == true, "{a:#}");
        // The gate checked what the issue names.
        let cur = &upgrades(&fleet, i)["current"];
        assert_eq!(cur["release"], "rel-roll");
    }
    // In the fixed order, each starting only after the one before it finished.
    for w in attempts.windows(2) {
        assert!(
            w[1]["started_at_unix"].as_i64() >= w[0]["finished_at_unix"].as_i64(),
            "{:#} started before {:#} finished",
            w[1],
            w[0]
        );
    }
    if e.class == "patch" {
        for i in 0..3 {
            let n = get(&format!("{}/api/v1/node", fleet.api(i))).unwrap().1;
            assert_eq!(n["version"], "6.3.4", "node{}: {n:#}", i + 1);
        }
    }
    // Nothing the engine acknowledged was lost, on any node.
    assert!(
        acked.len() > 100,
        "the writer got too few writes in: {}",
        acked.len()
    );
    for i in 0..3 {
        let port = fleet.engine_port(i);
        let gone = eventually(Duration::from_secs(20), || {
            let m = missing(port, "roll", &acked);
            m.is_empty().then_some(())
        });
        assert!(
            gone.is_some(),
            "node{}: acknowledged writes missing: {:?} (of {}, {refused} refused)",
            i + 1,
            &missing(port, "roll", &acked)[..],
            acked.len()
        );
    }
    let (_, m) = get(&format!("{}/metrics", fleet.api(0))).unwrap();
    let m = m.as_str().unwrap();
    assert!(
        m.contains("keyfleet_upgrade_attempts_total{outcome=\"succeeded\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("keyfleet_upgrade_state{state=\"idle\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("keyfleet_upgrade_last_result{result=\"succeeded\"} 1"),
        "{m}"
    );
}

#[test]
fn a_broken_candidate_is_rolled_back_and_no_other_node_tries_it() {
    let Some(e) = engines("a_broken_candidate_is_rolled_back_and_no_other_node_tries_it") else {
        return;
    };
    let fleet = start(3, &e, &["--gate-timeout", "20s"]);
    let port = fleet.engine_port(0);
    let writer = Writer::start(port, "before");
    std::thread::sleep(Duration::from_millis(800));
    let (acked, _) = writer.finish();
    // A config the engine refuses: it exits at once.
    stage(
        &fleet,
        &e.candidate,
        "rel-bad",
        &["no-such-directive yes"],
        &[],
    );
    let a = finished(&fleet, 0, "rel-bad", Duration::from_secs(90));
    assert_eq!(a["outcome"], "rolled_back", "{a:#}");
    assert_eq!(a["gate"]["passed"], false);
    let reason = a["rollback_reason"].as_str().unwrap();
    assert!(reason.contains("engine_up"), "{reason}");
    assert_eq!(a["rollback_gate"]["passed"], true, "{a:#}");
    // The previous generation runs, with every key written before the attempt.
    let up = upgrades(&fleet, 0);
    assert_eq!(up["current"]["release"], "initial", "{up:#}");
    assert_eq!(up["rollbacks_total"], 1);
    assert!(missing(port, "before", &acked).is_empty());
    let gens = fleet.dir().join("node1/generations");
    assert_eq!(
        std::fs::read_link(gens.join("current")).unwrap().to_str(),
        Some("gen-1")
    );
    assert!(
        !gens.join("gen-2").exists(),
        "the failed generation is removed"
    );
    // The other nodes refuse the release and never switch.
    for i in 1..3 {
        let v = eventually(Duration::from_secs(15), || {
            let u = upgrades(&fleet, i);
            (u["pending"]["waiting_for"] == "denied").then_some(u)
        })
        .unwrap_or_else(|| {
            panic!(
                "node{} does not deny rel-bad: {:#}",
                i + 1,
                upgrades(&fleet, i)
            )
        });
        assert!(
            v["pending"]["reason"]
                .as_str()
                .unwrap()
                .contains("failed its gate on node1"),
            "{v:#}"
        );
        assert!(
            history(&fleet, i).is_empty(),
            "node{} tried it: {v:#}",
            i + 1
        );
    }
    let (_, m) = get(&format!("{}/metrics", fleet.api(0))).unwrap();
    let m = m.as_str().unwrap();
    assert!(m.contains("keyfleet_upgrade_rollbacks_total 1"), "{m}");
    assert!(
        m.contains("keyfleet_upgrade_last_result{result=\"rolled_back\"} 1"),
        "{m}"
    );
}

#[test]
fn outside_its_window_or_without_approval_an_upgrade_waits() {
    let Some((path, _)) = engine() else {
        skip!("skipped outside_its_window_or_without_approval_an_upgrade_waits: no engine");
        return;
    };
    // A window on a day that is not today (in UTC) is closed now.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .weekday();
    let other = today.next().next().next();
    let name = &format!("{other:?}")[..3];
    let window = format!("{name} 02:00-03:00 Asia/Kolkata");
    let fleet = DevFleet::start_with(
        3,
        // Long enough for Redis replicas' full sync after their primary restarts
        // (repl-diskless-sync-delay is 5 s).
        &["--no-s3", "--window", &window, "--gate-timeout", "20s"],
        &[],
    );
    stage(&fleet, &path, "rel-window", &["hz 20"], &[]);
    let v = waiting_for(&fleet, 0, "window");
    assert_eq!(v["window_open"], false);
    let next = &v["next_window"];
    assert_eq!(next["zone"], "Asia/Kolkata", "{v:#}");
    assert!(
        next["start_local"]
            .as_str()
            .unwrap()
            .ends_with("02:00:00+05:30"),
        "{next:#}"
    );
    assert!(
        next["start_utc"].as_str().unwrap().ends_with("20:30:00Z"),
        "{next:#}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(history(&fleet, 0).is_empty(), "it went outside its window");

    // A major version (as the candidate says it carries) needs a person's yes first,
    // even inside a window; approved --now it goes without one.
    stage(
        &fleet,
        &path,
        "rel-major",
        &[],
        &["--engine-version", "99.1.0"],
    );
    let v = waiting_for(&fleet, 0, "approval");
    assert_eq!(v["pending"]["class"], "major", "{v:#}");
    assert_eq!(v["pending_approvals"][0]["id"], "rel-major", "{v:#}");
    let out = keyfleet()
        .args(["upgrade", "approve", "nope", "--dir"])
        .arg(fleet.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("waits for approval on no node"));
    let out = keyfleet()
        .args(["upgrade", "approve", "rel-major", "--now", "--dir"])
        .arg(fleet.dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("node1: approved"), "{text}");
    // It goes now; the engine does not run the version the candidate claims, so the
    // gate fails on it and the node rolls back.
    let a = finished(&fleet, 0, "rel-major", Duration::from_secs(60));
    assert_eq!(a["decision"], "approved --now", "{a:#}");
    assert_eq!(a["outcome"], "rolled_back", "{a:#}");
    assert!(
        a["rollback_reason"].as_str().unwrap().contains("expected"),
        "{a:#}"
    );
}

#[test]
fn a_peer_that_cannot_be_asked_blocks_the_upgrade() {
    let Some(e) = engines("a_peer_that_cannot_be_asked_blocks_the_upgrade") else {
        return;
    };
    let fleet = start(3, &e, &[]);
    let daemon3 = fleet.pid(2, "daemon");
    signal(daemon3, libc::SIGSTOP);
    stage(&fleet, &e.candidate, "rel-blocked", &e.extra_conf, &[]);
    let v = eventually(Duration::from_secs(30), || {
        let u = upgrades(&fleet, 0);
        (u["pending"]["waiting_for"] == "fleet").then_some(u)
    });
    signal(daemon3, libc::SIGCONT);
    let v = v.unwrap_or_else(|| panic!("node1 did not wait: {:#}", upgrades(&fleet, 0)));
    let reason = v["pending"]["reason"].as_str().unwrap();
    assert!(reason.contains("node3 cannot be asked"), "{reason}");
    assert!(
        history(&fleet, 0).is_empty(),
        "it started without node3: {v:#}"
    );
    // Once node3 answers again, the rollout goes on.
    let a = finished(&fleet, 0, "rel-blocked", Duration::from_secs(60));
    assert_eq!(a["outcome"], "succeeded", "{a:#}");
}

#[test]
fn an_agent_killed_mid_upgrade_resumes_and_leaves_every_attempt_recorded() {
    let Some(e) = engines("an_agent_killed_mid_upgrade_resumes_and_leaves_every_attempt_recorded")
    else {
        return;
    };
    let fleet = start(3, &e, &["--gate-timeout", "20s"]);
    let agent_pid = || -> u32 {
        std::fs::read_to_string(fleet.dir().join("node1/agent.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // A good candidate: the agent dies in its gate, and the next one passes it.
    stage(&fleet, &e.candidate, "rel-kill", &e.extra_conf, &[]);
    let seen = eventually(Duration::from_secs(30), || {
        (upgrades(&fleet, 0)["state"] == "gate").then_some(())
    });
    assert!(
        seen.is_some(),
        "never in its gate: {:#}",
        upgrades(&fleet, 0)
    );
    let first = agent_pid();
    signal(first, libc::SIGKILL);
    let a = finished(&fleet, 0, "rel-kill", Duration::from_secs(60));
    assert_ne!(agent_pid(), first, "dev started the agent again");
    assert_eq!(a["outcome"], "succeeded", "{a:#}");
    let h = history(&fleet, 0);
    assert_eq!(h.len(), 1, "one attempt, recorded once: {h:#?}");

    // A broken candidate: the agent dies in its gate, and the next one rolls it back.
    let before = agent_pid();
    stage(
        &fleet,
        &e.candidate,
        "rel-kill-bad",
        &["no-such-directive yes"],
        &[],
    );
    let seen = eventually(Duration::from_secs(40), || {
        let u = upgrades(&fleet, 0);
        (u["state"] == "gate" && u["active"]["release"] == "rel-kill-bad").then_some(())
    });
    assert!(
        seen.is_some(),
        "never in its gate: {:#}",
        upgrades(&fleet, 0)
    );
    signal(before, libc::SIGKILL);
    let a = finished(&fleet, 0, "rel-kill-bad", Duration::from_secs(90));
    assert_eq!(a["outcome"], "rolled_back", "{a:#}");
    let up = upgrades(&fleet, 0);
    assert_eq!(up["current"]["release"], "rel-kill", "{up:#}");
    assert_eq!(history(&fleet, 0).len(), 2);
}
