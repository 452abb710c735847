//! The client against real `redis-server` processes on ports picked at run time; skipped
//! with one line when `redis-server` is not on PATH.

use super::*;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const PASSWORD: &str = "pw-that-must-never-leak";

/// A `redis-server` that is killed when the test ends, however it ends.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Stops (SIGSTOP) or resumes (SIGCONT) the engine: a hung engine, on demand.
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child process, which is still running (we hold it).
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file());
    if found.is_none() {
        {
            use std::io::Write as _;
            // Past libtest's capture, so the skip shows in every run.
            let _ = writeln!(std::io::stderr(), "skipped: redis-server is not on PATH");
        }
    }
    found
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn start(binary: &PathBuf, port: u16, extra: &[&str]) -> Server {
    let port_arg = port.to_string();
    let mut args = vec![
        "--port",
        &port_arg,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ];
    args.extend_from_slice(extra);
    let child = Command::new(binary)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers_ping(port) {
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "redis-server exited (port {port} taken?)"
        );
        assert!(
            Instant::now() < deadline,
            "redis-server did not answer on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// A reply, not just an accepted connection: a loopback connect to a port from the
/// ephemeral range can connect to itself before the server has bound it.
fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"))
}

fn options(port: u16, password: Option<&str>) -> EngineOptions {
    EngineOptions {
        target: Target::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        user: None,
        password: password.map(Secret::new),
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(2),
    }
}

#[test]
fn secrets_are_redacted() {
    let opts = options(1, Some(PASSWORD));
    let engine = Engine::new(opts.clone());
    for text in [format!("{opts:?}"), format!("{engine:?}")] {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
    assert_eq!(opts.password.unwrap().expose(), PASSWORD);
}

#[test]
fn codes_are_distinct() {
    let target = || "t".to_owned();
    let errors = [
        EngineError::Unreachable {
            target: target(),
            detail: String::new(),
        },
        EngineError::Timeout {
            target: target(),
            command: "PING",
            after: Duration::ZERO,
        },
        EngineError::AuthFailed {
            target: target(),
            user: "u".into(),
        },
        EngineError::NoPermission {
            user: "u".into(),
            command: "INFO",
            detail: String::new(),
        },
        EngineError::ConnectionLost {
            target: target(),
            command: "INFO",
            detail: String::new(),
        },
        EngineError::Command {
            command: "INFO",
            detail: String::new(),
        },
        EngineError::BadInfo(InfoError::Empty),
    ];
    let mut codes: Vec<_> = errors.iter().map(EngineError::code).collect();
    assert!(codes.iter().all(|c| c.starts_with("engine_")));
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
}

#[tokio::test]
async fn unused_port_is_unreachable_within_the_connect_timeout() {
    let engine = Engine::new(options(free_port(), None));
    let started = Instant::now();
    let err = engine.info().await.unwrap_err();
    assert_eq!(err.code(), "engine_unreachable", "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        engine.ping().await.unwrap_err().code(),
        "engine_unreachable"
    );
}

#[tokio::test]
async fn info_from_a_real_redis() {
    let Some(binary) = redis_server() else { return };
    let server = start(&binary, free_port(), &[]).await;
    let engine = Engine::new(options(server.port, None));
    engine.ping().await.unwrap();
    let info = engine.info().await.unwrap();
    assert_eq!(info.get("role"), Some("master"));
    assert_eq!(info.get_u64("tcp_port"), Some(u64::from(server.port)));
    assert!(
        info.cmdstats().any(|c| c.command == "ping"),
        "INFO everything includes commandstats"
    );
    let status = NodeStatus::from_info(
        "n",
        crate::config::EngineKind::Keydb,
        &info,
        &[],
        std::time::SystemTime::now(),
    );
    assert_eq!(
        (status.engine, status.role.as_deref()),
        ("redis", Some("master"))
    );
}

#[tokio::test]
async fn reconnects_after_the_engine_restarts() {
    let Some(binary) = redis_server() else { return };
    let port = free_port();
    let server = start(&binary, port, &[]).await;
    let engine = Engine::new(options(port, None));
    engine.ping().await.unwrap();
    drop(server);
    let err = engine.info().await.unwrap_err();
    assert!(
        matches!(err.code(), "engine_connection_lost" | "engine_unreachable"),
        "{err}"
    );
    let _server = start(&binary, port, &[]).await;
    engine.info().await.unwrap();
}

/// A kept connection the engine closed while it was idle (CLIENT KILL here; a restart
/// or a cut network link alike) is replaced before the next command, for one command
/// and for a pipeline: the caller sees no failure.
#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_not_failed() {
    let Some(binary) = redis_server() else { return };
    let server = start(&binary, free_port(), &[]).await;
    let admin = redis::Client::open(format!("redis://127.0.0.1:{}", server.port)).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let engine = Engine::new(options(server.port, None));
    for round in 0..2 {
        engine.ping().await.unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1, "round {round}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if round == 0 {
            engine.ping().await.unwrap();
        } else {
            let replies = engine
                .pipeline("PING", &[vec!["PING"], vec!["ECHO", "x"]])
                .await
                .unwrap();
            assert_eq!(replies.len(), 2);
        }
    }
}

