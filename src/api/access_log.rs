//! The API's access log: one JSON line per request in `access.log` (time, peer address,
//! method, route, status, duration, error code, and `seq`, the line's number since the
//! daemon started, so a reader can tell that none is missing). Only what is safe to keep: the matched
//! route template or, for an unknown one, the path without its query string cut to 200
//! bytes, and never a header, so no token reaches it. Every accepted request is written;
//! rejected ones are sampled (`rejections`).

use crate::logship::writer::LogFile;
use std::net::SocketAddr;
use std::time::Instant;

pub struct Line<'a> {
    pub seq: u64,
    pub peer: SocketAddr,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub started: Instant,
    pub error: Option<&'static str>,
}

pub fn write(log: &LogFile, line: Line<'_>) {
    let json = serde_json::json!({
        "seq": line.seq,
        "time": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "peer": line.peer.to_string(),
        "method": line.method,
        "route": line.route,
        "status": line.status,
        "duration_ms": (line.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "error": line.error,
    });
    let mut bytes = serde_json::to_vec(&json).expect("a JSON value serializes");
    bytes.push(b'\n');
    log.write_line(&bytes);
}
