//! One connection shared by concurrent callers, against real `redis-server` processes
//! (the helpers are `engine_tests`').

use super::*;

/// Concurrent callers take turns on one connection and each gets its own reply.
#[tokio::test]
async fn concurrent_callers_share_one_connection() {
    let Some(binary) = redis_server() else { return };
    let server = start(&binary, free_port(), &[]).await;
    let engine = Engine::new(options(server.port, None));
    let calls = (0..64).map(|i| {
        let engine = &engine;
        async move {
            if i % 2 == 0 {
                engine.info().await.map(|info| info.get_u64("tcp_port"))
            } else {
                engine.ping().await.map(|()| None)
            }
        }
    });
    let replies = futures::future::join_all(calls).await;
    for (i, reply) in replies.into_iter().enumerate() {
        let expect = (i % 2 == 0).then_some(u64::from(server.port));
        assert_eq!(reply.unwrap(), expect, "call {i}");
    }
    let admin = redis::Client::open(format!("redis://127.0.0.1:{}", server.port)).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        clients.lines().count(),
        2,
        "the engine's and the admin's: {clients}"
    );
}

/// Callers queued behind a hung engine all fail by their own deadline, not one after
/// another, and the next call after the engine resumes gets its own reply.
#[tokio::test]
async fn callers_queued_behind_a_hung_engine_all_time_out_together() {
    let Some(binary) = redis_server() else { return };
    let server = start(&binary, free_port(), &[]).await;
    let engine = Engine::new(EngineOptions {
        connect_timeout: Duration::from_millis(200),
        command_timeout: Duration::from_millis(300),
        ..options(server.port, None)
    });
    engine.ping().await.unwrap();
    server.signal(libc::SIGSTOP);
    let started = Instant::now();
    let replies = futures::future::join_all((0..8).map(|_| engine.info())).await;
    let took = started.elapsed();
    server.signal(libc::SIGCONT);
    for reply in replies {
        assert_eq!(reply.unwrap_err().code(), "engine_timeout");
    }
    // Eight turns of 300 ms would be 2.4 s; one shared deadline is 0.5 s.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let info = engine.info().await.unwrap();
    assert_eq!(info.get_u64("tcp_port"), Some(u64::from(server.port)));
}