#[tokio::test]
async fn wrong_or_missing_password_is_auth_failed_and_never_shown() {
    let Some(binary) = redis_server() else { return };
    let server = start(&binary, free_port(), &["--requirepass", PASSWORD]).await;

    let wrong = Engine::new(options(server.port, Some("not-the-password")));
    let err = wrong.info().await.unwrap_err();
    assert_eq!(err.code(), "engine_auth_failed", "{err}");
    assert!(!format!("{err} {err:?}").contains("not-the-password"));

    let missing = Engine::new(options(server.port, None));
    assert_eq!(
        missing.info().await.unwrap_err().code(),
        "engine_auth_failed"
    );

    let right = Engine::new(options(server.port, Some(PASSWORD)));
    right.info().await.unwrap();
}

/// `ACL args...` as the engine's admin (the tests' engines have no password).
async fn acl<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    redis::cmd("ACL").arg(args).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn acl_user_without_info_is_no_permission() {
    let Some(binary) = redis_server() else { return };
    let server = start(&binary, free_port(), &[]).await;
    let admin = redis::Client::open(format!("redis://127.0.0.1:{}", server.port)).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = acl(
        &mut conn,
        &["SETUSER", "watcher", "on", ">watch-pw", "+ping"],
    )
    .await;
    let engine = Engine::new(EngineOptions {
        user: Some("watcher".into()),
        ..options(server.port, Some("watch-pw"))
    });
    engine.ping().await.unwrap();
    let err = engine.info().await.unwrap_err();
    assert_eq!(err.code(), "engine_no_permission", "{err}");
}

#[tokio::test]
async fn unix_socket() {
    let Some(binary) = redis_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("engine.sock");
    let port = free_port();
    let _server = start(&binary, port, &["--unixsocket", socket.to_str().unwrap()]).await;
    let engine = Engine::new(EngineOptions {
        target: Target::Unix(socket.clone()),
        ..options(port, None)
    });
    assert_eq!(engine.info().await.unwrap().get("role"), Some("master"));
    assert_eq!(
        engine.target().to_string(),
        format!("unix:{}", socket.display())
    );
}

#[tokio::test]
async fn a_hung_engine_is_a_timeout_and_the_client_recovers() {
    let Some(binary) = redis_server() else { return };
    let server = start(&binary, free_port(), &[]).await;
    let engine = Engine::new(EngineOptions {
        command_timeout: Duration::from_millis(300),
        ..options(server.port, None)
    });
    engine.ping().await.unwrap();
    server.signal(libc::SIGSTOP);
    let started = Instant::now();
    let err = engine.info().await.unwrap_err();
    server.signal(libc::SIGCONT);
    assert_eq!(err.code(), "engine_timeout", "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    engine.info().await.unwrap();
}

#[path = "sharing_tests.rs"]
mod sharing;

#[path = "acl_tests.rs"]
mod acl;

#[test]
fn a_value_digest_ignores_the_mvcc_stamp_and_the_crc() {
    let a = b"\x00\x03abc\xfa\x0bmvcc-tstamp\x0512345\x09\x00CRCCRCCR";
    let b = b"\x00\x03abc\xfa\x0bmvcc-tstamp\x0567890\x09\x00crccrccr";
    let plain = b"\x00\x03abc\x09\x00CRCCRCCR";
    assert_eq!(super::value_digest(a), super::value_digest(b));
    assert_eq!(super::value_digest(a), super::value_digest(plain));
    assert_ne!(
        super::value_digest(b"\x00\x03abd\x09\x00CRCCRCCR"),
        super::value_digest(a)
    );
    assert_eq!(super::value_digest(b"short"), super::value_digest(b""));
}
