//! Rejected API requests against the real daemon: quiet (summarised, not logged one by
//! one), counted by route template, and revealing no route to a client without the
//! token; the auth and Host rules; heads and bodies too large.

use crate::api_fixture::*;
use crate::fixture::*;
use std::time::Duration;

#[test]
fn rejections_are_quiet_counted_and_reveal_no_route() {
    let d = Daemon::start("", "");
    let long = format!("/{}", "a".repeat(5000));
    for _ in 0..300 {
        assert_eq!(get(&d.url(&long)).map(|a| a.0), Some(401));
    }
    // Without the token nothing says whether a route exists or takes the method.
    for (method, path) in [
        ("POST", "/api/v1/node"),
        ("GET", "/nope"),
        ("DELETE", "/metrics"),
    ] {
        let (code, body) = request(method, &d.url(path), None).unwrap();
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (401, Some("token_missing"))
        );
    }
    // With it, routing answers.
    assert_eq!(
        request("POST", &d.url("/api/v1/node"), Some(TOKEN))
            .unwrap()
            .0,
        405
    );
    assert_eq!(get_with(&d.url("/nope"), Some(TOKEN)).unwrap().0, 404);
    let w = Duration::from_secs(5);
    let cases: [(&str, String, u16, &str); 6] = [
        (
            "lower-case scheme",
            format!(
                "GET /api/v1/node HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: bearer {TOKEN}\r\n\r\n"
            ),
            200,
            "",
        ),
        (
            "two Authorization",
            format!(
                "GET /api/v1/node HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            ),
            400,
            "authorization_repeated",
        ),
        (
            "no Host",
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
            400,
            "host_invalid",
        ),
        (
            "two Host",
            "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".to_string(),
            400,
            "host_invalid",
        ),
        (
            "huge header",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(20_000)
            ),
            431,
            "",
        ),
        (
            "huge body",
            format!(
                "POST /api/v1/safety/diff HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\n{}",
                "{".repeat(100_000)
            ),
            413,
            "body_too_large",
        ),
    ];
    for (what, req, want, code) in cases {
        let (got, text) = d
            .raw(req.as_bytes(), w)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(got, want, "{what}: {text}");
        assert!(text.contains(code), "{what}: {text}");
        assert!(!text.contains(TOKEN), "{what}: the token is never echoed");
    }
    assert!(d.metric("keyfleet_http_requests_total{route=\"unmatched\",status=\"401\"} ") >= 300.0);
    assert_eq!(
        d.metric("keyfleet_http_requests_total{route=\"/api/v1/node\",status=\"401\"} "),
        1.0
    );
    assert_eq!(
        d.metric("keyfleet_http_requests_total{route=\"unmatched\",status=\"431\"} "),
        1.0
    );
    // Label values are templates, never a raw path.
    let (_, metrics) = get_with(&d.url("/metrics"), Some(TOKEN)).unwrap();
    assert!(!metrics.as_str().unwrap().contains("aaaaaaaaaa"));

    // One summary line per status per interval, short, naming the client.
    let summaries = eventually(Duration::from_secs(5), || {
        let log = d.log();
        let n: u64 = log
            .lines()
            .filter(|l| l.contains("status=401"))
            .filter_map(|l| {
                l.split("count=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        (n >= 303).then_some(log)
    })
    .unwrap_or_else(|| panic!("no 401 summaries adding up to 303:\n{}", d.log()));
    let lines: Vec<&str> = summaries.lines().collect();
    assert!(
        lines.len() < 40,
        "{} log lines for ~310 rejections",
        lines.len()
    );
    assert!(
        lines.iter().all(|l| l.len() < 600),
        "a long log line:\n{summaries}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("status=401") && l.contains("peers=127.0.0.1"))
    );
    assert!(!summaries.contains(TOKEN));
}
