//! The ACL rules of the daemon's user (`daemon.acl`) and of the safety reader
//! (`safety.acl`) against a real engine: exactly enough for what they send.

use super::*;

/// The daemon's client, as a user with exactly `daemon.acl`'s rules, reads everything it
/// reads in production, is refused what it does not need (CONFIG GET would show
/// `masterauth` in clear), and leaves no denial in the engine's ACL LOG: it sends
/// nothing it is not allowed. KeyDB when KEYFLEET_KEYDB_SERVER is set, else redis-server.
#[tokio::test]
async fn the_daemon_acl_rules_are_exactly_enough() {
    let binary = match crate::dev::find_engine() {
        Some((path, _)) => path,
        None => match redis_server() {
            Some(path) => path,
            None => return,
        },
    };
    let server = start(&binary, free_port(), &[]).await;
    let admin = redis::Client::open(format!("redis://127.0.0.1:{}", server.port)).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let rules = daemon_acl_rules();
    assert!(!rules.is_empty());
    let mut setuser = vec!["SETUSER", "keyfleet", "reset", "on", ">daemon-pw"];
    setuser.extend(&rules);
    let _: () = acl(&mut conn, &setuser).await;
    let _: () = acl(&mut conn, &["LOG", "RESET"]).await;

    let engine = Engine::new(EngineOptions {
        user: Some("keyfleet".into()),
        ..options(server.port, Some("daemon-pw"))
    });
    let info = engine.info().await.unwrap();
    assert!(info.get("redis_version").is_some());
    assert!(info.get("connected_clients").is_some());
    let status = NodeStatus::from_info(
        "node1",
        crate::config::EngineKind::Redis,
        &info,
        &[],
        std::time::SystemTime::now(),
    );
    assert!(status.up && status.keys.is_some());
    // The replication-safety checks: TIME, the canary's SET and PUBLISH, MGET of the
    // peers' canaries, and a subscription to the canary channel.
    let micros = engine.time_micros().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!((micros - now).abs() < 5_000_000, "TIME {micros} vs {now}");
    let mut sub = engine.subscribe("keyfleet:canary").await.unwrap();
    let write = CanaryWrite {
        key: "keyfleet:canary:node1",
        value: "1 2",
        channel: "keyfleet:canary",
        announcement: "node1 1 2",
    };
    let round = engine
        .canary_round(
            Some(write),
            &["keyfleet:canary:node1", "keyfleet:canary:node2"],
            false,
        )
        .await
        .unwrap();
    assert!(matches!(round.written, Some(Ok(()))), "{round:?}");
    assert_eq!(round.read.unwrap(), vec![Some(b"1 2".to_vec()), None]);
    let got = tokio::time::timeout(Duration::from_secs(2), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"node1 1 2");
    // Without a write, the read alone.
    let round = engine
        .canary_round(None, &["keyfleet:canary:node1"], false)
        .await
        .unwrap();
    assert!(round.written.is_none());
    assert_eq!(round.read.unwrap(), vec![Some(b"1 2".to_vec())]);
    // A refused write (a key of another prefix): the read still answers. Pipelined, the
    // announcement went out anyway; cautious, it does not.
    for (cautious, announced) in [(false, true), (true, false)] {
        let bad = CanaryWrite {
            key: "user:canary",
            announcement: if cautious { "cautious" } else { "pipelined" },
            ..write
        };
        let round = engine
            .canary_round(Some(bad), &["keyfleet:canary:node1"], cautious)
            .await
            .unwrap();
        assert_eq!(
            round.written.unwrap().unwrap_err().code(),
            "engine_no_permission",
            "the daemon writes keyfleet: keys only"
        );
        assert_eq!(round.read.unwrap(), vec![Some(b"1 2".to_vec())]);
        let heard = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert_eq!(heard.is_ok(), announced, "cautious {cautious}: {heard:?}");
    }
    // Cautious and allowed: written, then announced.
    let round = engine
        .canary_round(Some(write), &["keyfleet:canary:node1"], true)
        .await
        .unwrap();
    assert!(matches!(round.written, Some(Ok(()))), "{round:?}");
    let got = tokio::time::timeout(Duration::from_secs(2), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"node1 1 2");

    let denied = engine.run("CONFIG", &["GET", "masterauth"]).await;
    assert_eq!(
        denied.unwrap_err().code(),
        "engine_no_permission",
        "CONFIG GET reads masterauth in clear: the daemon must not have it"
    );
    // A user's keys are neither written nor read.
    for (command, args) in [("SET", ["user:1", "x"]), ("MGET", ["user:2", "user:3"])] {
        let denied = engine.run(command, &args).await;
        assert_eq!(
            denied.unwrap_err().code(),
            "engine_no_permission",
            "{command} of a user's key must be refused"
        );
    }
    let log: Vec<redis::Value> = acl(&mut conn, &["LOG"]).await;
    // Exactly the refusals this test provoked (the canary of another prefix, twice over,
    // which the log counts as one entry; CONFIG; SET and MGET of users' keys): the
    // client's own handshake, INFO and the safety commands were all allowed.
    assert_eq!(log.len(), 4, "ACL LOG: {log:?}");
}

