//! Network stand-ins around the real S3 server: a TCP relay that slows traffic and keeps
//! what passed, a server that answers HTML to everything, and a TLS front with a
//! throwaway CA.

use crate::fixture::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
