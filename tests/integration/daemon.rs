//! One real daemon against one real engine: the API contract, bearer tokens, systemd
//! notification, metrics through promtool, and a clean exit on SIGTERM.

use crate::fixture::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::Duration;

struct Daemon {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a daemon for `engine_port` with `extra` TOML appended; `notify` is passed as
/// NOTIFY_SOCKET.
fn daemon(engine_port: u16, api_extra: &str, env: &[(&str, &str)]) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let config = format!(
        "node_name = \"solo\"\n[engine]\nkind = \"redis\"\nport = {engine_port}\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n{api_extra}"
    );
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = keyfleet();
    cmd.args(["daemon", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let url = format!("http://127.0.0.1:{api_port}");
    let up = eventually(Duration::from_secs(10), || get(&format!("{url}/healthz")));
    assert!(up.is_some(), "daemon did not answer /healthz");
    Daemon {
        child,
        url,
        _dir: dir,
    }
}

#[test]
fn node_view_metrics_and_errors() {
    let Some(engine) = Engine::start() else {
        skip!("skipped node_view_metrics_and_errors: no engine on PATH");
        return;
    };
    let d = daemon(engine.port, "", &[]);
    let (code, node) = get(&format!("{}/api/v1/node", d.url)).unwrap();
    assert_eq!(code, 200);
    assert_eq!(node["name"], "solo");
    assert_eq!(node["up"], true);
    for field in [
        "engine",
        "version",
        "role",
        "uptime_seconds",
        "connected_clients",
        "used_memory_bytes",
        "maxmemory_bytes",
        "keys",
        "ops_per_sec",
        "links",
        "checked_at",
    ] {
        assert!(node.get(field).is_some(), "node lacks `{field}`: {node}");
    }
    let (code, ready) = get(&format!("{}/readyz", d.url)).unwrap();
    assert_eq!(code, 200, "{ready}");

    let (code, body) = get(&format!("{}/metrics", d.url)).unwrap();
    assert_eq!(code, 200);
    let text = body.as_str().unwrap().to_owned();
    assert!(
        text.contains("\nredis_up 1\n")
            || text.starts_with("redis_up 1\n")
            || text.contains("redis_up{"),
        "{text}"
    );
    promtool_check(&text);

    let (code, err) = get(&format!("{}/api/v1/nope", d.url)).unwrap();
    assert_eq!(code, 404);
    assert_eq!(err["error"]["code"], "route_not_found");
    let (code, err) = request("POST", &format!("{}/api/v1/node", d.url), None).unwrap();
    assert_eq!(code, 405);
    assert_eq!(err["error"]["code"], "method_not_allowed");
    let (code, doc) = get(&format!("{}/api/v1/openapi.json", d.url)).unwrap();
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    assert_node_matches_openapi(&d.url, &node);

    // The engine dies: the node is down with an error code, /readyz says why, and the
    // metrics say redis_up 0.
    drop(engine);
    let (code, node) = get(&format!("{}/api/v1/node", d.url)).unwrap();
    assert_eq!(code, 200);
    assert_eq!(node["up"], false);
    // The first call finds the old connection broken; the next ones cannot connect.
    let code = node["error"]["code"].as_str().unwrap();
    assert!(
        code == "engine_connection_lost" || code == "engine_unreachable",
        "{node}"
    );
    assert!(
        node["error"]["message"]
            .as_str()
            .unwrap()
            .contains("engine")
    );
    assert_node_matches_openapi(&d.url, &node);
    let unreachable = eventually(Duration::from_secs(5), || {
        let (_, node) = get(&format!("{}/api/v1/node", d.url))?;
        (node["error"]["code"] == "engine_unreachable").then_some(())
    });
    assert!(
        unreachable.is_some(),
        "a dead engine is reported engine_unreachable"
    );
    let (code, ready) = get(&format!("{}/readyz", d.url)).unwrap();
    assert_eq!(code, 503);
    assert!(
        ready["error"]["message"]
            .as_str()
            .unwrap()
            .contains("engine"),
        "{ready}"
    );
    let (_, body) = get(&format!("{}/metrics", d.url)).unwrap();
    let text = body.as_str().unwrap();
    assert!(text.contains("redis_up 0"), "{text}");
    assert!(
        text.contains("keyfleet_errors_total{code=\"engine_unreachable\"}"),
        "{text}"
    );
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut p) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        skip!("skipped promtool check: promtool is not on PATH");
        return;
    };
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool lints some of redis_exporter's names (abbreviated units, `_total` on
    // gauges); keyfleet keeps them so dashboards work, and the unit tests pin them to the
    // exporter's. Any other line (a parse error, a note on a keyfleet_* name) fails.
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("redis_") && l.contains(" metric")))
        .collect();
    assert!(problems.is_empty(), "promtool check metrics:\n{report}");
}

