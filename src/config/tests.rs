use super::*;

const EXAMPLE: &str = include_str!("../../examples/keyfleet.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("node.toml"), text)
}

fn minimal(extra: &str) -> String {
    format!("node_name = \"n1\"\n[engine]\nport = 7000\n{extra}")
}

#[test]
fn the_shipped_example_parses() {
    let c = parse(EXAMPLE).expect("examples/keyfleet.toml must parse");
    assert_eq!(c.node_name, "node1");
    assert_eq!(c.engine.kind, EngineKind::Keydb);
    assert_eq!(c.engine.maxmemory, 1 << 30);
    assert_eq!(c.engine.save, vec!["900 1", "300 10"]);
    assert_eq!(c.fleet.peer_timeout, Duration::from_secs(1));
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers[1].api_url(), "http://127.0.0.1:9852");
    let logs = c.logs.expect("the example ships logs");
    assert_eq!(logs.s3.bucket, "keyfleet-logs");
    assert!(!logs.s3.path_style);
}

#[test]
fn defaults_fill_a_minimal_file() {
    let c = parse(&minimal("")).unwrap();
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:9850");
    assert_eq!(c.engine.maxmemory_policy, "noeviction");
    assert!(c.peers.is_empty());
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_keys_are_named() {
    let e = error_of(&minimal("maxmemroy = \"1GiB\""));
    assert!(e.starts_with("node.toml:"), "{e}");
    assert!(e.contains("maxmemroy"), "{e}");
}

#[test]
fn bad_units_are_named() {
    let e = error_of(&minimal("maxmemory = \"lots\""));
    assert!(e.contains("maxmemory") || e.contains("lots"), "{e}");
    let e = error_of(&format!(
        "{}\n[fleet]\npeer_timeout = \"soon\"",
        minimal("")
    ));
    assert!(e.contains("peer_timeout") && e.contains("soon"), "{e}");
}

#[test]
fn own_peer_is_refused() {
    let e = error_of(&minimal(
        "[[peers]]\nname = \"n1\"\naddress = \"10.0.0.2\"\nengine_port = 6379\napi_port = 9850",
    ));
    assert!(
        e.contains("`peers[0].name`") && e.contains("not its own peer"),
        "{e}"
    );
}

#[test]
fn duplicate_names_and_ports_are_refused() {
    let peer = |name: &str, port: u16| {
        format!(
            "[[peers]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\nengine_port = {port}\napi_port = {}\n",
            port + 1000
        )
    };
    let e = error_of(&minimal(&(peer("n2", 7001) + &peer("n2", 7002))));
    assert!(
        e.contains("`peers[1].name`") && e.contains("duplicate"),
        "{e}"
    );
    let e = error_of(&minimal(&(peer("n2", 7001) + &peer("n3", 7001))));
    assert!(
        e.contains("`peers[1].engine_port`") && e.contains("used twice"),
        "{e}"
    );
    // A peer on the local engine's own address and port.
    let e = error_of(&minimal(&peer("n2", 7000)));
    assert!(e.contains("`peers[0].engine_port`"), "{e}");
    // A replication port is an endpoint too; one equal to the engine port is its default.
    let e = error_of(&minimal(
        &(peer("n3", 7002) + &peer("n2", 7001) + "replication_port = 7002\n"),
    ));
    assert!(
        e.contains("`peers[1].replication_port`") && e.contains("used twice"),
        "{e}"
    );
    let e = error_of(&minimal(&(peer("n2", 7001) + "replication_port = 0\n")));
    assert!(
        e.contains("`peers[0].replication_port`") && e.contains("port 0"),
        "{e}"
    );
    let c = parse(&minimal(&(peer("n2", 7001) + "replication_port = 7001\n"))).unwrap();
    assert_eq!(c.peers[0].replication_port(), 7001);
}

#[test]
fn public_api_needs_a_token() {
    let e = error_of(&format!(
        "{}\n[api]\nlisten = \"0.0.0.0:9850\"",
        minimal("")
    ));
    assert!(e.contains("`api.token_file`"), "{e}");
    parse(&format!(
        "{}\n[api]\nlisten = \"0.0.0.0:9850\"\ntoken_file = \"/t\"",
        minimal("")
    ))
    .unwrap();
}

#[test]
fn redis_fleets_name_their_primary() {
    let peer =
        "[[peers]]\nname = \"n2\"\naddress = \"127.0.0.1\"\nengine_port = 7001\napi_port = 9851\n";
    let e = error_of(&minimal(&format!("kind = \"redis\"\n{peer}")));
    assert!(e.contains("`engine.primary`"), "{e}");
    let e = error_of(&minimal(&format!(
        "kind = \"redis\"\nprimary = \"n9\"\n{peer}"
    )));
    assert!(e.contains("`n9` is not a node"), "{e}");
    parse(&minimal(&format!(
        "kind = \"redis\"\nprimary = \"n2\"\n{peer}"
    )))
    .unwrap();
}

#[test]
fn bad_save_rules_are_named() {
    let e = error_of(&minimal("save = [\"900 1\", \"often\"]"));
    assert!(e.contains("`engine.save[1]`"), "{e}");
}

#[test]
fn missing_file_names_the_file() {
    let e = Config::load(Path::new("/nonexistent/keyfleet.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/keyfleet.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn secrets_are_read_and_missing_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let c = parse(&format!(
        "{}\n[api]\ntoken_file = \"{}\"",
        minimal(""),
        token.display()
    ))
    .unwrap();
    let s = c.read_secrets(Path::new("node.toml")).unwrap();
    assert_eq!(s.api_token.as_deref(), Some("s3cret"));
    let c = parse(&minimal(
        "user = \"u\"\npassword_file = \"/nonexistent/pw\"",
    ))
    .unwrap();
    let e = c
        .read_secrets(Path::new("node.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("`engine.password_file`") && e.contains("/nonexistent/pw"),
        "{e}"
    );
}

#[test]
fn engine_settings_parse_every_value_kind() {
    let c = parse(&minimal(
        "databases = 4\n[engine.settings]\nhz = 20\nlatency-tracking = false\n\
         maxmemory = \"3gb\"\nsave = [\"60 1000\", 3600]\n",
    ))
    .unwrap();
    assert_eq!(c.engine.databases, 4);
    assert_eq!(c.engine.settings["hz"], Directive::Int(20));
    assert_eq!(
        c.engine.settings["latency-tracking"],
        Directive::Bool(false)
    );
    assert_eq!(
        c.engine.settings["save"],
        Directive::List(vec![Scalar::Str("60 1000".into()), Scalar::Int(3600)])
    );
    assert_eq!(parse(&minimal("")).unwrap().engine.databases, 16);
}

#[test]
fn engine_settings_refuse_what_the_daemon_owns_and_secrets() {
    for (line, key, why) in [
        (
            "port = 7001",
            "engine.settings.port",
            "set by `engine.port`",
        ),
        (
            "masterauth = \"pw\"",
            "engine.settings.masterauth",
            "a secret",
        ),
        (
            "replicaof = [\"10.0.0.2 6379\"]",
            "engine.settings.replicaof",
            "peers",
        ),
        ("Hz = 20", "engine.settings.Hz", "not a directive name"),
        (
            "logfile = \"a\\nb\"",
            "engine.settings.logfile",
            "line break",
        ),
        ("save = [\"\"]", "engine.settings.save", "empty"),
    ] {
        let e = error_of(&minimal(&format!("[engine.settings]\n{line}\n")));
        assert!(e.contains(&format!("`{key}`")), "{line}: {e}");
        assert!(e.contains(why), "{line}: {e}");
    }
    let e = error_of(&minimal("databases = 0"));
    assert!(e.contains("`engine.databases`"), "{e}");
}

#[path = "storage_tests.rs"]
mod storage;

#[path = "safety_tests.rs"]
mod safety;

#[path = "upgrades_tests.rs"]
mod upgrades_tests;

#[test]
fn api_bounds_default_sensibly_and_refuse_what_is_out_of_range() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.api.max_connections, 512);
    assert_eq!(c.api.limits.fanout, 16);
    assert_eq!(c.fleet.coalesce, Duration::ZERO);
    let d = parse(&minimal("")).unwrap();
    assert_eq!(d.api.header_timeout, Duration::from_secs(10));
    assert_eq!(d.api.idle_timeout, Duration::from_secs(60));
    assert_eq!(d.api.max_body, 64 * 1024);
    assert_eq!(
        (d.api.limits.cheap, d.api.limits.fanout, d.api.limits.heavy),
        (64, 16, 8)
    );
    for (table, want) in [
        (
            "[api]\nmax_connections = 2",
            "`api.max_connections`: 2 is out of range",
        ),
        ("[api]\nheader_timeout = \"0s\"", "`api.header_timeout`"),
        ("[api]\nidle_timeout = \"2h\"", "`api.idle_timeout`"),
        ("[api]\nmax_body = \"1GiB\"", "`api.max_body`"),
        (
            "[api.limits]\nheavy = 0",
            "`api.limits.heavy`: 0 is out of range",
        ),
        ("[fleet]\ncoalesce = \"1m\"", "`fleet.coalesce`"),
        ("[api]\nmax_conections = 10", "max_conections"),
    ] {
        let e = error_of(&minimal(table));
        assert!(e.contains(want), "{table}: {e}");
    }
}
