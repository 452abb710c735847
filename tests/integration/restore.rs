//! Restores `to` an engine outside the mesh, and their refusals, against a real engine
//! and s3s-fs: a target that is not empty, is the node's own engine, or is named badly
//! is refused before anything changes; a backup whose stored object was altered is
//! never loaded (the target stays empty); every restore is in the history with who
//! asked; `--scratch` starts an engine, loads the backup and stops it on Ctrl-C.

use crate::backup::{BACKUPS, backup, conn};
use crate::fixture::{Engine, eventually, get, request_with_body, signal};
use crate::s3_fixture::{Node, S3Server};
use serde_json::Value;
use std::io::BufRead;
use std::time::Duration;

/// A node with 1,000 keys and one complete backup of them; its id.
fn node_with_backup(s3: &S3Server) -> (Node, String) {
    let node = Node::start(&s3.endpoint(), "", BACKUPS);
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1000)
        .query(&mut conn(node.engine_port))
        .unwrap();
    let (code, v, err) = backup(&node, &["create"]);
    assert_eq!(code, 0, "{err}");
    let id = v["manifest"]["id"].as_str().unwrap().to_owned();
    (node, id)
}

fn restore_api(node: &Node, id: &str, body: &str) -> (u16, Value) {
    request_with_body(
        "POST",
        &format!("{}/api/v1/backups/{id}/restore", node.api),
        None,
        body,
    )
    .unwrap()
}

/// The user's keys: DBSIZE less the daemons' replication canaries.
fn dbsize(port: u16) -> u64 {
    crate::fixture::user_keys(port)
}

#[test]
fn refusals_change_nothing() {
    let Some(s3) = S3Server::start("restore refusals") else {
        return;
    };
    let (node, id) = node_with_backup(&s3);
    let busy = Engine::start().unwrap();
    let _: () = redis::cmd("SET")
        .arg("precious")
        .arg("1")
        .query(&mut conn(busy.port))
        .unwrap();
    // An empty engine whose user may read INFO but not run CONFIG.
    let locked = Engine::start().unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "reader",
            "on",
            ">reader-pw-never-shown",
            "+info",
            "+ping",
        ])
        .query(&mut conn(locked.port))
        .unwrap();
    let cases = [
        (
            format!(
                r#"{{"mode":"to","target":"127.0.0.1:{}","user":"reader","password":"reader-pw-never-shown"}}"#,
                locked.port
            ),
            409,
            "restore_target_no_permission",
        ),
        (
            format!(r#"{{"mode":"to","target":"127.0.0.1:{}"}}"#, busy.port),
            409,
            "restore_target_not_empty",
        ),
        (
            format!(
                r#"{{"mode":"to","target":"localhost:{}"}}"#,
                node.engine_port
            ),
            409,
            "restore_target_in_mesh",
        ),
        (
            r#"{"mode":"to","target":"nohost"}"#.into(),
            400,
            "restore_target_invalid",
        ),
        (r#"{"mode":"fleet"}"#.into(), 400, "restore_unconfirmed"),
        (
            r#"{"mode":"fleet","confirm":true,"target":"127.0.0.1:1"}"#.into(),
            400,
            "restore_request_invalid",
        ),
        (
            r#"{"mode":"rebuild"}"#.into(),
            400,
            "restore_request_invalid",
        ),
        (
            r#"{"mode":"sideways"}"#.into(),
            400,
            "restore_request_invalid",
        ),
        (r#"{"mode":"to"}"#.into(), 400, "restore_request_invalid"),
        ("not json".into(), 400, "restore_request_invalid"),
    ];
    for (body, status, code) in &cases {
        let (got, v) = restore_api(&node, &id, body);
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{body}: {v}"
        );
    }
    let (got, v) = restore_api(
        &node,
        "20200101T000000Z-solo",
        r#"{"mode":"to","target":"127.0.0.1:1"}"#,
    );
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (404, Some("backup_not_found")),
        "{v}"
    );
    // The busy engine kept its key, the node its 1,000, and nothing was recorded.
    assert_eq!(dbsize(busy.port), 1);
    assert_eq!(dbsize(node.engine_port), 1000);
    let (_, history) = get(&format!("{}/api/v1/restores", node.api)).unwrap();
    assert_eq!(history["restores"], serde_json::json!([]), "{history}");
}

