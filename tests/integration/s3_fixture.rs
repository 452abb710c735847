//! Fixtures for log shipping: a real S3 server (`s3s-fs` on a loopback port, its data in
//! a temporary directory that the test reads directly), one node (engine + daemon) that
//! ships to it, and a TCP relay that can slow the traffic down and keeps what passed.

use crate::fixture::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKIAKEYFLEETTEST";
pub const SECRET_KEY: &str = "keyfleet-test-secret-key-0123456789";
pub const BUCKET: &str = "keyfleet-logs";

/// `s3s-fs` from PATH; None (with a line saying so) when it is missing, a failure when
/// KEYFLEET_REQUIRE_TOOLS=1.
fn s3s_fs() -> Option<PathBuf> {
    let found = keyfleet::dev::on_path("s3s-fs");
    if found.is_none() {
        assert!(
            std::env::var("KEYFLEET_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "s3s-fs is not on PATH (KEYFLEET_REQUIRE_TOOLS=1): cargo install --locked s3s-fs --version 0.14.1 --features binary"
        );
    }
    found
}

/// A real S3 server on loopback.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: tempfile::TempDir,
    bin: PathBuf,
}

impl S3Server {
    /// Starts one with the bucket `BUCKET`; None when s3s-fs or an engine is missing.
    pub fn start(test: &str) -> Option<S3Server> {
        if engine().is_none() {
            skip!("skipped {test}: no engine (redis-server or KEYFLEET_KEYDB_SERVER)");
            return None;
        }
        let Some(bin) = s3s_fs() else {
            skip!(
                "skipped {test}: s3s-fs is not on PATH (cargo install --locked s3s-fs --version 0.14.1 --features binary)"
            );
            return None;
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let mut s = S3Server {
            child: None,
            port: free_port(),
            root,
            bin,
        };
        s.restart();
        Some(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts it on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
        assert!(up.is_some(), "s3s-fs did not listen on {}", self.port);
    }

    /// The objects under `prefix` in `BUCKET` as (key, bytes), read from s3s-fs's files.
    pub fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let base = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        collect(&base, &base, &mut out);
        out.retain(|(k, _)| k.starts_with(prefix));
        out.sort();
        out
    }

    /// Multipart uploads the store still holds open.
    pub fn open_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload-"))
            .collect()
    }
}

