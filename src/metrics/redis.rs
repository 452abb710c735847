//! The `redis_*` metrics: the subset of redis_exporter's that an INFO reply gives, under
//! redis_exporter's names, types and labels, so existing Redis dashboards and alert rules
//! work unchanged. It reads a parsed `Info` only; keyfleet's own figures live in `mod.rs`.

use super::text::{Exposition, Family};
use crate::engine::Info;
use std::collections::HashMap;

/// How an INFO value becomes a sample value.
#[derive(Debug, Clone, Copy)]
enum Conv {
    /// The number as the engine wrote it.
    Same,
    /// `ok` is 1, anything else 0.
    Status,
    /// Microseconds to seconds.
    Micros,
}

use Conv::{Micros, Same, Status};

macro_rules! gauge {
    ($key:literal, $name:literal, $help:literal) => {
        ($key, Family::gauge(concat!("redis_", $name), $help), Same)
    };
    ($key:literal, $name:literal, $help:literal, $conv:expr) => {
        ($key, Family::gauge(concat!("redis_", $name), $help), $conv)
    };
}

macro_rules! counter {
    ($key:literal, $name:literal, $help:literal) => {
        ($key, Family::counter(concat!("redis_", $name), $help), Same)
    };
}

/// One family per INFO field, in exposition order.
#[rustfmt::skip]
const FIELDS: &[(&str, Family, Conv)] = &[
    gauge!("process_id", "process_id", "Process id of the engine."),
    gauge!("uptime_in_seconds", "uptime_in_seconds", "Seconds since the engine started."),
    gauge!("connected_clients", "connected_clients", "Client connections, replicas excluded."),
    gauge!("blocked_clients", "blocked_clients", "Clients waiting in a blocking call."),
    gauge!("tracking_clients", "tracking_clients", "Clients with client-side caching tracking on."),
    gauge!("clients_in_timeout_table", "clients_in_timeout_table", "Blocked clients with a timeout."),
    gauge!("cluster_connections", "cluster_connections", "Cluster bus connections."),
    gauge!("client_recent_max_input_buffer", "client_recent_max_input_buffer_bytes", "Largest recent client input buffer."),
    gauge!("client_recent_max_output_buffer", "client_recent_max_output_buffer_bytes", "Largest recent client output buffer."),
    gauge!("current_client_thread", "current_client_thread", "KeyDB: the thread serving this INFO call."),
    gauge!("used_memory", "memory_used_bytes", "Bytes allocated by the engine."),
    gauge!("used_memory_rss", "memory_used_rss_bytes", "Resident set size of the engine process."),
    gauge!("used_memory_peak", "memory_used_peak_bytes", "Peak of memory_used_bytes."),
    gauge!("used_memory_overhead", "memory_used_overhead_bytes", "Bytes spent on the engine's own structures."),
    gauge!("used_memory_startup", "memory_used_startup_bytes", "Bytes allocated at start-up."),
    gauge!("used_memory_dataset", "memory_used_dataset_bytes", "Bytes holding the data set."),
    gauge!("used_memory_lua", "memory_used_lua_bytes", "Bytes used by the Lua engine."),
    gauge!("used_memory_scripts", "memory_used_scripts_bytes", "Bytes used by cached scripts."),
    gauge!("maxmemory", "memory_max_bytes", "The maxmemory setting; 0 is unlimited."),
    gauge!("allocator_allocated", "allocator_allocated_bytes", "Bytes allocated by the allocator."),
    gauge!("allocator_active", "allocator_active_bytes", "Bytes in the allocator's active pages."),
    gauge!("allocator_resident", "allocator_resident_bytes", "Bytes resident in the allocator."),
    gauge!("allocator_frag_ratio", "allocator_frag_ratio", "Allocator fragmentation ratio."),
    gauge!("allocator_frag_bytes", "allocator_frag_bytes", "Allocator fragmentation in bytes."),
    gauge!("allocator_rss_ratio", "allocator_rss_ratio", "Allocator resident to active ratio."),
    gauge!("allocator_rss_bytes", "allocator_rss_bytes", "Allocator resident minus active bytes."),
    gauge!("mem_fragmentation_ratio", "mem_fragmentation_ratio", "RSS divided by used memory."),
    gauge!("mem_fragmentation_bytes", "mem_fragmentation_bytes", "RSS minus used memory."),
    gauge!("mem_not_counted_for_evict", "mem_not_counted_for_eviction_bytes", "Bytes not counted for eviction."),
    gauge!("mem_clients_slaves", "mem_clients_slaves", "Bytes used by replica connections."),
    gauge!("mem_clients_normal", "mem_clients_normal", "Bytes used by client connections."),
    gauge!("number_of_cached_scripts", "number_of_cached_scripts", "Cached Lua scripts."),
    gauge!("active_defrag_running", "active_defrag_running", "Whether active defragmentation runs."),
    gauge!("lazyfree_pending_objects", "lazyfree_pending_objects", "Objects waiting to be freed."),
    gauge!("loading", "loading_dump_file", "Whether a dump file is being loaded."),
    gauge!("rdb_changes_since_last_save", "rdb_changes_since_last_save", "Changes since the last RDB save."),
    gauge!("rdb_bgsave_in_progress", "rdb_bgsave_in_progress", "Whether a BGSAVE runs."),
    gauge!("rdb_last_save_time", "rdb_last_save_timestamp_seconds", "Unix time of the last successful RDB save."),
    gauge!("rdb_last_bgsave_status", "rdb_last_bgsave_status", "1 if the last BGSAVE succeeded.", Status),
    gauge!("rdb_last_bgsave_time_sec", "rdb_last_bgsave_duration_sec", "Seconds the last BGSAVE took; -1 if none."),
    gauge!("rdb_current_bgsave_time_sec", "rdb_current_bgsave_duration_sec", "Seconds the running BGSAVE has taken; -1 if none."),
    gauge!("rdb_last_cow_size", "rdb_last_cow_size_bytes", "Copy-on-write bytes of the last RDB save."),
    gauge!("aof_enabled", "aof_enabled", "Whether the append-only file is on."),
    gauge!("aof_rewrite_in_progress", "aof_rewrite_in_progress", "Whether an AOF rewrite runs."),
    gauge!("aof_rewrite_scheduled", "aof_rewrite_scheduled", "Whether an AOF rewrite is scheduled."),
    gauge!("aof_last_rewrite_time_sec", "aof_last_rewrite_duration_sec", "Seconds the last AOF rewrite took; -1 if none."),
    gauge!("aof_current_rewrite_time_sec", "aof_current_rewrite_duration_sec", "Seconds the running AOF rewrite has taken."),
    gauge!("aof_last_bgrewrite_status", "aof_last_bgrewrite_status", "1 if the last AOF rewrite succeeded.", Status),
    gauge!("aof_last_write_status", "aof_last_write_status", "1 if the last AOF write succeeded.", Status),
    gauge!("aof_last_cow_size", "aof_last_cow_size_bytes", "Copy-on-write bytes of the last AOF rewrite."),
    gauge!("module_fork_in_progress", "module_fork_in_progress", "Whether a module fork runs."),
    gauge!("module_fork_last_cow_size", "module_fork_last_cow_size", "Copy-on-write bytes of the last module fork."),
    counter!("total_connections_received", "connections_received_total", "Connections accepted."),
    counter!("total_commands_processed", "commands_processed_total", "Commands processed."),
    gauge!("instantaneous_ops_per_sec", "instantaneous_ops_per_sec", "Commands per second, as the engine samples it."),
    gauge!("instantaneous_input_kbps", "instantaneous_input_kbps", "Network input in KiB/s, as the engine samples it."),
    gauge!("instantaneous_output_kbps", "instantaneous_output_kbps", "Network output in KiB/s, as the engine samples it."),
    counter!("total_net_input_bytes", "net_input_bytes_total", "Bytes read from the network."),
    counter!("total_net_output_bytes", "net_output_bytes_total", "Bytes written to the network."),
    counter!("total_net_repl_input_bytes", "net_repl_input_bytes_total", "Replication bytes read from the network."),
    counter!("total_net_repl_output_bytes", "net_repl_output_bytes_total", "Replication bytes written to the network."),
    counter!("rejected_connections", "rejected_connections_total", "Connections refused for maxclients."),
    gauge!("sync_full", "replica_resyncs_full", "Full resynchronisations with replicas."),
    gauge!("sync_partial_ok", "replica_partial_resync_accepted", "Partial resynchronisations accepted."),
    gauge!("sync_partial_err", "replica_partial_resync_denied", "Partial resynchronisations denied."),
    counter!("expired_keys", "expired_keys_total", "Keys expired."),
    gauge!("expired_stale_perc", "expired_stale_percentage", "Estimated share of expired keys not yet removed."),
    gauge!("expired_time_cap_reached_count", "expired_time_cap_reached_total", "Expiry cycles stopped by their time cap."),
    counter!("evicted_keys", "evicted_keys_total", "Keys evicted for maxmemory."),
    counter!("keyspace_hits", "keyspace_hits_total", "Successful key look-ups."),
    counter!("keyspace_misses", "keyspace_misses_total", "Failed key look-ups."),
    gauge!("pubsub_channels", "pubsub_channels", "Pub/sub channels with subscribers."),
    gauge!("pubsub_patterns", "pubsub_patterns", "Pub/sub pattern subscriptions."),
    gauge!("latest_fork_usec", "latest_fork_seconds", "Seconds the latest fork took.", Micros),
    gauge!("migrate_cached_sockets", "migrate_cached_sockets_total", "Sockets cached for MIGRATE."),
    gauge!("slave_expires_tracked_keys", "slave_expires_tracked_keys", "Keys tracked for expiry on a writable replica."),
    gauge!("active_defrag_hits", "defrag_hits", "Values moved by active defragmentation."),
    gauge!("active_defrag_misses", "defrag_misses", "Values active defragmentation skipped."),
    gauge!("active_defrag_key_hits", "defrag_key_hits", "Keys defragmented."),
    gauge!("active_defrag_key_misses", "defrag_key_misses", "Keys defragmentation skipped."),
    gauge!("tracking_total_keys", "tracking_total_keys", "Keys tracked for client-side caching."),
    gauge!("tracking_total_items", "tracking_total_items", "Items tracked for client-side caching."),
    gauge!("tracking_total_prefixes", "tracking_total_prefixes", "Prefixes tracked for client-side caching."),
    counter!("unexpected_error_replies", "unexpected_error_replies", "Error replies of unexpected kinds."),
    counter!("total_error_replies", "total_error_replies", "Error replies sent."),
    counter!("dump_payload_sanitizations", "dump_payload_sanitizations", "Deep sanitizations of dump payloads."),
    counter!("total_reads_processed", "total_reads_processed", "Read events processed."),
    counter!("total_writes_processed", "total_writes_processed", "Write events processed."),
    counter!("storage_provider_read_hits", "storage_provider_read_hits", "KeyDB: reads served by the storage provider."),
    counter!("storage_provider_read_misses", "storage_provider_read_misses", "KeyDB: reads missed by the storage provider."),
    gauge!("connected_slaves", "connected_slaves", "Replicas connected to this node."),
    gauge!("repl_backlog_size", "replication_backlog_bytes", "Size of the replication backlog."),
    gauge!("repl_backlog_active", "repl_backlog_is_active", "Whether the replication backlog is on."),
    gauge!("repl_backlog_first_byte_offset", "repl_backlog_first_byte_offset", "Replication offset of the backlog's first byte."),
    gauge!("repl_backlog_histlen", "repl_backlog_history_bytes", "Bytes of data in the replication backlog."),
    gauge!("master_repl_offset", "master_repl_offset", "This node's replication offset."),
    gauge!("second_repl_offset", "second_repl_offset", "Offset up to which the previous replication ID is accepted."),
    gauge!("slave_priority", "slave_priority", "Replica priority for failover."),
    counter!("used_cpu_sys", "cpu_sys_seconds_total", "System CPU seconds of the engine."),
    counter!("used_cpu_user", "cpu_user_seconds_total", "User CPU seconds of the engine."),
    counter!("used_cpu_sys_children", "cpu_sys_children_seconds_total", "System CPU seconds of forked children."),
    counter!("used_cpu_user_children", "cpu_user_children_seconds_total", "User CPU seconds of forked children."),
    counter!("used_cpu_sys_main_thread", "cpu_sys_main_thread_seconds_total", "System CPU seconds of the main thread."),
    counter!("used_cpu_user_main_thread", "cpu_user_main_thread_seconds_total", "User CPU seconds of the main thread."),
    gauge!("server_threads", "server_threads_total", "KeyDB: worker threads."),
    gauge!("long_lock_waits", "long_lock_waits_total", "KeyDB: long waits for the global lock."),
    gauge!("io_threads_active", "io_threads_active", "Redis: whether I/O threads are on."),
    gauge!("cluster_enabled", "cluster_enabled", "Whether cluster mode is on."),
];