#[test]
fn an_altered_backup_is_never_loaded_and_the_history_says_why() {
    let Some(s3) = S3Server::start("restore of an altered backup") else {
        return;
    };
    let (node, id) = node_with_backup(&s3);
    // Flip one byte in the middle of the stored object, keeping its length.
    let object = s3
        .root
        .path()
        .join(crate::s3_fixture::BUCKET)
        .join(format!("backups/itest/{id}.rdb.zst"));
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&object, &bytes).unwrap();

    let target = Engine::start().unwrap();
    let (code, record, err) = backup(
        &node,
        &[
            "restore",
            &id,
            "--to",
            &format!("127.0.0.1:{}", target.port),
        ],
    );
    assert_eq!(code, 1, "{record} {err}");
    assert_eq!(record["outcome"], "failed", "{record}");
    assert_eq!(
        record["error"]["code"], "restore_checksum_mismatch",
        "{record}"
    );
    assert_eq!(dbsize(target.port), 0, "the target loaded nothing");
    // The target is a master again, with no master link left behind.
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn(target.port))
        .unwrap();
    assert!(info.contains("role:master"), "{info}");

    let (_, history) = get(&format!("{}/api/v1/restores", node.api)).unwrap();
    let r = &history["restores"][0];
    assert_eq!(
        (r["backup"].as_str(), r["outcome"].as_str()),
        (Some(id.as_str()), Some("failed"))
    );
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    assert!(
        r["requested_by"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{user}@")),
        "{r}"
    );
    assert!(r["finished_at"].as_i64().unwrap() >= r["requested_at"].as_i64().unwrap());
    // The record is what the OpenAPI document promises.
    let (_, doc) = get(&format!("{}/api/v1/openapi.json", node.api)).unwrap();
    let schema = &doc["components"]["schemas"]["Restore"];
    for field in schema["required"].as_array().unwrap() {
        assert!(
            r.get(field.as_str().unwrap()).is_some(),
            "{field} missing: {r}"
        );
    }
    for (field, value) in r.as_object().unwrap() {
        assert!(
            schema["properties"].get(field).is_some(),
            "{field} undocumented"
        );
        if let Some(allowed) = schema["properties"][field]["enum"].as_array() {
            assert!(allowed.contains(value), "{field} = {value}");
        }
    }
}

#[test]
fn scratch_starts_an_engine_with_the_backup_and_stops_it_on_ctrl_c() {
    let Some(s3) = S3Server::start("restore into a scratch engine") else {
        return;
    };
    let (node, id) = node_with_backup(&s3);
    let mut cli = crate::fixture::keyfleet()
        .args(["backup", "restore", &id, "--scratch", "--api", &node.api])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(cli.stdout.take().unwrap()).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("scratch engine: ")))
        .expect("the CLI says where the scratch engine is");
    let port: u16 = line["scratch engine: 127.0.0.1:".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let dir = line
        .split("data in ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(dbsize(port), 1000);
    assert!(std::path::Path::new(&dir).is_dir());
    signal(cli.id(), libc::SIGINT);
    let status = cli.wait().unwrap();
    assert!(status.success(), "{status}");
    let gone = eventually(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    assert!(gone.is_some(), "the scratch engine stopped");
    assert!(!std::path::Path::new(&dir).exists(), "its data is deleted");
}

#[test]
fn an_encrypted_backup_is_sealed_and_restores_only_with_its_identity() {
    use age::secrecy::ExposeSecret;
    let Some(s3) = S3Server::start("encrypted backup") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let recipients = keys.path().join("recipients.txt");
    std::fs::write(
        &recipients,
        format!("# backups\n{}\n", identity.to_public()),
    )
    .unwrap();
    let sealed = format!(
        "{BACKUPS}age_recipients_file = \"{}\"\n",
        recipients.display()
    );
    let mut node = Node::start(&s3.endpoint(), "", &sealed);
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1000)
        .query(&mut conn(node.engine_port))
        .unwrap();
    let (code, v, err) = backup(&node, &["create"]);
    assert_eq!(code, 0, "{err}");
    let m = &v["manifest"];
    assert_eq!(m["encryption"], "age", "{m}");
    let id = m["id"].as_str().unwrap().to_owned();
    let (key, stored) = s3
        .objects("backups/itest/")
        .into_iter()
        .find(|(k, _)| !k.ends_with(".json"))
        .unwrap();
    assert!(key.ends_with(".rdb.zst.age"), "{key}");
    assert!(
        stored.starts_with(b"age-encryption.org/v1\n"),
        "the store holds age data"
    );

    // Without an identity the node refuses at once, and nothing is recorded.
    let target = Engine::start().unwrap();
    let body = format!(r#"{{"mode":"to","target":"127.0.0.1:{}"}}"#, target.port);
    let (status, v) = restore_api(&node, &id, &body);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("restore_identity_missing")),
        "{v}"
    );

    // With someone else's identity the load fails and the target stays empty.
    let restart_with = |node: &mut Node, secret: &str| {
        let file = keys.path().join("identity.txt");
        std::fs::write(&file, format!("{secret}\n")).unwrap();
        let text = std::fs::read_to_string(&node.config).unwrap();
        let text = text
            .lines()
            .filter(|l| !l.starts_with("age_identity_file"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(
            &node.config,
            format!("{text}\nage_identity_file = \"{}\"\n", file.display()),
        )
        .unwrap();
        node.kill_daemon();
        node.start_daemon();
    };
    let stranger = age::x25519::Identity::generate();
    restart_with(&mut node, stranger.to_string().expose_secret());
    let (code, record, err) = backup(
        &node,
        &[
            "restore",
            &id,
            "--to",
            &format!("127.0.0.1:{}", target.port),
        ],
    );
    assert_eq!(code, 1, "{record} {err}");
    assert_eq!(
        record["error"]["code"], "restore_identity_wrong",
        "{record}"
    );
    assert_eq!(dbsize(target.port), 0);

    // With the right one it loads every key.
    restart_with(&mut node, identity.to_string().expose_secret());
    let (code, record, err) = backup(
        &node,
        &[
            "restore",
            &id,
            "--to",
            &format!("127.0.0.1:{}", target.port),
        ],
    );
    assert_eq!(code, 0, "{record} {err}");
    assert_eq!(dbsize(target.port), 1000);
    // The identity is nowhere in what the API says.
    let (_, history) = get(&format!("{}/api/v1/restores", node.api)).unwrap();
    assert!(!history.to_string().contains("AGE-SECRET-KEY"), "{history}");
}
