//! Log shipping end to end: a real engine and a real daemon ship to a real S3 server
//! (s3s-fs) on loopback, and the test reads what landed from the server's own files.

use crate::fixture::*;
use crate::net_fixture::*;
use crate::s3_fixture::*;
use std::time::Duration;

/// The marker tokens (`eng-R-I`, `/api/v1/test-R`) found in `lines`, in order.
fn markers(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let at = l.find(prefix)?;
            let rest = &l[at..];
            Some(rest[..rest.find(['"', ' ']).unwrap_or(rest.len())].to_owned())
        })
        .collect()
}

#[test]
fn every_line_of_ten_rotations_arrives_in_order_once() {
    let Some(s3) = S3Server::start("every_line_of_ten_rotations_arrives_in_order_once") else {
        return;
    };
    // Small segments, so size rotations happen between the flushes too.
    let node = Node::start(
        &s3.endpoint(),
        "[logs.rotate]\nmax_size = \"8KiB\"\n",
        "prefix = \"fleet-a\"\n",
    );
    let mut want_engine = Vec::new();
    let mut want_api = Vec::new();
    for r in 0..10 {
        let lines: Vec<String> = (0..150).map(|i| format!("eng-{r}-{i:03}")).collect();
        node.engine_log(&lines);
        want_engine.extend(lines);
        for _ in 0..15 {
            assert!(get(&format!("{}/readyz", node.api)).is_some());
        }
        // A rejected request: few enough per interval that the access log keeps it.
        let path = format!("/api/v1/test-{r}");
        assert_eq!(get(&format!("{}{path}", node.api)).unwrap().0, 404);
        want_api.push(path);
        let ticket = node.flush();
        assert!(ticket["through_seq"].is_u64(), "{ticket}");
    }
    let status = node.wait_shipped(Duration::from_secs(60));
    let engine_objects = s3.objects("fleet-a/solo/engine/");
    let access_objects = s3.objects("fleet-a/solo/access/");
    assert!(
        engine_objects.len() >= 10,
        "{} engine segments",
        engine_objects.len()
    );
    assert!(engine_objects.iter().all(|(k, _)| k.ends_with(".log.zst")));
    assert_eq!(
        markers(&shipped_lines(&engine_objects), "eng-"),
        want_engine
    );
    assert_eq!(
        markers(&shipped_lines(&access_objects), "/api/v1/test-"),
        want_api
    );
    // Every access line once and in order: their numbers run 1, 2, 3, ... with no gap,
    // and all 150 accepted requests are there.
    let access = shipped_lines(&access_objects);
    let parsed: Vec<serde_json::Value> = access
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = parsed.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        parsed.iter().filter(|l| l["route"] == "/readyz").count(),
        150
    );
    // The access log says what each request was, and nothing secret.
    let line: serde_json::Value =
        serde_json::from_str(access.iter().find(|l| l.contains("test-3")).unwrap()).unwrap();
    assert_eq!(line["status"], 404);
    assert_eq!(line["error"], "route_not_found");
    assert_eq!(line["method"], "GET");
    assert!(line["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(line["duration_ms"].is_number() && line["time"].is_string());
    // The daemon's own log ships too.
    assert!(!s3.objects("fleet-a/solo/daemon/").is_empty());
    // Figures: the API and the metrics agree with what landed.
    let engine_status = &status["sources"][0];
    assert_eq!(engine_status["source"], "engine");
    assert_eq!(
        engine_status["uploaded_segments"].as_u64().unwrap(),
        engine_objects.len() as u64
    );
    let uploaded: u64 = engine_objects.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(engine_status["uploaded_bytes"].as_u64().unwrap(), uploaded);
    assert_eq!(
        node.metric("keyfleet_logship_uploaded_bytes_total{source=\"engine\"}"),
        Some(uploaded as f64)
    );
    assert_eq!(
        node.metric("keyfleet_logship_queue_files{source=\"engine\"}"),
        Some(0.0)
    );
    assert!(
        node.metric("keyfleet_logship_last_success_timestamp_seconds")
            .unwrap()
            > 1.7e9
    );
    assert_matches_openapi(&node.api, &status);
    // Nothing left behind locally once confirmed (local_retention = 0).
    let left: Vec<_> = std::fs::read_dir(node.path("logs/segments/engine"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn shipping_resumes_after_the_store_was_down_for_a_minute() {
    let Some(mut s3) = S3Server::start("shipping_resumes_after_the_store_was_down_for_a_minute")
    else {
        return;
    };
    let node = Node::start(&s3.endpoint(), "", "");
    let before: Vec<String> = (0..50).map(|i| format!("eng-before-{i}")).collect();
    node.engine_log(&before);
    node.flush();
    node.wait_shipped(Duration::from_secs(30));

    s3.stop();
    let during: Vec<String> = (0..50).map(|i| format!("eng-during-{i}")).collect();
    node.engine_log(&during);
    node.flush();
    let failing = eventually(Duration::from_secs(20), || {
        let v = node.logs();
        (v["failing"] == true).then_some(v)
    })
    .expect("the uploader reports the outage");
    assert_eq!(failing["last_error"]["code"], "s3_unreachable", "{failing}");
    assert!(failing["oldest_pending_seq"].is_u64());
    assert!(
        node.metric("keyfleet_errors_total{code=\"s3_unreachable\"}")
            .unwrap()
            >= 1.0
    );
    // The daemon keeps serving while the store is down.
    assert_eq!(get(&format!("{}/api/v1/node", node.api)).unwrap().0, 200);
    std::thread::sleep(Duration::from_secs(60));
    let after: Vec<String> = (0..50).map(|i| format!("eng-after-{i}")).collect();
    node.engine_log(&after);
    s3.restart();
    node.flush();
    let status = node.wait_shipped(Duration::from_secs(60));
    assert_eq!(status["failing"], false, "{status}");
    let lines = shipped_lines(&s3.objects("solo/engine/"));
    let want: Vec<String> = before.into_iter().chain(during).chain(after).collect();
    assert_eq!(markers(&lines, "eng-"), want);
}

#[test]
fn a_daemon_killed_mid_multipart_upload_resumes_it_exactly_once() {
    let Some(s3) = S3Server::start("a_daemon_killed_mid_multipart_upload_resumes_it_exactly_once")
    else {
        return;
    };
    // 2 MiB/s through the relay: a 3-part upload takes seconds, time enough to kill.
    let relay = Relay::start(s3.port, 2 << 20);
    let endpoint = format!("http://127.0.0.1:{}", relay.port);
    let mut node = Node::start(&endpoint, "", "part_size = \"5MiB\"\n");
    // Hex lines, as if the engine wrote them: over 8 MiB once compressed, so two parts.
    let mut text = String::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut i = 0;
    while text.len() < 16 << 20 {
        let mut line = format!("line-{i:07} ");
        for _ in 0..12 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line += &format!("{x:016x}");
        }
        text += &line;
        text.push('\n');
        i += 1;
    }
    std::fs::write(node.path("logs/engine.log"), &text).unwrap();
    node.flush();
    let upload_id = eventually(Duration::from_secs(60), || {
        let j = node.journal();
        let seg = j["segments"]
            .as_array()?
            .iter()
            .find(|s| s["source"] == "engine")?
            .clone();
        let etags = seg["multipart"]["etags"].as_array()?.len();
        (etags >= 1).then(|| seg["multipart"]["upload_id"].as_str().unwrap().to_owned())
    })
    .expect("a multipart upload with a confirmed part");
    node.kill_daemon();
    assert_eq!(
        s3.open_uploads().len(),
        1,
        "the upload is open while the daemon is dead"
    );
    relay.set_rate(64 << 20);
    node.start_daemon();
    node.wait_shipped(Duration::from_secs(60));
    let objects = s3.objects("solo/engine/");
    assert_eq!(
        objects.len(),
        1,
        "{:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    let back = zstd::stream::decode_all(&objects[0].1[..]).unwrap();
    assert!(back == text.as_bytes(), "the object is not the segment");
    assert!(
        s3.open_uploads().is_empty(),
        "an upload was left open: {:?}",
        s3.open_uploads()
    );
    // The same upload was resumed, not a second one started.
    let lines = relay.request_lines();
    assert_eq!(
        relay.requests("POST", "uploads"),
        1,
        "CreateMultipartUpload calls: {lines:#?}"
    );
    assert_eq!(
        relay.requests("POST", &format!("uploadId={upload_id}")),
        1,
        "CompleteMultipartUpload calls: {lines:#?}"
    );
    assert!(relay.requests("PUT", "partNumber=2") >= 1, "{lines:#?}");
}

#[test]
fn a_dev_fleet_ships_to_an_s3s_fs_of_its_own() {
    // S3Server::start only checks the tools here; dev starts its own store.
    let Some(_tools) = S3Server::start("a_dev_fleet_ships_to_an_s3s_fs_of_its_own") else {
        return;
    };
    let fleet = DevFleet::start(2);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fleet.dir().join("fleet.json")).unwrap())
            .unwrap();
    assert_eq!(doc["logs_s3"]["bucket"], "keyfleet-dev", "{doc}");
    let out = keyfleet()
        .args(["logs", "flush", "--json", "--dir"])
        .arg(fleet.dir())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["nodes"].as_array().unwrap().len(), 2);
    for node in ["node1", "node2"] {
        let engine = fleet
            .dir()
            .join(format!("s3/data/keyfleet-dev/{node}/engine"));
        let mut found = Vec::new();
        collect(&engine, &engine, &mut found);
        assert!(
            !found.is_empty(),
            "nothing shipped under {}",
            engine.display()
        );
        // The engine's own start-up lines, readable with the standard decoder.
        let text = zstd::stream::decode_all(&found[0].1[..]).unwrap();
        assert!(!text.is_empty());
    }
    let status = keyfleet()
        .args(["logs", "status", "--dir"])
        .arg(fleet.dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("s3://keyfleet-dev at http://127.0.0.1:"),
        "{text}"
    );
    // The dev fleet backs up to the same store, as the README shows.
    let backup = keyfleet()
        .args(["backup", "create", "--json", "--dir"])
        .arg(fleet.dir())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&backup.stdout).unwrap_or_default();
    assert!(
        backup.status.success(),
        "{v} {}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let object = v["manifest"]["object"].as_str().unwrap();
    assert!(
        fleet
            .dir()
            .join("s3/data/keyfleet-dev")
            .join(object)
            .is_file(),
        "{object}"
    );
}

/// `/api/v1/logs` answers what the OpenAPI document says, field for field.
fn assert_matches_openapi(api: &str, logs: &serde_json::Value) {
    let (_, doc) = get(&format!("{api}/api/v1/openapi.json")).unwrap();
    for (schema, value) in [("Logs", logs), ("LogSource", &logs["sources"][0])] {
        let schema = &doc["components"]["schemas"][schema];
        for field in schema["required"].as_array().unwrap() {
            assert!(
                value.get(field.as_str().unwrap()).is_some(),
                "required `{field}` missing from {value}"
            );
        }
        for key in value.as_object().unwrap().keys() {
            assert!(
                schema["properties"].get(key).is_some(),
                "`{key}` is not in the OpenAPI schema"
            );
        }
    }
}
