//! `keyfleet dev --partitionable`: TCP proxies on every engine link, so that a link can be
//! cut for real and healed. For each directed pair A→B there are two, both forwarding to
//! B's engine: A's engine replicates from B through the replication proxy (A's config
//! names it as B's `replication_port`), and A's daemon reads B's engine (clock skew, the
//! divergence sampler, repairs) through the reads proxy (B's `engine_port`). Cutting a
//! proxy resets every connection it carries and refuses new ones until it is healed. The
//! daemons' API traffic goes through neither, so the daemons still see each other, as
//! the operators of a real fleet partitioned between engines would.
//!
//! What to cut comes from `partition.json` (`super::partition`); `Mesh::poll` applies it.

use super::partition::{Partition, applied_path, read_partition, request_path, write_atomically};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a proxy carries from `from` to `to`'s engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// `from`'s engine replicating from `to`'s.
    Replication,
    /// `from`'s daemon reading `to`'s engine.
    Reads,
}

/// One directed link's proxy: `from`'s engine (or daemon) dials it to reach `to`'s engine.
pub struct Proxy {
    pub from: String,
    pub to: String,
    pub carries: Carries,
    pub port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(from: &str, to: &str, carries: Carries, upstream: u16) -> Result<Proxy, String> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("cannot listen for the {from}→{to} {carries:?} proxy: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (cut.clone(), live.clone());
        std::thread::Builder::new()
            .name(format!("proxy-{from}-{to}-{carries:?}"))
            .spawn(move || accept_loop(listener, upstream, c, l))
            .map_err(|e| format!("cannot start the {from}→{to} {carries:?} proxy: {e}"))?;
        Ok(Proxy {
            from: from.into(),
            to: to.into(),
            carries,
            port,
            cut,
            live,
        })
    }

    /// Cuts (`true`) or heals the link. Cutting resets every connection it carries.
    /// The flag changes under the connection list's lock, so a connection the accept
    /// loop is adding either is reset here or sees the cut there.
    pub fn set_cut(&self, cut: bool) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for s in live.drain(..) {
                reset(&s);
            }
        }
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

/// Closes a connection with a reset (SO_LINGER 0), as a dropped link looks to the peer.
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn accept_loop(
    listener: TcpListener,
    upstream: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
) {
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if cut.load(Ordering::SeqCst) {
            reset(&client);
            continue;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            reset(&client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        {
            let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
            // Cut while this connection was being set up: it does not pass.
            if cut.load(Ordering::SeqCst) {
                reset(&client);
                reset(&server);
                continue;
            }
            // Connections that ended are pruned here, so the list stays bounded.
            l.retain(|s| s.peer_addr().is_ok());
            l.push(c3);
            l.push(s3);
        }
        std::thread::spawn(move || pump(client, s2));
        std::thread::spawn(move || pump(server, c2));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Whether `proxy` is cut under `partition`.
fn cuts(partition: &Partition, proxy: &Proxy) -> bool {
    (partition.cut.contains(&proxy.from) || partition.cut.contains(&proxy.to))
        && (proxy.carries == Carries::Replication || !partition.replication_only)
}

/// The proxies of a partitionable fleet, and the partition they apply.
pub struct Mesh {
    pub proxies: Vec<Proxy>,
    applied: Partition,
}

impl Mesh {
    /// Both proxies of every directed link between `engines` (name, engine port).
    pub fn start(engines: &[(&str, u16)]) -> Result<Mesh, String> {
        let mut proxies = Vec::new();
        for (from, _) in engines {
            for (to, port) in engines.iter().filter(|(t, _)| t != from) {
                for carries in [Carries::Replication, Carries::Reads] {
                    proxies.push(Proxy::start(from, to, carries, *port)?);
                }
            }
        }
        Ok(Mesh {
            proxies,
            applied: Partition::default(),
        })
    }

    /// The port node `from`'s engine (`Replication`) or daemon (`Reads`) dials to reach
    /// `to`'s engine.
    pub fn port(&self, from: &str, to: &str, carries: Carries) -> Option<u16> {
        self.proxies
            .iter()
            .find(|p| p.from == from && p.to == to && p.carries == carries)
            .map(|p| p.port)
    }

    /// `fleet.json`'s `links`: per directed link, the replication proxy's port
    /// (`proxy_port`) and the daemon's reads proxy's (`reads_proxy_port`).
    pub fn links_json(&self) -> serde_json::Value {
        self.proxies
            .iter()
            .filter(|p| p.carries == Carries::Replication)
            .map(|p| {
                serde_json::json!({
                    "from": p.from,
                    "to": p.to,
                    "proxy_port": p.port,
                    "reads_proxy_port": self.port(&p.from, &p.to, Carries::Reads),
                })
            })
            .collect()
    }

    /// Starts over: no partition requested or applied (a file left by an earlier `dev`).
    pub fn reset_files(&mut self, dir: &Path) -> Result<(), String> {
        self.applied = Partition::default();
        write_atomically(&request_path(dir), &self.applied)?;
        write_atomically(&applied_path(dir), &self.applied)
    }

    /// Applies `partition.json` if it changed; returns a line saying what changed.
    pub fn poll(&mut self, dir: &Path) -> Option<String> {
        let wanted = read_partition(&request_path(dir))?;
        if wanted == self.applied {
            return None;
        }
        for p in &self.proxies {
            let cut = cuts(&wanted, p);
            if cut != p.is_cut() {
                p.set_cut(cut);
            }
        }
        if let Err(e) = write_atomically(&applied_path(dir), &wanted) {
            return Some(format!("cannot confirm the partition: {e}"));
        }
        self.applied = wanted;
        let links: Vec<&Proxy> = self
            .proxies
            .iter()
            .filter(|p| p.carries == Carries::Replication)
            .collect();
        let cut_links = links.iter().filter(|p| p.is_cut()).count();
        Some(if self.applied.cut.is_empty() {
            "healed: every engine link restored".to_owned()
        } else {
            format!(
                "partition: {} cut off ({cut_links} of {} directed replication links cut{})",
                self.applied.names(),
                links.len(),
                if self.applied.replication_only {
                    "; the daemons still read every engine"
                } else {
                    ", and the daemons' reads along them"
                }
            )
        })
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
