//! The `[logs]`, `[s3]` and `[backups]` tables: defaults, secrets kept out of sight, and
//! each refusal.

use super::*;

const LOGS: &str = "[logs]\ndir = \"/var/log/keydb\"\n[logs.s3]\nendpoint = \"https://s3.example.net\"\nbucket = \"fleet-logs\"\naccess_key_id_file = \"ak\"\nsecret_access_key_file = \"sk\"\n";

#[test]
fn logs_take_defaults_and_move_the_engine_log() {
    let c = parse(&minimal(LOGS)).unwrap();
    let l = c.logs.as_ref().unwrap();
    assert_eq!(l.rotate.max_size, 64 << 20);
    assert_eq!(l.rotate.max_age, Duration::from_secs(3600));
    assert_eq!(l.compression, Compression::Zstd);
    assert_eq!(l.on_budget_full, OnBudgetFull::DropOldest);
    assert!(l.s3.path_style);
    assert_eq!(
        c.engine_logfile().unwrap(),
        Path::new("/var/log/keydb/engine.log")
    );
    assert!(parse(&minimal("")).unwrap().engine_logfile().is_none());
}

#[test]
fn bad_logs_settings_are_named() {
    for (change, key) in [
        ("[logs.rotate]\nmax_size = 100\n", "logs.rotate.max_size"),
        ("max_local_bytes = \"65MiB\"\n", "logs.max_local_bytes"),
        ("compression = \"lz4\"\n", "compression"),
        ("on_budget_full = \"panic\"\n", "on_budget_full"),
        ("dir = \"relative\"\n", "logs.dir"),
    ] {
        let text = minimal(&LOGS.replace("dir = \"/var/log/keydb\"\n", change));
        let text = if change.starts_with("dir") {
            text
        } else {
            text.replacen("[logs]\n", "[logs]\ndir = \"/var/log/keydb\"\n", 1)
        };
        let e = error_of(&text);
        assert!(e.contains(key), "{change}: {e}");
    }
    for (s3, key) in [
        ("endpoint = \"s3.example.net\"", "logs.s3.endpoint"),
        (
            "endpoint = \"https://s3.example.net/path\"",
            "logs.s3.endpoint",
        ),
        ("bucket = \"Fleet_Logs\"", "logs.s3.bucket"),
        ("prefix = \"/logs/\"", "logs.s3.prefix"),
        ("part_size = \"1MiB\"", "logs.s3.part_size"),
    ] {
        let name = s3.split(' ').next().unwrap();
        let text: String = LOGS
            .lines()
            .filter(|l| !l.starts_with(&format!("{name} =")))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + s3
            + "\n";
        let e = error_of(&minimal(&text));
        assert!(e.contains(key), "{s3}: {e}");
    }
    let e = error_of(&minimal(&format!(
        "[engine.settings]\nlogfile = \"/tmp/x\"\n{LOGS}"
    )));
    assert!(e.contains("engine.settings.logfile"), "{e}");
}

#[test]
fn s3_keys_are_read_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ak"), "AKIDEXAMPLE\n").unwrap();
    std::fs::write(dir.path().join("sk"), "wJalrXUtnFEMI\n").unwrap();
    let text = minimal(
        &LOGS
            .replace("\"ak\"", &format!("\"{}/ak\"", dir.path().display()))
            .replace("\"sk\"", &format!("\"{}/sk\"", dir.path().display())),
    );
    let c = parse(&text).unwrap();
    let keys = c
        .read_secrets(Path::new("node.toml"))
        .unwrap()
        .logs_s3
        .unwrap();
    assert_eq!(
        (keys.access_key_id.as_str(), keys.secret_access_key.as_str()),
        ("AKIDEXAMPLE", "wJalrXUtnFEMI")
    );
    assert!(!format!("{keys:?}").contains("wJalr"));
    std::fs::remove_file(dir.path().join("sk")).unwrap();
    let e = c
        .read_secrets(Path::new("node.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("logs.s3.secret_access_key_file"), "{e}");
}

#[test]
fn backups_take_a_schedule_and_retention() {
    let c = parse(&minimal(&format!(
        "{LOGS}[backups]\nfleet = \"prod\"\nschedule = \"daily 02:00 Asia/Kolkata\"\nkeep_last = 7\nkeep_within = \"30d\"\n"
    )))
    .unwrap();
    let b = c.backups.unwrap();
    assert_eq!(b.schedule.unwrap().to_string(), "daily 02:00 Asia/Kolkata");
    assert_eq!(b.keep_last, Some(7));
    assert_eq!(b.keep_within, Some(Duration::from_secs(30 * 86_400)));
    let on_demand = parse(&minimal(&format!("{LOGS}[backups]\n"))).unwrap();
    let b = on_demand.backups.unwrap();
    assert!(b.schedule.is_none() && b.keep_last.is_none() && b.keep_within.is_none());
}

#[test]
fn bad_backup_settings_are_named() {
    for (line, key, says) in [
        ("schedule = \"hourly\"", "schedule", "expected \"every 6h\""),
        (
            "schedule = \"daily 02:00 Asia/Bombay2\"",
            "schedule",
            "not a time zone",
        ),
        ("keep_last = 0", "backups.keep_last", "at least 1"),
        (
            "keep_within = \"10m\"",
            "backups.keep_within",
            "at least 1h",
        ),
        ("keep_within = \"forever\"", "keep_within", "not a duration"),
        (
            "restore_user = \"keyfleet-restore\"",
            "backups.restore_user",
            "go together",
        ),
        (
            "restore_password_file = \"pw\"",
            "backups.restore_user",
            "go together",
        ),
    ] {
        let e = error_of(&minimal(&format!("{LOGS}[backups]\n{line}\n")));
        assert!(e.contains(key) && e.contains(says), "{line}: {e}");
    }
}
