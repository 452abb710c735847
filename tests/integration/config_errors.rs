//! Bad configurations: exit status 2 and a message naming the file and the key.

use crate::fixture::keyfleet;

fn daemon_with(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).unwrap();
    let out = keyfleet()
        .args(["daemon", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains(path.to_str().unwrap()),
        "the message names the file: {stderr}"
    );
    (out.status.code().unwrap_or(-1), stderr)
}

const BASE: &str = "node_name = \"n1\"\n[engine]\nport = 7000\n";
const PEER: &str =
    "[[peers]]\nname = \"n2\"\naddress = \"127.0.0.1\"\nengine_port = 7001\napi_port = 9001\n";

#[test]
fn each_bad_config_exits_2_naming_the_key() {
    let cases = [
        (format!("{BASE}maxmemroy = \"1GiB\"\n"), "maxmemroy"),
        (
            format!("{BASE}[api]\nlisten = \"0.0.0.0:9850\"\n"),
            "api.token_file",
        ),
        (
            format!("{BASE}{}", PEER.replace("\"n2\"", "\"n1\"")),
            "peers[0].name",
        ),
        (format!("{BASE}{PEER}{PEER}"), "peers[1].name"),
        (
            format!("{BASE}{PEER}{}", PEER.replace("\"n2\"", "\"n3\"")),
            "peers[1].engine_port",
        ),
        (
            format!("{BASE}[fleet]\npeer_timeout = \"soon\"\n"),
            "peer_timeout",
        ),
        (
            format!("{BASE}user = \"u\"\npassword_file = \"/nonexistent/pw\"\n"),
            "engine.password_file",
        ),
        ("node_name = \"n1\"\n[engine\n".to_owned(), "line 2"),
        ("[engine]\nport = 7000\n".to_owned(), "node_name"),
    ];
    for (config, key) in cases {
        let (code, stderr) = daemon_with(&config);
        assert_eq!(code, 2, "exit status for {key}: {stderr}");
        assert!(stderr.contains(key), "message names `{key}`: {stderr}");
    }
}

#[test]
fn a_missing_config_file_exits_2() {
    let out = keyfleet()
        .args(["daemon", "--config", "/nonexistent/keyfleet.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/keyfleet.toml"));
}

#[test]
fn render_refuses_bad_config_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, format!("{BASE}{}", PEER.replace("\"n2\"", "\"n1\""))).unwrap();
    let out = keyfleet()
        .args(["render", "keydb-conf", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing half-rendered on stdout");
}