/// Every file under `dir` as (its path relative to `base`, its bytes).
pub fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(base, &p, out);
        } else {
            let key = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            out.push((key, std::fs::read(&p).unwrap()));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The lines of shipped objects in segment order (the sequence number ends the name).
pub fn shipped_lines(objects: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut objs: Vec<&(String, Vec<u8>)> = objects.iter().collect();
    let seq = |k: &str| -> u64 {
        let name = k.rsplit('/').next().unwrap();
        let stem = name.split('.').next().unwrap();
        stem.rsplit('-').next().unwrap().parse().unwrap()
    };
    objs.sort_by_key(|(k, _)| seq(k));
    let mut lines = Vec::new();
    for (key, bytes) in objs {
        let text = if key.ends_with(".zst") {
            zstd::stream::decode_all(&bytes[..]).unwrap_or_else(|e| panic!("{key}: {e}"))
        } else {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{key} ends in a cut line"
        );
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

/// One node shipping its logs: an engine rendered from the node's config, and a daemon.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub api: String,
    pub engine_port: u16,
    engine: Child,
    daemon: Option<Child>,
    /// Environment for the daemon (set, then restart it with `kill_daemon`/`start_daemon`).
    pub env: Vec<(String, String)>,
}

impl Node {
    /// `logs_extra` goes into `[logs]`; `s3_extra` into `[logs.s3]` (endpoint etc. are
    /// filled in from `endpoint` unless given there).
    pub fn start(endpoint: &str, logs_extra: &str, s3_extra: &str) -> Node {
        let (bin, kind) = engine().expect("an engine");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ak"), ACCESS_KEY).unwrap();
        std::fs::write(d.join("sk"), SECRET_KEY).unwrap();
        let (engine_port, api_port) = (free_port(), free_port());
        let debug = match kind {
            // Redis 7 refuses DEBUG unless told; KeyDB 6 allows it and knows no such directive.
            keyfleet::config::EngineKind::Redis => {
                "[engine.settings]\nenable-debug-command = \"local\"\n"
            }
            keyfleet::config::EngineKind::Keydb => "",
        };
        let s3 = |key: &str, default: String| {
            if s3_extra.contains(&format!("{key} =")) {
                String::new()
            } else {
                format!("{key} = {default}\n")
            }
        };
        let config = format!(
            "node_name = \"solo\"\nstate_dir = \"{d}/state\"\n\
             [engine]\nkind = \"{k}\"\nport = {engine_port}\ndata_dir = \"{d}\"\nappendonly = false\n{debug}\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\n\
             [logs]\ndir = \"{d}/logs\"\nwriter_grace = \"300ms\"\nretry_max_interval = \"2s\"\n{logs_extra}\n\
             [logs.s3]\n{ep}{bucket}access_key_id_file = \"{d}/ak\"\nsecret_access_key_file = \"{d}/sk\"\n{s3_extra}\n",
            d = d.display(),
            k = kind.as_str(),
            ep = s3("endpoint", format!("\"{endpoint}\"")),
            bucket = s3("bucket", format!("\"{BUCKET}\"")),
        );
        let config_path = d.join("node.toml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::create_dir_all(d.join("logs")).unwrap();
        let conf = keyfleet()
            .args(["render", "keydb-conf", "--config"])
            .arg(&config_path)
            .output()
            .unwrap();
        assert!(
            conf.status.success(),
            "{}",
            String::from_utf8_lossy(&conf.stderr)
        );
        std::fs::write(d.join("engine.conf"), &conf.stdout).unwrap();
        let engine = Command::new(bin)
            .arg(d.join("engine.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(eventually(Duration::from_secs(10), || ping(engine_port)).is_some());
        let mut node = Node {
            dir,
            config: config_path,
            api: format!("http://127.0.0.1:{api_port}"),
            engine_port,
            engine,
            daemon: None,
            env: Vec::new(),
        };
        node.start_daemon();
        node
    }

    pub fn start_daemon(&mut self) {
        let child = keyfleet()
            .args(["daemon", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let up = eventually(Duration::from_secs(10), || {
            get(&format!("{}/healthz", self.api))
        });
        assert!(up.is_some(), "daemon did not answer /healthz");
    }

    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill(); // SIGKILL: no chance to tidy up
            let _ = c.wait();
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `lines` into the engine's log through the engine itself (`DEBUG LOG`).
    pub fn engine_log(&self, lines: &[String]) {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{}/", self.engine_port))
            .unwrap()
            .get_connection()
            .unwrap();
        for l in lines {
            let _: () = redis::cmd("DEBUG")
                .arg("LOG")
                .arg(l)
                .query(&mut con)
                .unwrap();
        }
    }

    pub fn logs(&self) -> Value {
        let (code, v) = get(&format!("{}/api/v1/logs", self.api)).expect("GET /api/v1/logs");
        assert_eq!(code, 200, "{v}");
        v
    }

    pub fn flush(&self) -> Value {
        let (code, v) =
            request("POST", &format!("{}/api/v1/logs/flush", self.api), None).expect("POST flush");
        assert_eq!(code, 202, "{v}");
        v
    }

    /// Waits until nothing is pending (or panics after `within`, with the status).
    pub fn wait_shipped(&self, within: Duration) -> Value {
        eventually(within, || {
            let v = self.logs();
            v["oldest_pending_seq"].is_null().then_some(v)
        })
        .unwrap_or_else(|| panic!("not shipped within {within:?}: {}", self.logs()))
    }

    pub fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let (_, text) = get(&format!("{}/metrics", self.api))?;
        text.as_str()?.lines().find_map(|l| {
            l.strip_prefix(name_and_labels)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
    }

    pub fn journal(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.path("state/logship.json"))
                .unwrap_or_else(|_| "{}".into()),
        )
        .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_daemon();
        let _ = self.engine.kill();
        let _ = self.engine.wait();
    }
}

/// A TCP relay to `upstream` that passes client bytes at `rate` bytes/s and keeps them,
/// so a test can slow an upload down and see which requests were made.
pub struct Relay {
    pub port: u16,
    pub sent: Arc<Mutex<Vec<u8>>>,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(upstream: u16, rate: u64) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let rate = Arc::new(AtomicU64::new(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, st) = (sent.clone(), rate.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (sent, rate) = (s.clone(), r.clone());
                std::thread::spawn(move || pump(client, server, Some((sent, rate))));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        Relay {
            port,
            sent,
            rate,
            stop,
        }
    }

    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// The request lines (`POST /bucket/key?query HTTP/1.1`) that passed.
    pub fn request_lines(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        let text = String::from_utf8_lossy(&sent);
        text.split("\r\n")
            .filter_map(|l| {
                let at = ["GET /", "PUT /", "POST /", "HEAD /", "DELETE /"]
                    .iter()
                    .find_map(|m| l.find(m))?;
                let line = &l[at..];
                line.ends_with(" HTTP/1.1").then(|| line.to_owned())
            })
            .collect()
    }

    /// How many requests had `method` and a query parameter `param` (with `=value`, if given).
    pub fn requests(&self, method: &str, param: &str) -> usize {
        self.request_lines()
            .iter()
            .filter(|l| l.starts_with(&format!("{method} /")))
            .filter(|l| {
                let query = l.split_once('?').map(|q| q.1).unwrap_or("");
                let query = query.trim_end_matches(" HTTP/1.1");
                query.split('&').any(|kv| {
                    kv == param || (!param.contains('=') && kv.starts_with(&format!("{param}=")))
                })
            })
            .count()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

type Tap = (Arc<Mutex<Vec<u8>>>, Arc<AtomicU64>);

fn pump(mut from: TcpStream, mut to: TcpStream, tap: Option<Tap>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let started = Instant::now();
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((sent, rate)) = &tap {
            sent.lock().unwrap().extend_from_slice(&buf[..n]);
            let r = rate.load(Ordering::Relaxed).max(1);
            let due = Duration::from_secs_f64(n as f64 / r as f64);
            if let Some(rest) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A server that answers every request with 200 and an HTML page: a store that
/// "answers garbage".
pub fn garbage_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = vec![0u8; 64 << 10];
                let mut seen = Vec::new();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            let body = "<html><body>It works!</body></html>";
                            let _ = write!(
                                conn,
                                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            seen.drain(..end + 4 + len);
                        }
                    }
                }
            });
        }
    });
    port
}

/// A TLS front for `upstream` (Python's ssl module) with a certificate for 127.0.0.1
/// signed by a throwaway CA: (its port, the CA's PEM file, the process). None without
/// python3 or openssl.
pub fn tls_front(dir: &Path, upstream: u16) -> Option<(u16, PathBuf, Child)> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=keyfleet test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
    ])?;
    let script = r#"
import socket, ssl, sys, threading
cert, key, port_file, upstream = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
open(port_file, "w").write(str(srv.getsockname()[1]))
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError):
        c.close()
        return
    u = socket.create_connection(("127.0.0.1", int(upstream)))
    threading.Thread(target=pump, args=(t, u), daemon=True).start()
    pump(u, t)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
    let port_file = dir.join("tls.port");
    let child = Command::new("python3")
        .args(["-c", script, "leaf.pem", "leaf.key"])
        .arg(&port_file)
        .arg(upstream.to_string())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let port = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&port_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    })?;
    Some((port, dir.join("ca.pem"), child))
}
