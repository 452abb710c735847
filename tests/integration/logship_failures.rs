//! Log shipping when things go wrong: the disk budget with the store down, wrong
//! credentials, a missing bucket, a store that answers HTML, and TLS verification.

use crate::fixture::*;
use crate::net_fixture::*;
use crate::s3_fixture::*;
use std::time::Duration;

#[test]
fn a_full_budget_with_the_store_down_drops_the_oldest_and_counts_every_byte() {
    let Some(_s3) =
        S3Server::start("a_full_budget_with_the_store_down_drops_the_oldest_and_counts_every_byte")
    else {
        return;
    };
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let budget = 64 << 10;
    let node = Node::start(
        &nowhere,
        &format!("max_local_bytes = {budget}\n[logs.rotate]\nmax_size = \"16KiB\"\n"),
        "",
    );
    // The engine's own start-up lines count too.
    let mut written = std::fs::metadata(node.path("logs/engine.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut x: u64 = 42;
    for round in 0..12 {
        let chunk = noise(round, &mut x);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(node.path("logs/engine.log"))
            .unwrap();
        std::io::Write::write_all(&mut f, chunk.as_bytes()).unwrap();
        written += chunk.len() as u64;
        node.flush();
        std::thread::sleep(Duration::from_millis(400));
    }
    let status = eventually(Duration::from_secs(20), || {
        let v = node.logs();
        (v["sources"][0]["dropped_bytes"].as_u64()? > 0
            && v["sources"][0]["active_bytes"] == 0
            && node.journal()["segments"]
                .as_array()?
                .iter()
                .all(|s| s["state"] == "compressed"))
        .then_some(v)
    })
    .unwrap_or_else(|| panic!("no drop: {}", node.logs()));
    let dropped = status["sources"][0]["dropped_bytes"].as_u64().unwrap();
    let kept: u64 = node.journal()["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "engine")
        .map(|s| s["raw_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        dropped + kept,
        written,
        "every byte written is either queued or counted as dropped"
    );
    assert_eq!(
        node.metric("keyfleet_logship_dropped_bytes_total{source=\"engine\"}"),
        Some(dropped as f64)
    );
    assert!(
        node.metric("keyfleet_errors_total{code=\"logship_budget_dropped\"}")
            .unwrap()
            >= 1.0
    );
    assert!(status["budget"]["used_bytes"].as_u64().unwrap() <= budget);
    let on_disk: u64 = std::fs::read_dir(node.path("logs/segments/engine"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        on_disk <= budget,
        "{on_disk} bytes on disk, budget {budget}"
    );

    // With on_budget_full = "keep", nothing is dropped: the error and the gauge say so.
    let keep = Node::start(
        &nowhere,
        &format!(
            "max_local_bytes = {budget}\non_budget_full = \"keep\"\n[logs.rotate]\nmax_size = \"16KiB\"\n"
        ),
        "",
    );
    for round in 0..8 {
        let chunk = noise(round, &mut x);
        std::fs::write(keep.path("logs/engine.log"), chunk).unwrap();
        keep.flush();
        std::thread::sleep(Duration::from_millis(400));
    }
    let full = eventually(Duration::from_secs(20), || {
        let v = keep.logs();
        (v["budget"]["full"] == true).then_some(v)
    })
    .unwrap_or_else(|| panic!("budget never full: {}", keep.logs()));
    assert_eq!(full["sources"][0]["dropped_bytes"], 0);
    assert_eq!(keep.metric("keyfleet_logship_budget_full"), Some(1.0));
    assert!(full["budget"]["used_bytes"].as_u64().unwrap() > budget);
}

/// About 24 KiB of hex lines that compress to about half: the budget fills with
/// compressed segments too.
fn noise(round: u32, x: &mut u64) -> String {
    (0..600)
        .map(|i| {
            *x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("r{round}-{i} {:016x}{:016x}\n", *x, x.rotate_left(17))
        })
        .collect()
}

#[test]
fn wrong_credentials_a_missing_bucket_and_a_garbage_store_have_their_codes() {
    let Some(s3) =
        S3Server::start("wrong_credentials_a_missing_bucket_and_a_garbage_store_have_their_codes")
    else {
        return;
    };
    let cases = [
        ("s3_access_denied", s3.endpoint(), "", true),
        (
            "s3_no_such_bucket",
            s3.endpoint(),
            "bucket = \"no-such-bucket\"\n",
            false,
        ),
        (
            "s3_bad_response",
            format!("http://127.0.0.1:{}", garbage_server()),
            "",
            false,
        ),
    ];
    for (code, endpoint, s3_extra, wrong_secret) in cases {
        let node = Node::start(&endpoint, "", s3_extra);
        if wrong_secret {
            // Credentials are read at start: a wrong secret, then a restart.
            let mut node = node;
            std::fs::write(node.path("sk"), "not-the-secret").unwrap();
            node.kill_daemon();
            node.start_daemon();
            check_error(&node, code);
            continue;
        }
        check_error(&node, code);
    }
}

fn check_error(node: &Node, code: &str) {
    node.engine_log(&["something to ship".to_owned()]);
    node.flush();
    let v = eventually(Duration::from_secs(20), || {
        let v = node.logs();
        (v["last_error"]["code"] == code).then_some(v)
    })
    .unwrap_or_else(|| panic!("expected {code}: {}", node.logs()));
    let message = v["last_error"]["message"].as_str().unwrap();
    assert!(
        !message.contains(SECRET_KEY) && !message.contains("X-Amz-Signature"),
        "{message}"
    );
    assert!(
        node.metric(&format!("keyfleet_errors_total{{code=\"{code}\"}}"))
            .unwrap()
            >= 1.0
    );
    // Still serving, and the segment is still queued, not lost.
    assert_eq!(get(&format!("{}/api/v1/node", node.api)).unwrap().0, 200);
    assert!(
        v["sources"][0]["queued_segments"].as_u64().unwrap() >= 1,
        "{v}"
    );
}

#[test]
fn an_https_store_is_verified_against_the_ca_certificates_given() {
    let Some(s3) = S3Server::start("an_https_store_is_verified_against_the_ca_certificates_given")
    else {
        return;
    };
    let tls_dir = tempfile::tempdir().unwrap();
    let Some((port, ca, mut front)) = tls_front(tls_dir.path(), s3.port) else {
        skip!(
            "skipped an_https_store_is_verified_against_the_ca_certificates_given: no openssl or python3"
        );
        return;
    };
    let endpoint = format!("https://127.0.0.1:{port}");
    // The system's CA certificates do not know this store's: refused, and said so.
    let mut node = Node::start(&endpoint, "", "");
    check_error(&node, "s3_unreachable");
    let message = node.logs()["last_error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    // Trusting its CA (SSL_CERT_FILE), the same queue ships over TLS.
    node.env
        .push(("SSL_CERT_FILE".into(), ca.display().to_string()));
    node.kill_daemon();
    node.start_daemon();
    node.engine_log(&["over-tls".to_owned()]);
    node.flush();
    node.wait_shipped(Duration::from_secs(30));
    let lines = shipped_lines(&s3.objects("solo/engine/"));
    assert!(
        lines.iter().any(|l| l.contains("something to ship")),
        "the segment queued while refused"
    );
    assert!(lines.iter().any(|l| l.contains("over-tls")));
    let _ = front.kill();
    let _ = front.wait();
}
