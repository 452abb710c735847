//! The safety reader's ACL rules (`safety.acl`) against a real engine: exactly enough
//! for what `safety::deletes`, `safety::divergence` and `safety::repair` send.

use super::*;

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