#[test]
fn a_token_guards_everything_but_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken-value\n").unwrap();
    // No engine needed: authentication comes before any engine call.
    let d = daemon(
        free_port(),
        &format!("token_file = \"{}\"\n", token.display()),
        &[],
    );
    assert_eq!(get(&format!("{}/healthz", d.url)).unwrap().0, 200);
    for route in ["/api/v1/node", "/api/v1/fleet", "/metrics", "/readyz"] {
        let (code, body) = get(&format!("{}{route}", d.url)).unwrap();
        assert_eq!(code, 401, "{route}");
        assert_eq!(body["error"]["code"], "token_missing");
        let (code, body) = get_with(&format!("{}{route}", d.url), Some("wrong")).unwrap();
        assert_eq!(code, 401, "{route}");
        assert_eq!(body["error"]["code"], "token_invalid");
        assert!(
            !body.to_string().contains("t0ken-value"),
            "the token never appears in answers"
        );
    }
    let (code, _) = get_with(&format!("{}/api/v1/node", d.url), Some("t0ken-value")).unwrap();
    assert_eq!(code, 200);
    // The CLI sends the token from a file; without it the daemon cannot be asked (3).
    // The engine is absent, so with the token the fleet is reachable but unhealthy (1).
    let status = |token: Option<&std::path::Path>| {
        let mut cmd = keyfleet();
        cmd.args(["status", "--api", &d.url])
            .env_remove("KEYFLEET_TOKEN_FILE");
        if let Some(t) = token {
            cmd.arg("--token-file").arg(t);
        }
        cmd.output().unwrap()
    };
    let out = status(None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let out = status(Some(&token));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("solo"));
}

#[test]
fn systemd_ready_watchdog_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = daemon(
        free_port(),
        "",
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1") && seen.contains("STATUS=")) {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); so far: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    signal(d.child.id(), libc::SIGTERM);
    let status = eventually(Duration::from_secs(10), || {
        d.child.try_wait().ok().flatten()
    })
    .expect("exit on SIGTERM");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("STOPPING=1"), "{seen}");
}

/// Reads what the daemon has sent to its NOTIFY_SOCKET until `until` holds.
fn notifications_until(sock: &UnixDatagram, seen: &mut String, until: impl Fn(&str) -> bool) {
    let mut buf = [0u8; 4096];
    while !until(seen) {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); so far: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
}

fn errors_total(url: &str) -> Vec<String> {
    let (_, body) = get(&format!("{url}/metrics")).unwrap();
    body.as_str()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("keyfleet_errors_total"))
        .map(str::to_owned)
        .collect()
}

/// Daemon and engine start together (systemd, `keyfleet dev`): until the engine has
/// first answered, its absence is awaited, said in STATUS=, and not counted as an
/// error. Once it has answered, losing it is an error again.
#[test]
fn an_engine_that_starts_after_its_daemon_is_awaited_not_counted() {
    if engine().is_none() {
        skip!(
            "skipped an_engine_that_starts_after_its_daemon_is_awaited_not_counted: no engine on PATH"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = free_port();
    let d = daemon(
        port,
        "[fleet]\npoll_interval = \"100ms\"\n",
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut seen = String::new();
    notifications_until(&sock, &mut seen, |s| {
        s.contains("STATUS=starting: waiting for the engine to answer (engine_unreachable)")
    });
    // Several polls have failed by now, none of them counted.
    let polled = eventually(Duration::from_secs(5), || {
        let (_, body) = get(&format!("{}/metrics", d.url))?;
        let text = body.as_str()?.to_owned();
        text.lines()
            .any(|l| {
                l.starts_with("keyfleet_polls_total ") && !l.ends_with(" 0") && !l.ends_with(" 1")
            })
            .then_some(())
    });
    assert!(polled.is_some(), "the daemon is not polling");
    assert_eq!(errors_total(&d.url), Vec::<String>::new());

    let engine = Engine::start_on(port).unwrap();
    let ready = eventually(Duration::from_secs(10), || {
        let (code, _) = get(&format!("{}/readyz", d.url))?;
        (code == 200).then_some(())
    });
    assert!(ready.is_some(), "not ready once the engine is up");
    notifications_until(&sock, &mut seen, |s| s.contains("STATUS=ready:"));
    assert_eq!(
        errors_total(&d.url),
        Vec::<String>::new(),
        "a healthy start counts no error"
    );

    drop(engine);
    let counted = eventually(Duration::from_secs(5), || {
        errors_total(&d.url)
            .iter()
            .any(|l| l.contains("engine_"))
            .then_some(())
    });
    assert!(
        counted.is_some(),
        "losing an engine that was up is an error"
    );
    notifications_until(&sock, &mut seen, |s| {
        s.contains("STATUS=not ready: engine is down")
    });
}
