//! A token-guarded daemon for the API tests (`api_limits`, `api_rejections`), raw HTTP
//! exchanges with it, and a peer that never answers.

use crate::fixture::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const TOKEN: &str = "s3cret-t0ken";

pub struct Daemon {
    child: Child,
    pub addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// A token-guarded daemon with `api` added to its `[api]` table and `rest` after.
    pub fn start(api: &str, rest: &str) -> Daemon {
        Daemon::start_limited(api, rest, None)
    }

    /// As `start`, with the process's open-file limit (soft and hard) set to `nofile`.
    pub fn start_limited(api: &str, rest: &str, nofile: Option<u64>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let port = free_port();
        let config = format!(
            "node_name = \"solo\"\nstate_dir = \"{dir}/state\"\n[engine]\nkind = \"redis\"\nport = {engine}\nprimary = \"solo\"\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{dir}/token\"\nrejections_log_interval = \"1s\"\n{api}\n{rest}",
            dir = dir.path().display(),
            engine = free_port(),
        );
        let path = dir.path().join("node.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let mut cmd = keyfleet();
        cmd.args(["daemon", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only `lim`.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let d = Daemon { child, addr, dir };
        let up = eventually(Duration::from_secs(10), || get(&d.url("/healthz")));
        assert!(up.is_some(), "daemon did not answer /healthz: {}", d.log());
        d
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// One raw HTTP exchange; the status line's code and the whole answer.
    pub fn raw(&self, request: &[u8], wait: Duration) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(wait)).ok()?;
        s.write_all(request).ok()?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, text))
    }

    pub fn metric(&self, line_start: &str) -> f64 {
        let (_, body) = get_with(&self.url("/metrics"), Some(TOKEN)).expect("metrics");
        let text = body.as_str().expect("text").to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Reads until the daemon closes the connection; false if it is still open at `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A peer daemon that accepts connections and never answers, counting them.
pub fn black_hole() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (port, accepted)
}

pub fn peer_table(api_port: u16) -> String {
    format!(
        "[fleet]\npeer_timeout = \"2s\"\n[[peers]]\nname = \"hole\"\naddress = \"127.0.0.1\"\nengine_port = {}\napi_port = {api_port}\n",
        free_port()
    )
}

/// `n` concurrent authenticated `GET /api/v1/fleet`: each answer's status and
/// Retry-After header, if any.
pub fn fleet_storm(d: &Daemon, n: usize) -> Vec<(u16, bool)> {
    let req = format!(
        "GET /api/v1/fleet HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| d.raw(req.as_bytes(), Duration::from_secs(10))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (code, text) = h.join().unwrap().expect("every request is answered");
                (code, text.to_ascii_lowercase().contains("retry-after: 1"))
            })
            .collect()
    })
}
