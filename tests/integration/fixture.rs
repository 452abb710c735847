//! Shared test fixtures: real `keyfleet` processes on ports picked at run time, stopped
//! on drop, and a small HTTP helper.

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn keyfleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keyfleet"))
}

/// The engine `keyfleet dev` will pick, as it picks it; None when there is none.
pub fn engine() -> Option<(PathBuf, keyfleet::config::EngineKind)> {
    keyfleet::dev::find_engine()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port P with P..P+n and P+100..P+100+n all free right now.
pub fn free_base_port(n: u16) -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = u64::from(std::process::id()) ^ now.subsec_nanos() as u64;
    let mut candidate = 20000 + (seed.wrapping_mul(2654435761) % 20000) as u16;
    loop {
        let free = (0..n)
            .flat_map(|i| [candidate + i, candidate + 100 + i])
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return candidate;
        }
        candidate = 20000 + (candidate - 20000 + 211) % 20000;
    }
}

/// Polls `check` every 50 ms until it returns Some or `within` passes.
pub fn eventually<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET on loopback; (status, JSON body or the text as a JSON string).
pub fn get(url: &str) -> Option<(u16, Value)> {
    get_with(url, None)
}

pub fn get_with(url: &str, token: Option<&str>) -> Option<(u16, Value)> {
    request("GET", url, token)
}

pub fn request(method: &str, url: &str, token: Option<&str>) -> Option<(u16, Value)> {
    request_with_body(method, url, token, "")
}

/// As `request`, with a body (sent as JSON when not empty).
pub fn request_with_body(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr: std::net::SocketAddr = hostport.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {hostport}\r\n{auth}{content}\r\n{body}"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Some((
        code,
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    ))
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: a plain kill(2) on a pid this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

pub fn alive(pid: u32) -> bool {
    // A zombie still answers kill(0); read its state to tell.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// A running `keyfleet dev` fleet; stopped with SIGTERM on drop. Its directory is
/// `.keyfleet-dev` in a fresh temporary directory (`root`), as if `dev` had been started
/// there with the default `--dir`.
pub struct DevFleet {
    pub child: Child,
    pub root: tempfile::TempDir,
    pub nodes: Vec<Value>,
}

impl DevFleet {
    pub fn start(n: u16) -> DevFleet {
        DevFleet::start_with(n, &[], &[])
    }

    /// A fleet started with further `dev` arguments and environment variables.
    pub fn start_with(n: u16, args: &[&str], env: &[(&str, &str)]) -> DevFleet {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".keyfleet-dev");
        let base_port = free_base_port(n);
        let child = keyfleet()
            .args([
                "dev",
                "--nodes",
                &n.to_string(),
                "--base-port",
                &base_port.to_string(),
                "--dir",
            ])
            .arg(&dir)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut fleet = DevFleet {
            child,
            root,
            nodes: vec![],
        };
        let fleet_json = fleet.dir().join("fleet.json");
        let parsed = eventually(Duration::from_secs(90), || {
            if let Ok(Some(status)) = fleet.child.try_wait() {
                panic!("keyfleet dev exited early ({status}): {}", fleet.logs());
            }
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(&fleet_json).ok()?).ok()?;
            Some(v)
        })
        .unwrap_or_else(|| panic!("no fleet.json after 90 s: {}", fleet.logs()));
        fleet.nodes = parsed["nodes"].as_array().unwrap().clone();
        fleet
    }

    /// The fleet's `--dir`.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join(".keyfleet-dev")
    }

    pub fn api(&self, i: usize) -> String {
        self.nodes[i]["api_url"].as_str().unwrap().to_owned()
    }

    pub fn pid(&self, i: usize, what: &str) -> u32 {
        self.nodes[i][format!("{what}_pid")].as_u64().unwrap() as u32
    }

    pub fn engine_port(&self, i: usize) -> u16 {
        self.nodes[i]["engine_addr"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The node directories' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            for log in ["daemon.log", "engine.log"] {
                let p: PathBuf = entry.path().join(log);
                if let Ok(t) = std::fs::read_to_string(&p) {
                    let tail: Vec<_> = t.lines().rev().take(15).collect();
                    out += &format!(
                        "\n--- {}\n{}",
                        p.display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
        }
        out
    }

    /// Stops the fleet like Ctrl-C does and returns dev's exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), libc::SIGTERM);
        let status = eventually(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        status.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("keyfleet dev did not stop within 30 s of SIGTERM")
        })
    }
}

impl Drop for DevFleet {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A throwaway engine: the one `dev` would use, with no persistence, its directory a
/// temporary one (a replica writes the RDB it receives there, save "" or not); stopped
/// on drop.
pub struct Engine {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Engine {
    pub fn start() -> Option<Engine> {
        Engine::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Option<Engine> {
        let (bin, _) = engine()?;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        cmd.arg("--dir").arg(dir.path());
        let child = cmd.stdout(Stdio::null()).spawn().unwrap();
        let up = eventually(Duration::from_secs(20), || ping(port));
        assert!(up.is_some(), "engine did not start on {port}");
        Some(Engine {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Some(()) once an engine on `port` answers PING. A bare TCP connect is not enough: a
/// loopback connect to a port in the ephemeral range can connect to itself.
pub fn ping(port: u16) -> Option<()> {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection()
        .ok()?;
    redis::cmd("PING")
        .query::<String>(&mut con)
        .ok()
        .map(|_| ())
}

/// Keys in db 0 of the engine on `port` but the replication canaries the daemons write
/// (`keyfleet:canary:NODE`, which a daemon's key figures leave out too).
pub fn user_keys(port: u16) -> u64 {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let all: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    let canaries: Vec<String> = redis::cmd("KEYS")
        .arg("keyfleet:canary:*")
        .query(&mut con)
        .unwrap();
    all - canaries.len() as u64
}

/// The OpenAPI document describes what `/api/v1/node` really answers, field for field.
pub fn assert_node_matches_openapi(api: &str, node: &Value) {
    let (_, doc) = get(&format!("{api}/api/v1/openapi.json")).unwrap();
    let schema = &doc["components"]["schemas"]["Node"];
    for field in schema["required"].as_array().unwrap() {
        assert!(
            node.get(field.as_str().unwrap()).is_some(),
            "required `{field}` missing from {node}"
        );
    }
    for key in node.as_object().unwrap().keys() {
        assert!(
            schema["properties"].get(key).is_some(),
            "`{key}` is not in the OpenAPI Node schema"
        );
    }
    let link_schema = &doc["components"]["schemas"]["Link"]["properties"];
    for link in node["links"].as_array().unwrap() {
        for key in link.as_object().unwrap().keys() {
            assert!(
                link_schema.get(key).is_some(),
                "link field `{key}` is not in the OpenAPI Link schema"
            );
        }
    }
}

/// `value` has every field the OpenAPI schema `name` requires, and no other.
pub fn assert_matches_schema(api: &str, name: &str, value: &Value) {
    let (_, doc) = get(&format!("{api}/api/v1/openapi.json")).unwrap();
    let schema = &doc["components"]["schemas"][name];
    for field in schema["required"].as_array().unwrap() {
        assert!(
            value.get(field.as_str().unwrap()).is_some(),
            "{name}: `{field}` missing from {value}"
        );
    }
    for key in value.as_object().unwrap().keys() {
        assert!(
            schema["properties"].get(key).is_some(),
            "`{key}` is not in the OpenAPI {name} schema"
        );
    }
}
