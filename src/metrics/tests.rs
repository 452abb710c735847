//! Rendering checked against promtool, for every family and series keyfleet adds, and
//! for a node whose engine is down; the comparison with redis_exporter's own output is
//! in `exporter_tests.rs`.

use super::*;
use crate::config::EngineKind;
use crate::engine::{NodeError, PeerRef};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

const ALL_UP: &str = include_str!("../../fixtures/info/keydb-6.3.4-multimaster-all-up.info");
const ONE_DOWN: &str =
    include_str!("../../fixtures/info/keydb-6.3.4-multimaster-one-peer-down.info");
const PRIMARY: &str = include_str!("../../fixtures/info/redis-7.0.15-primary-with-replica.info");
const EXPORTER: &str = include_str!("../../fixtures/redis_exporter-1.45-against-keydb-6.3.4.prom");

fn peers() -> Vec<PeerRef> {
    [("node2", 7102), ("node3", 7103)]
        .map(|(name, port)| PeerRef {
            name: name.into(),
            host: "127.0.0.1".into(),
            engine_port: port,
            replication_port: port,
        })
        .to_vec()
}

fn render(text: &str) -> (Metrics, String) {
    let metrics = Metrics::new();
    let text = render_with(&metrics, text);
    (metrics, text)
}

/// One scrape of `metrics` over an INFO capture, as node1 of a KeyDB fleet.
fn render_with(metrics: &Metrics, text: &str) -> String {
    let info = Info::parse(text).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_795_374_626);
    let status = NodeStatus::from_info("node1", EngineKind::Keydb, &info, &peers(), at);
    metrics.render(&status, Some(&info))
}

struct Parsed {
    /// `name{a="x",b="y"}` (labels sorted) to value.
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    label_names: BTreeMap<String, BTreeSet<String>>,
}

/// Enough of the text format to read both outputs: no timestamps, no commas or braces
/// inside label values.
fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
        label_names: BTreeMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            parsed.types.insert(name.into(), kind.into());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut pairs: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
        pairs.sort();
        let names = pairs
            .iter()
            .map(|p| p.split_once('=').unwrap().0.to_owned());
        parsed
            .label_names
            .entry(name.into())
            .or_default()
            .extend(names);
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        parsed
            .samples
            .insert(format!("{name}{{{}}}", pairs.join(",")), value);
    }
    parsed
}

fn family_of(series: &str) -> &str {
    series.split('{').next().unwrap()
}

