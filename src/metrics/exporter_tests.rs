//! keyfleet's `redis_*` series against redis_exporter 1.45's own output for the same
//! KeyDB 6.3.4 fleet (`fixtures/`): same names, types, labels and values, so existing
//! Redis dashboards and alert rules work unchanged.

use super::*;

/// The exporter's capture and the INFO capture come from two runs of the same 3-node
/// fleet a few seconds apart (different process ids), so figures that move with time or
/// traffic differ; every other value shared by both must agree exactly.
const MOVED_BETWEEN_CAPTURES: &[&str] = &[
    "redis_instance_info",
    "redis_process_id",
    "redis_start_time_seconds",
    "redis_rdb_last_save_timestamp_seconds",
    "redis_rdb_changes_since_last_save",
    "redis_rdb_last_cow_size_bytes",
    "redis_latest_fork_seconds",
    "redis_commands_processed_total",
    "redis_connections_received_total",
    "redis_net_input_bytes_total",
    "redis_net_output_bytes_total",
    "redis_total_reads_processed",
    "redis_total_writes_processed",
    "redis_commands_total",
    "redis_commands_duration_seconds_total",
    "redis_master_last_io_seconds_ago",
    "redis_slave_repl_offset",
    "redis_connected_slave_offset_bytes",
    "redis_master_repl_offset",
    "redis_repl_backlog_history_bytes",
    "redis_db_keys",
    "redis_db_keys_cached",
    "redis_memory_used_bytes",
    "redis_memory_used_rss_bytes",
    "redis_memory_used_peak_bytes",
    "redis_memory_used_overhead_bytes",
    "redis_mem_fragmentation_bytes",
    "redis_mem_fragmentation_ratio",
    "redis_cpu_sys_seconds_total",
    "redis_cpu_user_seconds_total",
    "redis_cpu_sys_children_seconds_total",
    "redis_cpu_sys_main_thread_seconds_total",
    "redis_cpu_user_main_thread_seconds_total",
];

#[test]
fn agrees_with_redis_exporter_on_shared_series() {
    let ours = parse(&render(ALL_UP).1);
    let theirs = parse(EXPORTER);
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for (series, value) in &ours.samples {
        let Some(expected) = theirs.samples.get(series) else {
            continue;
        };
        if MOVED_BETWEEN_CAPTURES.contains(&family_of(series)) {
            continue;
        }
        compared += 1;
        if (value - expected).abs() > 1e-9 * expected.abs().max(1.0) {
            mismatches.push(format!("{series}: ours {value}, exporter {expected}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "values differ:\n{}",
        mismatches.join("\n")
    );
    assert!(compared >= 80, "only {compared} series compared");

    for (name, kind) in &ours.types {
        if let Some(theirs_kind) = theirs.types.get(name) {
            assert_eq!(kind, theirs_kind, "TYPE of {name}");
        }
        if let (Some(a), Some(b)) = (ours.label_names.get(name), theirs.label_names.get(name)) {
            assert_eq!(a, b, "label names of {name}");
        }
    }
    // Every family named in MOVED_BETWEEN_CAPTURES is still one both sides export.
    for family in MOVED_BETWEEN_CAPTURES {
        assert!(
            ours.types.contains_key(*family) && theirs.types.contains_key(*family),
            "{family}"
        );
    }
}

#[test]
fn every_database_is_listed_like_redis_exporter_does() {
    let ours = parse(&render(ALL_UP).1);
    let theirs = parse(EXPORTER);
    for family in ["redis_db_keys", "redis_db_keys_expiring"] {
        let series = |p: &Parsed| -> BTreeSet<String> {
            p.samples
                .keys()
                .filter(|s| family_of(s) == family)
                .cloned()
                .collect()
        };
        assert_eq!(series(&ours), series(&theirs), "{family}");
        assert_eq!(series(&ours).len(), 16, "{family}");
    }
    // Databases INFO does not list read 0, as the exporter's do.
    assert_eq!(ours.samples["redis_db_keys{db=\"db15\"}"], 0.0);
    assert_eq!(theirs.samples["redis_db_keys{db=\"db15\"}"], 0.0);
    assert_eq!(ours.samples["redis_db_keys_expiring{db=\"db7\"}"], 0.0);

    // An engine configured with 4 databases lists exactly db0..db3.
    let text = render_with(&Metrics::with_databases(4), ALL_UP);
    let dbs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("redis_db_keys{db=\""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert_eq!(dbs, ["db0", "db1", "db2", "db3"]);
}