/// The safety checks' reader, as a user with exactly `safety.acl`'s rules, hears of
/// deletes on the keyevent channels, finds which deleted keys exist again in any db and
/// deletes them; the daemon's own user may do neither, nor read a key.
#[tokio::test]
async fn the_safety_reader_rules_are_exactly_enough() {
    use crate::safety::deletes::{Tracked, exists};
    use crate::safety::repair::delete;
    let binary = match crate::dev::find_engine() {
        Some((path, _)) => path,
        None => match redis_server() {
            Some(path) => path,
            None => return,
        },
    };
    let server = start(&binary, free_port(), &["--notify-keyspace-events", "Egx"]).await;
    let admin = redis::Client::open(format!("redis://127.0.0.1:{}", server.port)).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let mut setuser = vec!["SETUSER", "reader", "reset", "on", ">reader-pw"];
    setuser.extend(crate::engine::safety_acl_rules());
    let _: () = acl(&mut conn, &setuser).await;
    let mut daemon = vec!["SETUSER", "keyfleet", "reset", "on", ">daemon-pw"];
    daemon.extend(daemon_acl_rules());
    let _: () = acl(&mut conn, &daemon).await;
    let _: () = acl(&mut conn, &["LOG", "RESET"]).await;
    let daemon = Engine::new(EngineOptions {
        user: Some("keyfleet".into()),
        ..options(server.port, Some("daemon-pw"))
    });
    let reader = Engine::new(EngineOptions {
        user: Some("reader".into()),
        ..options(server.port, Some("reader-pw"))
    });
    let mut events = reader
        .psubscribe(&["__keyevent@*__:del", "__keyevent@*__:expired"])
        .await
        .unwrap();
    // The daemon's user hears no keyevent (and so cannot publish a forged one).
    let refused = daemon.psubscribe(&["__keyevent@*__:del"]).await;
    assert_eq!(
        refused.err().map(|e| e.code()),
        Some("engine_no_permission")
    );

    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("b")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg("b")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (channel, key) = tokio::time::timeout(Duration::from_secs(2), events.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (channel.as_slice(), key.as_slice()),
        (&b"__keyevent@3__:del"[..], &b"b"[..])
    );
    let _: () = redis::cmd("SET")
        .arg("b")
        .arg("2")
        .query_async(&mut conn)
        .await
        .unwrap();

    let reader = Engine::new(EngineOptions {
        user: Some("reader".into()),
        ..options(server.port, Some("reader-pw"))
    });
    let t = |db: u32, key: &str| Tracked {
        db,
        key: key.into(),
        event: "del".into(),
        at_unix: 0.0,
        links_down: vec![],
    };
    let batch = [t(0, "a"), t(3, "b"), t(0, "b"), t(3, "zz")];
    assert_eq!(
        exists(&reader, &batch).await.unwrap(),
        [true, true, false, false]
    );
    let deleted = delete(
        &reader,
        &[(3, "b".into()), (0, "a".into()), (0, "nope".into())],
    )
    .await
    .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(exists(&reader, &batch).await.unwrap(), [false; 4]);
    // The reader is left in db 0, and may not write a value.
    let denied = reader.run("SET", &["a", "x"]).await;
    assert_eq!(denied.unwrap_err().code(), "engine_no_permission");
    // The daemon's user may not read a user's key.
    assert_eq!(
        exists(&daemon, &batch[..1]).await.unwrap_err().code(),
        "engine_no_permission"
    );
    // Exactly the refusals provoked here: the daemon's PSUBSCRIBE, the reader's SET, the
    // daemon's SELECT and EXISTS; the reader's own commands were all allowed.
    let log: Vec<redis::Value> = acl(&mut conn, &["LOG"]).await;
    assert_eq!(log.len(), 4, "ACL LOG: {log:?}");
}