#[test]
fn required_series_are_present() {
    let (metrics, _) = render(ALL_UP);
    metrics.record_error("engine_timeout");
    metrics.record_error("engine_timeout");
    metrics.observe_info_duration(Duration::from_millis(3));
    let text = render_with(&metrics, ONE_DOWN);
    let parsed = parse(&text);
    let value = |series: &str| {
        *parsed
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    for (series, expected) in [
        ("redis_up{}", 1.0),
        ("redis_uptime_in_seconds{}", 7.0),
        ("redis_connected_clients{}", 2.0),
        ("redis_blocked_clients{}", 0.0),
        ("redis_memory_used_bytes{}", 2_827_376.0),
        ("redis_memory_used_rss_bytes{}", 8_974_336.0),
        ("redis_memory_max_bytes{}", 0.0),
        ("redis_db_keys{db=\"db0\"}", 2.0),
        ("redis_db_keys{db=\"db2\"}", 1.0),
        ("redis_db_keys_expiring{db=\"db2\"}", 0.0),
        ("redis_commands_processed_total{}", 38.0),
        ("redis_connections_received_total{}", 7.0),
        ("redis_keyspace_hits_total{}", 0.0),
        ("redis_keyspace_misses_total{}", 0.0),
        ("redis_expired_keys_total{}", 0.0),
        ("redis_evicted_keys_total{}", 0.0),
        ("redis_instantaneous_ops_per_sec{}", 0.0),
        (
            "redis_master_link_up{master_host=\"127.0.0.1\",master_port=\"7102\"}",
            1.0,
        ),
        (
            "redis_master_link_up{master_host=\"127.0.0.1\",master_port=\"7103\"}",
            0.0,
        ),
        (
            "redis_master_last_io_seconds_ago{master_host=\"127.0.0.1\",master_port=\"7103\"}",
            -1.0,
        ),
        (
            "redis_slave_repl_offset{master_host=\"127.0.0.1\",master_port=\"7103\"}",
            698.0,
        ),
        ("redis_connected_slaves{}", 1.0),
        (
            "redis_connected_slave_offset_bytes{slave_ip=\"127.0.0.1\",slave_port=\"7102\",slave_state=\"online\"}",
            496.0,
        ),
        (
            "redis_connected_slave_lag_seconds{slave_ip=\"127.0.0.1\",slave_port=\"7102\",slave_state=\"online\"}",
            0.0,
        ),
        ("redis_replication_backlog_bytes{}", 1_048_576.0),
        ("redis_rdb_last_save_timestamp_seconds{}", 1_795_374_622.0),
        ("redis_rdb_changes_since_last_save{}", 3.0),
        ("redis_aof_enabled{}", 0.0),
        ("redis_commands_total{cmd=\"info\"}", 1.0),
        (
            "redis_commands_duration_seconds_total{cmd=\"info\"}",
            0.000153,
        ),
        ("redis_net_input_bytes_total{}", 3008.0),
        ("redis_net_output_bytes_total{}", 7539.0),
        ("redis_mem_fragmentation_ratio{}", 3.30),
        ("redis_start_time_seconds{}", 1_795_374_622.0),
        ("keyfleet_master_global_link_up{}", 0.0),
        ("keyfleet_connected_masters{}", 1.0),
        ("keyfleet_peer_link_up{peer=\"node2\"}", 1.0),
        ("keyfleet_peer_link_up{peer=\"node3\"}", 0.0),
        ("keyfleet_peer_link_down_seconds{peer=\"node3\"}", 3.0),
        ("keyfleet_peer_last_io_seconds{peer=\"node2\"}", 4.0),
        ("keyfleet_errors_total{code=\"engine_timeout\"}", 2.0),
        ("keyfleet_polls_total{}", 1.0),
        ("keyfleet_engine_info_duration_seconds{}", 0.003),
        ("keyfleet_node_info{engine=\"keydb\",node=\"node1\"}", 1.0),
    ] {
        assert_eq!(value(series), expected, "{series}");
    }
    assert!(
        !parsed
            .samples
            .contains_key("keyfleet_peer_link_down_seconds{peer=\"node2\"}")
    );
    assert!(
        !parsed
            .samples
            .contains_key("keyfleet_peer_last_io_seconds{peer=\"node3\"}")
    );
    let info_labels = &parsed.label_names["redis_instance_info"];
    assert_eq!(
        info_labels,
        &parse(EXPORTER).label_names["redis_instance_info"]
    );
    assert!(text.contains("role=\"active-replica\"") && text.contains("redis_version=\"6.3.4\""));
}

#[test]
fn redis_primary_reports_its_replica() {
    let text = render(PRIMARY).1;
    assert!(text.contains(
        "redis_connected_slave_offset_bytes{slave_ip=\"127.0.0.1\",slave_port=\"7202\",slave_state=\"wait_bgsave\"} 0\n"
    ));
    assert!(!text.contains("redis_master_link_up"));
    assert!(!text.contains("keyfleet_master_global_link_up"));
    assert!(text.contains("redis_db_keys{db=\"db3\"} 1\n"));
    assert!(text.contains("redis_db_avg_ttl_seconds{db=\"db0\"} 0\n"));
}

#[test]
fn engine_down_renders_redis_up_zero() {
    let status = NodeStatus::down(
        "node1",
        EngineKind::Keydb,
        NodeError {
            code: "engine_unreachable",
            message: "refused".into(),
        },
        &peers(),
        SystemTime::now(),
    );
    let metrics = Metrics::new();
    metrics.record_error("engine_unreachable");
    let text = metrics.render(&status, None);
    let parsed = parse(&text);
    assert_eq!(parsed.samples["redis_up{}"], 0.0);
    assert!(!text.contains("redis_memory_used_bytes"));
    assert_eq!(parsed.samples["keyfleet_peer_link_up{peer=\"node3\"}"], 0.0);
    assert_eq!(
        parsed.samples["keyfleet_errors_total{code=\"engine_unreachable\"}"],
        1.0
    );
    promtool_check(&text);
}

#[test]
fn every_family_has_one_header_and_contiguous_samples() {
    for fixture in [ALL_UP, ONE_DOWN, PRIMARY] {
        let text = render(fixture).1;
        let mut seen = BTreeSet::new();
        let mut current = "";
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let family = family_of(line.split(' ').next().unwrap());
            if family != current {
                assert!(seen.insert(family.to_owned()), "{family} is split");
                current = family;
            }
        }
        assert_eq!(text.matches("# TYPE ").count(), seen.len());
    }
}

#[test]
fn promtool_accepts_the_output() {
    for fixture in [ALL_UP, ONE_DOWN, PRIMARY] {
        promtool_check(&render(fixture).1);
    }
}

/// `promtool check metrics` reads the exposition on stdin; skipped without promtool.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        {
            use std::io::Write as _;
            // Past libtest's capture, so the skip shows in every run.
            let _ = writeln!(std::io::stderr(), "skipped: promtool is not on PATH");
        }
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool's lint flags non-base units and `_total` on the wrong type; the names it
    // flags must be redis_exporter's own, kept so that existing dashboards work. Anything
    // else (a parse error, a lint hit on a name of ours) fails.
    let exporter = parse(EXPORTER);
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let name = l.split(' ').next().unwrap_or("");
            !(exporter.types.contains_key(name) || NEWER_EXPORTER_NAMES.contains(&name))
        })
        .collect();
    assert!(problems.is_empty(), "promtool:\n{report}");
    if !out.status.success() {
        println!("promtool lint notes on redis_exporter names only:\n{report}");
    }
}

/// redis_exporter names newer than the 1.45 capture.
const NEWER_EXPORTER_NAMES: &[&str] = &["redis_instantaneous_ops_per_sec"];

#[path = "exporter_tests.rs"]
mod exporter;
