//! `keyfleet render keydb-conf`: golden outputs for the example hosts, and the rendered
//! config accepted by a real engine (KeyDB when KEYFLEET_KEYDB_SERVER is set, else Redis
//! for the directives it shares), so a directive the engine would reject fails here and
//! not on a production host.

use crate::fixture::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(config: &Path) -> String {
    let out = keyfleet()
        .args(["render", "keydb-conf", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render {}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every examples/hosts/*.toml renders exactly tests/golden/<name>.keydb.conf. With
/// KEYFLEET_UPDATE_GOLDEN=1 the golden files are rewritten instead (review the diff).
#[test]
fn example_hosts_render_their_golden_configs() {
    let mut checked = 0;
    let mut hosts: Vec<_> = std::fs::read_dir(repo().join("examples/hosts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    hosts.sort();
    for host in hosts
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let name = host.file_stem().unwrap().to_str().unwrap();
        let golden = repo().join(format!("tests/golden/{name}.keydb.conf"));
        let rendered = render(host);
        if std::env::var_os("KEYFLEET_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &rendered).unwrap();
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        assert_eq!(
            rendered,
            expected,
            "{name} renders differently from {}",
            golden.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the three example hosts, found {checked}"
    );
}

#[test]
fn a_real_engine_accepts_the_rendered_config() {
    let Some((bin, kind)) = engine() else {
        skip!("skipped a_real_engine_accepts_the_rendered_config: no engine on PATH");
        return;
    };
    // The example node, moved to a scratch directory and a free port; the include file
    // stands in for the secrets file the NixOS module writes at start.
    let dir = tempfile::tempdir().unwrap();
    let mut config: toml::Table = std::fs::read_to_string(repo().join("examples/keyfleet.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let port = free_port();
    let include = dir.path().join("secrets.conf");
    std::fs::write(&include, "masterauth replication-secret\n").unwrap();
    let engine = config["engine"].as_table_mut().unwrap();
    engine.insert("kind".into(), kind.as_str().into());
    engine.insert("port".into(), i64::from(port).into());
    engine.insert("data_dir".into(), dir.path().to_str().unwrap().into());
    engine.insert(
        "unix_socket".into(),
        dir.path().join("engine.sock").to_str().unwrap().into(),
    );
    engine.insert("include".into(), include.to_str().unwrap().into());
    if kind == keyfleet::config::EngineKind::Redis {
        engine.insert("primary".into(), "node2".into());
    }
    // The example ships logs: the engine writes its log into the log directory.
    let log_dir = dir.path().join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    config["logs"]
        .as_table_mut()
        .unwrap()
        .insert("dir".into(), log_dir.to_str().unwrap().into());
    let config_path = dir.path().join("node.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let conf_path = dir.path().join("engine.conf");
    std::fs::write(&conf_path, render(&config_path)).unwrap();

    let mut child = std::process::Command::new(&bin)
        .arg(&conf_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = eventually(Duration::from_secs(10), || {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(false);
        }
        ping(port).map(|_| true)
    });
    if up != Some(true) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "{} refused the rendered config:\n{}{}\n--- config:\n{}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&conf_path).unwrap()
        );
    }
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let maxmemory: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut con)
        .unwrap();
    assert_eq!(maxmemory[1], (1u64 << 30).to_string());
    let log = std::fs::read_to_string(log_dir.join("engine.log")).unwrap_or_default();
    assert!(!log.is_empty(), "the engine did not write logs/engine.log");
    let masterauth: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("masterauth")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        masterauth[1], "replication-secret",
        "the include file was read last"
    );
    if kind == keyfleet::config::EngineKind::Keydb {
        let active: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("active-replica")
            .query(&mut con)
            .unwrap();
        assert_eq!(active[1], "yes");
    }
    let _ = child.kill();
    let _ = child.wait();
}
