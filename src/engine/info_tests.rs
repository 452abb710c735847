//! INFO parsing on hand-written replies and on the real captures in `fixtures/info/`.

use super::*;

const ALL_UP: &str = include_str!("../../fixtures/info/keydb-6.3.4-multimaster-all-up.info");
const ONE_DOWN: &str =
    include_str!("../../fixtures/info/keydb-6.3.4-multimaster-one-peer-down.info");
const PRIMARY: &str = include_str!("../../fixtures/info/redis-7.0.15-primary-with-replica.info");

#[test]
fn empty_and_garbage_are_typed_errors() {
    assert_eq!(Info::parse("").unwrap_err(), InfoError::Empty);
    assert_eq!(Info::parse("\r\n \n").unwrap_err(), InfoError::Empty);
    assert!(matches!(
        Info::parse("-ERR nope\r\n# Server\r\n"),
        Err(InfoError::NoFields { .. })
    ));
    assert!(matches!(
        Info::parse(":\n::\n"),
        Err(InfoError::NoFields { .. })
    ));
}

#[test]
fn crlf_and_lf_parse_alike() {
    let crlf = Info::parse("# Server\r\nredis_version:7.0.15\r\nweird line\r\nx:\r\n").unwrap();
    let lf = Info::parse("# Server\nredis_version:7.0.15\nweird line\nx:\n").unwrap();
    for info in [&crlf, &lf] {
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("x"), Some(""));
        assert_eq!(info.entries().next().unwrap().section, "Server");
    }
}

#[test]
fn fixtures_are_crlf_and_keep_order_and_repeats() {
    assert!(ALL_UP.contains("\r\n"));
    let info = Info::parse(ALL_UP).unwrap();
    let offsets: Vec<_> = info.get_all("slave_read_repl_offset").collect();
    assert_eq!(offsets, ["698", "597"]);
    assert_eq!(info.get_u64("used_memory"), Some(2848584));
    assert_eq!(info.get_i64("second_repl_offset"), Some(-1));
    assert_eq!(info.get_f64("mem_fragmentation_ratio"), Some(3.27));
    assert_eq!(info.get("config_file"), Some(""));
    assert_eq!(info.section("keydb").count(), 1);
    let first = info.entries().next().unwrap();
    assert_eq!(
        (first.section, first.key, first.value),
        ("Server", "redis_version", "6.3.4")
    );
}

#[test]
fn keydb_masters_are_numbered_and_offsets_follow_their_block() {
    let info = Info::parse(ALL_UP).unwrap();
    let masters = info.masters();
    assert_eq!(masters.len(), 2);
    assert_eq!(
        (masters[0].index, masters[0].host, masters[0].port),
        (0, "127.0.0.1", 7103)
    );
    assert_eq!((masters[1].index, masters[1].port), (1, 7102));
    assert!(
        masters
            .iter()
            .all(|m| m.link_up && m.last_io_seconds_ago == Some(1))
    );
    assert_eq!(masters[0].repl_offset, Some(698));
    assert_eq!(masters[1].repl_offset, Some(597));

    let info = Info::parse(ONE_DOWN).unwrap();
    let masters = info.masters();
    assert_eq!(masters[0].port, 7102);
    assert!(masters[0].link_up);
    assert_eq!(masters[0].link_down_since_seconds, None);
    assert_eq!(masters[1].port, 7103);
    assert!(!masters[1].link_up);
    assert_eq!(masters[1].last_io_seconds_ago, Some(-1));
    assert_eq!(masters[1].link_down_since_seconds, Some(3));
    assert_eq!(masters[1].repl_offset, Some(698));
}

#[test]
fn structured_lines() {
    let info = Info::parse(ALL_UP).unwrap();
    let dbs: Vec<_> = info.dbs().collect();
    assert_eq!(dbs.len(), 2);
    assert_eq!(
        dbs[1],
        DbStat {
            db: 2,
            keys: 1,
            expires: 0,
            avg_ttl_ms: 0,
            cached_keys: Some(1)
        }
    );
    let replicas: Vec<_> = info.replicas().collect();
    assert_eq!(replicas.len(), 2);
    assert_eq!(
        replicas[1],
        ReplicaStat {
            index: 1,
            ip: "127.0.0.1",
            port: 7103,
            state: "online",
            offset: 496,
            lag: Some(0)
        }
    );
    let psync = info.cmdstats().find(|c| c.command == "psync").unwrap();
    assert_eq!(
        (psync.calls, psync.usec, psync.failed_calls),
        (2, 2336, Some(0))
    );
    assert_eq!(info.cmdstats().count(), 7);

    let info = Info::parse(PRIMARY).unwrap();
    assert!(info.masters().is_empty());
    let replica = info.replicas().next().unwrap();
    assert_eq!((replica.port, replica.state), (7202, "wait_bgsave"));
    assert_eq!(info.dbs().map(|d| d.db).collect::<Vec<_>>(), [0, 3]);
    assert_eq!(info.dbs().next().unwrap().cached_keys, None);
}

#[test]
fn master_field_ignores_other_master_keys() {
    assert_eq!(master_field("master_host"), Some((0, "host")));
    assert_eq!(
        master_field("master_12_link_status"),
        Some((12, "link_status"))
    );
    assert_eq!(master_field("master_replid"), None);
    assert_eq!(master_field("master_global_link_status"), None);
    assert_eq!(master_field("master_repl_offset"), None);
    assert_eq!(master_field("master_failover_state"), None);
}
