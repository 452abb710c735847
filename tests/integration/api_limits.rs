//! The API under hostile load, against the real daemon: idle and slow connections past
//! the cap, timeouts, per-class limits, the shared fleet fan-out and the file limit. No
//! engine is needed: everything here happens before an engine call, and `/api/v1/node`
//! answers (down) without one.

use crate::api_fixture::*;
use crate::fixture::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn idle_connections_past_the_cap_do_not_lock_out_health_or_a_token() {
    let d = Daemon::start("max_connections = 32\nheader_timeout = \"60s\"", "");
    let mut held = Vec::new();
    // Connect-only, half-sent heads, and kept-alive connections after one answer:
    // far more than the cap, from the same address as the requests below.
    for i in 0..300 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        match i % 3 {
            1 => s
                .write_all(b"GET /api/v1/node HTTP/1.1\r\nHost: x\r\n")
                .unwrap(),
            2 => s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap(),
            _ => {}
        }
        held.push(s);
    }
    for _ in 0..5 {
        for (path, token, want) in [
            ("/healthz", None, 200),
            ("/api/v1/node", Some(TOKEN), 200),
            ("/readyz", None, 401),
        ] {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
                token
                    .map(|t| format!("Authorization: Bearer {t}\r\n"))
                    .unwrap_or_default()
            );
            // The bound the issue sets: an answer within a second.
            let answer = d.raw(req.as_bytes(), Duration::from_secs(1));
            assert_eq!(answer.map(|a| a.0), Some(want), "{path} during the flood");
        }
    }
    let open = d.metric("keyfleet_http_connections_open ");
    assert!(open <= 33.0, "{open} connections open past the cap of 32");
    let evicted = d.metric("keyfleet_http_connections_closed_total{reason=\"evicted\"} ");
    assert!(
        evicted >= 250.0,
        "only {evicted} idle connections were closed for room"
    );
    assert_eq!(d.metric("keyfleet_http_connections_max "), 32.0);
    drop(held);
}

/// Sends a request line, then a header line every 200 ms, never ending the head; how
/// long until the daemon cut the connection off, or None if it had not within `within`.
fn trickle_head(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let began = Instant::now();
    while began.elapsed() < within {
        if s.write_all(b"X-Slow: 1\r\n").is_err() {
            return Some(began.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn silent_slow_and_idle_connections_are_closed() {
    let d = Daemon::start("header_timeout = \"1s\"\nidle_timeout = \"2s\"", "");
    let mut silent = TcpStream::connect(d.addr).unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(10)),
        "connect-only"
    );

    // A head trickled a line at a time never completes: its first byte started the clock.
    let mut slow = TcpStream::connect(d.addr).unwrap();
    let cut_off = trickle_head(&mut slow, Duration::from_secs(10)).is_some();
    assert!(
        cut_off || closed_within(&mut slow, Duration::from_secs(1)),
        "slowloris"
    );

    // Kept alive: a second request on it is answered, then silence closes it.
    let mut kept = TcpStream::connect(d.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = kept.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    assert!(
        closed_within(&mut kept, Duration::from_secs(10)),
        "idle keep-alive"
    );

    assert!(d.metric("keyfleet_http_connections_closed_total{reason=\"header_timeout\"} ") >= 2.0);

    // A head begun on a kept-alive connection gets the header timeout from its first
    // byte, not what is left of a long idle timeout.
    let d2 = Daemon::start("header_timeout = \"1s\"\nidle_timeout = \"60s\"", "");
    let mut kept = TcpStream::connect(d2.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(kept.read(&mut buf).unwrap() > 0);
    let cut_off = trickle_head(&mut kept, Duration::from_secs(20));
    assert!(
        cut_off.is_some(),
        "a trickled head on a kept-alive connection was not cut off"
    );
    let took = cut_off.unwrap();
    assert!(
        took < Duration::from_secs(20),
        "cut off only after {took:?}"
    );
    assert!(d.metric("keyfleet_http_connections_closed_total{reason=\"idle_timeout\"} ") >= 1.0);
}

#[test]
fn a_class_past_its_limit_is_shed_and_the_fleet_fan_out_is_shared() {
    let (hole, accepted) = black_hole();
    let d = Daemon::start("[api.limits]\nfanout = 4", &peer_table(hole));
    let answers = fleet_storm(&d, 12);
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let shed: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert_eq!(ok, 4, "{answers:?}");
    assert_eq!(shed.len(), 8, "{answers:?}");
    assert!(
        shed.iter().all(|a| a.1),
        "503 carries Retry-After: {answers:?}"
    );
    // Four callers waited on the peer together: one fan-out asked it once.
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "requests to the peer");
    assert_eq!(
        d.metric("keyfleet_http_requests_total{route=\"/api/v1/fleet\",status=\"503\"} "),
        8.0
    );
    // HEAD on a GET route counts against the same limit.
    std::thread::scope(|scope| {
        let storm = scope.spawn(|| fleet_storm(&d, 4));
        std::thread::sleep(Duration::from_millis(500));
        let head = format!(
            "HEAD /api/v1/fleet HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        let (code, _) = d.raw(head.as_bytes(), Duration::from_secs(5)).unwrap();
        assert_eq!(code, 503, "HEAD past the fanout limit");
        assert!(storm.join().unwrap().iter().all(|a| a.0 == 200));
    });
    // While the fan-out ran, a cheap route was not held up by it.
    let (code, _) = get_with(&d.url("/api/v1/node"), Some(TOKEN)).unwrap();
    assert_eq!(code, 200);
}

#[test]
fn at_the_cap_with_every_connection_busy_a_new_one_is_refused_at_once() {
    let (hole, _) = black_hole();
    let d = Daemon::start("max_connections = 8", &peer_table(hole));
    std::thread::scope(|scope| {
        let storm = scope.spawn(|| fleet_storm(&d, 8));
        // The 8 are in flight well within this (the peer holds them for 2 s); a probe
        // sent earlier could take a slot and be closed for room instead.
        std::thread::sleep(Duration::from_millis(500));
        let busy = eventually(Duration::from_secs(5), || {
            TcpStream::connect(d.addr).ok().and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                buf.starts_with("HTTP/1.1 503").then_some(buf)
            })
        });
        let refused = busy.expect("a connection past the cap is refused");
        assert!(refused.contains("\"overloaded\""), "{refused}");
        assert!(
            refused.to_ascii_lowercase().contains("retry-after: 1"),
            "{refused}"
        );
        let answers = storm.join().unwrap();
        assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    });
    assert!(d.metric("keyfleet_http_connections_refused_total ") >= 1.0);
}

#[test]
fn a_cap_past_the_file_limit_is_lowered_to_fit_and_said() {
    // The hard limit is 400: the soft one cannot be raised to 512 + 256, so the cap
    // becomes 400 - 256 = 144 rather than the daemon running out of descriptors.
    let d = Daemon::start_limited("max_connections = 512", "", Some(400));
    assert_eq!(d.metric("keyfleet_http_connections_max "), 144.0);
    let log = d.log();
    assert!(log.contains("does not fit the file limit"), "{log}");
    assert!(log.contains("144"), "{log}");
}