pub const UP: Family = Family::gauge("redis_up", "Whether the engine answered INFO.");
const START: Family = Family::gauge("redis_start_time_seconds", "Unix time the engine started.");
const INSTANCE: Family = Family::gauge(
    "redis_instance_info",
    "Information about the engine instance.",
);
const LINK_UP: Family = Family::gauge(
    "redis_master_link_up",
    "Whether the link to this master is up.",
);
const LAST_IO: Family = Family::gauge(
    "redis_master_last_io_seconds_ago",
    "Seconds since the last I/O with this master; -1 while down.",
);
const SYNCING: Family = Family::gauge(
    "redis_master_sync_in_progress",
    "Whether a sync from this master runs.",
);
const SLAVE_OFFSET: Family = Family::gauge(
    "redis_slave_repl_offset",
    "Replication offset from this master.",
);
const REPLICA_LAG: Family = Family::gauge(
    "redis_connected_slave_lag_seconds",
    "Seconds since this replica's last ack.",
);
const REPLICA_OFFSET: Family = Family::gauge(
    "redis_connected_slave_offset_bytes",
    "Replication offset of this replica.",
);
const DB_KEYS: Family = Family::gauge("redis_db_keys", "Keys in this database.");
const DB_EXPIRING: Family = Family::gauge(
    "redis_db_keys_expiring",
    "Keys with an expiry in this database.",
);
const DB_TTL: Family = Family::gauge(
    "redis_db_avg_ttl_seconds",
    "Average TTL of expiring keys in this database.",
);
const DB_CACHED: Family = Family::gauge(
    "redis_db_keys_cached",
    "KeyDB: keys of this database held in memory.",
);
const CMD_CALLS: Family = Family::counter("redis_commands_total", "Calls of this command.");
const CMD_SECONDS: Family = Family::counter(
    "redis_commands_duration_seconds_total",
    "Seconds spent in this command.",
);
const CMD_REJECTED: Family = Family::counter(
    "redis_commands_rejected_calls_total",
    "Calls of this command rejected before running.",
);
const CMD_FAILED: Family = Family::counter(
    "redis_commands_failed_calls_total",
    "Calls of this command that failed while running.",
);
const ERRORS: Family = Family::counter("redis_errors_total", "Error replies by error prefix.");

