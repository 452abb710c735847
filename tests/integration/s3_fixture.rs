//! Fixtures for log shipping: a real S3 server (`s3s-fs` on a loopback port, its data in
//! a temporary directory that the test reads directly) and one node (engine + daemon)
//! that ships to it.

use crate::fixture::*;
use serde_json::Value;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// Every file under `dir` as (its path relative to `base`, its bytes); a file that
/// vanishes between the listing and the read is left out.
pub fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(base, &p, out);
        } else {
            let key = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            // The server renames or removes its temporary files while we look: one
            // gone since the listing was never an object.
            match std::fs::read(&p) {
                Ok(bytes) => out.push((key, bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("{}: {e}", p.display()),
            }
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
        Node::start_as(
            "solo",
            (free_port(), free_port()),
            endpoint,
            logs_extra,
            s3_extra,
        )
    }

    /// As `start`, for node `name` with its (engine, API) ports chosen by the caller, so
    /// that nodes can name each other as peers in `s3_extra`. With Redis, node `a` is
    /// the primary.
    pub fn start_as(
        name: &str,
        (engine_port, api_port): (u16, u16),
        endpoint: &str,
        logs_extra: &str,
        s3_extra: &str,
    ) -> Node {
        let (bin, kind) = engine().expect("an engine");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ak"), ACCESS_KEY).unwrap();
        std::fs::write(d.join("sk"), SECRET_KEY).unwrap();
        let debug = match kind {
            // Redis 7 refuses DEBUG unless told; KeyDB 6 allows it and knows no such directive.
            keyfleet::config::EngineKind::Redis => {
                "[engine.settings]\nenable-debug-command = \"local\"\n"
            }
            keyfleet::config::EngineKind::Keydb => "",
        };
        let primary = match kind {
            keyfleet::config::EngineKind::Redis if s3_extra.contains("[[peers]]") => {
                "primary = \"a\"\n"
            }
            _ => "",
        };
        let s3 = |key: &str, default: String| {
            if s3_extra.contains(&format!("{key} =")) {
                String::new()
            } else {
                format!("{key} = {default}\n")
            }
        };
        let config = format!(
            "node_name = \"{name}\"\nstate_dir = \"{d}/state\"\n\
             [engine]\nkind = \"{k}\"\nport = {engine_port}\ndata_dir = \"{d}\"\nappendonly = false\n{primary}{debug}\
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
