//! Quiet rejections: a request the daemon turns away before any handler runs (no token,
//! no route, a method not allowed, a body or head too large, a malformed request, a
//! class over its limit) is not logged on its own. It is counted, and once per interval
//! one summary line per status says how many there were, from which client addresses
//! and an example path cut to `MAX_PATH` bytes. The access log gets the first
//! `ACCESS_SAMPLE` of each status per interval; the rest are counted as left out.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The longest path kept in a log line, in bytes.
pub const MAX_PATH: usize = 200;
/// Rejected requests of one status written to the access log per interval.
pub const ACCESS_SAMPLE: u64 = 20;
/// Client addresses named in one summary; the rest are counted.
const PEERS_NAMED: usize = 8;

#[derive(Debug, Default)]
struct Tally {
    status: u16,
    count: u64,
    left_out: u64,
    peers: Vec<IpAddr>,
    more_peers: bool,
    example: String,
}

/// One status's summary for an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub status: u16,
    pub count: u64,
    /// Of `count`, how many the access log left out.
    pub left_out: u64,
    /// The client addresses seen, at most `PEERS_NAMED`, with "+more" when cut.
    pub peers: String,
    pub example: String,
}

#[derive(Debug)]
pub struct Rejections {
    pub interval: Duration,
    /// Whether there is an access log to sample for; without one nothing is left out.
    sampled: bool,
    tallies: Mutex<Vec<Tally>>,
}

/// `path` cut to at most `MAX_PATH` bytes on a character boundary.
pub fn cut(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

impl Rejections {
    pub fn new(interval: Duration, sampled: bool) -> Rejections {
        Rejections {
            interval,
            sampled,
            tallies: Mutex::new(Vec::new()),
        }
    }

    /// Counts one rejection; true when it is among the ones the access log keeps.
    pub fn note(&self, status: u16, peer: Option<IpAddr>, path: &str) -> bool {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let i = match tallies.iter().position(|t| t.status == status) {
            Some(i) => i,
            None => {
                tallies.push(Tally {
                    status,
                    example: cut(path).to_owned(),
                    ..Tally::default()
                });
                tallies.len() - 1
            }
        };
        let t = &mut tallies[i];
        t.count += 1;
        if let Some(ip) = peer
            && !t.peers.contains(&ip)
        {
            if t.peers.len() < PEERS_NAMED {
                t.peers.push(ip);
            } else {
                t.more_peers = true;
            }
        }
        let keep = t.count <= ACCESS_SAMPLE;
        if !keep && self.sampled {
            t.left_out += 1;
        }
        keep
    }

    /// The summaries of the interval that just ended, by status; starts a new one.
    pub fn take(&self) -> Vec<Summary> {
        let mut tallies =
            std::mem::take(&mut *self.tallies.lock().unwrap_or_else(|p| p.into_inner()));
        tallies.sort_by_key(|t| t.status);
        tallies
            .into_iter()
            .map(|t| {
                let mut peers: Vec<String> = t.peers.iter().map(IpAddr::to_string).collect();
                if t.more_peers {
                    peers.push("+more".into());
                }
                Summary {
                    status: t.status,
                    count: t.count,
                    left_out: t.left_out,
                    peers: peers.join(", "),
                    example: t.example,
                }
            })
            .collect()
    }

    /// Logs one line per status every interval until `stop`.
    pub async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            for s in self.take() {
                tracing::info!(
                    status = s.status,
                    count = s.count,
                    left_out_of_access_log = s.left_out,
                    peers = %s.peers,
                    example = %s.example,
                    "rejected {} API requests with status {} in the last {}",
                    s.count,
                    s.status,
                    crate::config::show_duration(self.interval)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_names_few_peers_and_samples_the_access_log() {
        let r = Rejections::new(Duration::from_secs(60), true);
        let long = format!("/{}", "é".repeat(300));
        let mut kept = 0;
        for i in 0..100u8 {
            let ip = IpAddr::from([10, 0, 0, i % 12]);
            if r.note(401, Some(ip), &long) {
                kept += 1;
            }
        }
        assert!(r.note(404, None, "/nope"));
        assert_eq!(kept, ACCESS_SAMPLE);
        let s = r.take();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].status, s[0].count, s[0].left_out), (401, 100, 80));
        assert_eq!(s[0].peers.split(", ").count(), PEERS_NAMED + 1);
        assert!(s[0].peers.ends_with("+more"), "{}", s[0].peers);
        assert!(s[0].example.len() <= MAX_PATH && s[0].example.len() > MAX_PATH - 2);
        assert_eq!(
            (s[1].status, s[1].count, s[1].example.as_str()),
            (404, 1, "/nope")
        );
        assert!(r.take().is_empty(), "a new interval starts empty");
        assert!(r.note(401, None, "/"), "and samples afresh");
    }
}