/// Labels of `redis_instance_info`, as redis_exporter 1.45 sets them.
const INSTANCE_LABELS: [&str; 9] = [
    "maxmemory_policy",
    "os",
    "process_id",
    "redis_build_id",
    "redis_mode",
    "redis_version",
    "role",
    "run_id",
    "tcp_port",
];

/// Maps INFO keys to their row in `FIELDS`, built once per registry.
pub struct FieldIndex(HashMap<&'static str, usize>);

impl FieldIndex {
    pub fn new() -> FieldIndex {
        FieldIndex(
            FIELDS
                .iter()
                .enumerate()
                .map(|(i, (key, _, _))| (*key, i))
                .collect(),
        )
    }
}

/// Every `redis_*` sample of one INFO reply.
/// `databases`: how many the engine has; each gets `redis_db_keys` and
/// `redis_db_keys_expiring`, 0 when INFO does not list it (as redis_exporter does).
pub fn render(out: &mut Exposition, index: &FieldIndex, info: &Info, databases: u32) {
    out.sample(&UP, &[], 1.0);
    // One pass over the reply fills a slot per field; the first value of a repeated key wins.
    let mut values: Vec<Option<&str>> = vec![None; FIELDS.len()];
    for e in info.entries() {
        if let Some(&i) = index.0.get(e.key) {
            values[i].get_or_insert(e.value);
        }
    }
    for ((_, family, conv), value) in FIELDS.iter().zip(values) {
        let Some(value) = value else { continue };
        match conv {
            Same => {
                out.sample_text(family, &[], value);
            }
            Status => out.sample(family, &[], if value == "ok" { 1.0 } else { 0.0 }),
            Micros => {
                if let Ok(v) = value.parse::<f64>() {
                    out.sample(family, &[], v / 1e6);
                }
            }
        }
    }
    if let (Some(now), Some(uptime)) = (
        info.get_u64("server_time_usec"),
        info.get_u64("uptime_in_seconds"),
    ) {
        out.sample(&START, &[], (now / 1_000_000).saturating_sub(uptime) as f64);
    }
    let labels = INSTANCE_LABELS.map(|key| (key, info.get(key).unwrap_or("")));
    out.sample(&INSTANCE, &labels, 1.0);
    replication(out, info);
    keyspace(out, info, databases);
    commands(out, info);
}

fn replication(out: &mut Exposition, info: &Info) {
    let masters = info.masters();
    let ports: Vec<String> = masters.iter().map(|m| m.port.to_string()).collect();
    let labels = |i: usize| {
        [
            ("master_host", masters[i].host),
            ("master_port", ports[i].as_str()),
        ]
    };
    for (i, m) in masters.iter().enumerate() {
        out.sample(&LINK_UP, &labels(i), if m.link_up { 1.0 } else { 0.0 });
    }
    for (i, m) in masters.iter().enumerate() {
        if let Some(v) = m.last_io_seconds_ago {
            out.sample(&LAST_IO, &labels(i), v as f64);
        }
    }
    for (i, m) in masters.iter().enumerate() {
        out.sample(
            &SYNCING,
            &labels(i),
            if m.sync_in_progress { 1.0 } else { 0.0 },
        );
    }
    for (i, m) in masters.iter().enumerate() {
        if let Some(v) = m.repl_offset {
            out.sample(&SLAVE_OFFSET, &labels(i), v as f64);
        }
    }
    let replicas: Vec<_> = info.replicas().collect();
    let ports: Vec<String> = replicas.iter().map(|r| r.port.to_string()).collect();
    let labels = |i: usize| {
        let r = &replicas[i];
        [
            ("slave_ip", r.ip),
            ("slave_port", ports[i].as_str()),
            ("slave_state", r.state),
        ]
    };
    for (i, replica) in replicas.iter().enumerate() {
        // Like redis_exporter: engines too old to report lag get no lag sample.
        if let Some(lag) = replica.lag.filter(|lag| *lag > -1) {
            out.sample(&REPLICA_LAG, &labels(i), lag as f64);
        }
    }
    for (i, replica) in replicas.iter().enumerate() {
        out.sample(&REPLICA_OFFSET, &labels(i), replica.offset as f64);
    }
}

fn keyspace(out: &mut Exposition, info: &Info, databases: u32) {
    let dbs: Vec<_> = info.dbs().map(|d| (d, format!("db{}", d.db))).collect();
    // Every database, listed in INFO or not, so that an empty one reads 0, not "no data".
    let mut all: Vec<(String, u64, u64)> = (0..databases)
        .map(|n| {
            let listed = dbs.iter().find(|(d, _)| d.db == n);
            let (keys, expires) = listed.map_or((0, 0), |(d, _)| (d.keys, d.expires));
            (format!("db{n}"), keys, expires)
        })
        .collect();
    all.extend(
        dbs.iter()
            .filter(|(d, _)| d.db >= databases)
            .map(|(d, db)| (db.clone(), d.keys, d.expires)),
    );
    for (db, keys, _) in &all {
        out.sample(&DB_KEYS, &[("db", db)], *keys as f64);
    }
    for (db, _, expires) in &all {
        out.sample(&DB_EXPIRING, &[("db", db)], *expires as f64);
    }
    for (d, db) in &dbs {
        out.sample(&DB_TTL, &[("db", db)], d.avg_ttl_ms as f64 / 1000.0);
    }
    for (d, db) in &dbs {
        if let Some(cached) = d.cached_keys {
            out.sample(&DB_CACHED, &[("db", db)], cached as f64);
        }
    }
}

fn commands(out: &mut Exposition, info: &Info) {
    let stats: Vec<_> = info.cmdstats().collect();
    for c in &stats {
        out.sample(&CMD_CALLS, &[("cmd", c.command)], c.calls as f64);
    }
    for c in &stats {
        out.sample(&CMD_SECONDS, &[("cmd", c.command)], c.usec as f64 / 1e6);
    }
    for c in &stats {
        if let Some(n) = c.rejected_calls {
            out.sample(&CMD_REJECTED, &[("cmd", c.command)], n as f64);
        }
    }
    for c in &stats {
        if let Some(n) = c.failed_calls {
            out.sample(&CMD_FAILED, &[("cmd", c.command)], n as f64);
        }
    }
    for e in info.entries() {
        let Some(prefix) = e.key.strip_prefix("errorstat_") else {
            continue;
        };
        let Some(count) = e
            .value
            .strip_prefix("count=")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.sample(&ERRORS, &[("err", prefix)], count as f64);
    }
}
