//! `Local` against a real KeyDB active replica, as a user with exactly `restore.acl`'s
//! rules: every step works, client writes are refused while fenced and allowed after,
//! and the engine's ACL LOG stays empty (nothing is sent that the rules do not allow).
//! Skipped with one line without `KEYFLEET_KEYDB_SERVER`: fleet restores need KeyDB.

use super::*;
use crate::config::EngineKind;
use crate::engine::EngineOptions;
use crate::scratch::Scratch;

fn keydb() -> Option<Scratch> {
    match crate::dev::find_engine() {
        Some((_, EngineKind::Keydb)) => {}
        _ => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: restore steps need KeyDB (KEYFLEET_KEYDB_SERVER)"
            );
            return None;
        }
    }
    Some(Scratch::start_with(&["--active-replica", "yes", "--multi-master", "yes"]).unwrap())
}

fn as_user(port: u16, user: Option<&str>, password: Option<&str>) -> Arc<Engine> {
    Arc::new(Engine::new(EngineOptions {
        target: Target::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        user: user.map(str::to_owned),
        password: password.map(crate::engine::Secret::new),
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(5),
    }))
}

async fn admin(admin: &Engine, args: &[&str]) -> Value {
    let (cmd, rest) = args.split_first().unwrap();
    let cmd: &'static str = Box::leak(cmd.to_string().into_boxed_str());
    admin.command(cmd, rest).await.unwrap()
}

#[tokio::test]
async fn every_step_runs_as_the_restore_user_and_fences_client_writes() {
    let Some(engine) = keydb() else { return };
    let root = as_user(engine.port, None, None);
    let mut setuser = vec!["ACL", "SETUSER", "restorer", "reset", "on", ">restore-pw"];
    setuser.extend(crate::engine::restore_acl_rules());
    admin(&root, &setuser).await;
    let mut daemon = vec!["ACL", "SETUSER", "daemon", "reset", "on", ">daemon-pw"];
    daemon.extend(crate::engine::daemon_acl_rules());
    admin(&root, &daemon).await;
    for i in 0..50 {
        admin(&root, &["SET", &format!("k{i}"), "v"]).await;
    }
    admin(&root, &["ACL", "LOG", "RESET"]).await;

    // The daemon's own user may not: the refusal names what is missing.
    let weak = Local::new(
        as_user(engine.port, Some("daemon"), Some("daemon-pw")),
        vec![],
    );
    assert_eq!(
        weak.check().await.unwrap_err().code,
        "restore_no_permission"
    );
    admin(&root, &["ACL", "LOG", "RESET"]).await;

    let mut local = Local::new(
        as_user(engine.port, Some("restorer"), Some("restore-pw")),
        vec![],
    );
    assert_eq!(local.check().await.unwrap().keys["db0"], 50);
    let fenced = local.fence().await.unwrap();
    assert_eq!(fenced.masters.len(), 1, "{fenced:?}");
    assert!(fenced.masters.values().all(|up| *up));
    let refused = root.command("SET", &["x", "1"]).await.unwrap_err();
    assert!(refused.to_string().contains("READONLY"), "{refused}");

    let keys = local.some_keys(10).await.unwrap();
    assert_eq!(keys.len(), 10);
    let digests = local.digests(&keys).await.unwrap();
    assert!(
        digests
            .iter()
            .all(|d| d.as_ref().is_some_and(|d| d.len() == 64))
    );
    assert_eq!(digests[0], digests[1], "the same value has the same digest");
    assert_eq!(local.digests(&["absent".into()]).await.unwrap(), vec![None]);

    let wiped = local.wipe().await.unwrap();
    assert!(wiped.keys.values().all(|k| *k == 0), "{wiped:?}");
    let finished = local.finish().await.unwrap();
    assert!(finished.masters.is_empty(), "{finished:?}");
    admin(&root, &["SET", "x", "1"]).await;

    let log = admin(&root, &["ACL", "LOG"]).await;
    assert_eq!(
        log,
        Value::Array(vec![]),
        "the restore user was refused something"
    );
}

#[tokio::test]
async fn a_wipe_is_refused_while_anything_replicates_from_the_engine() {
    let Some(engine) = keydb() else { return };
    let Some(replica) = keydb() else { return };
    let root = as_user(engine.port, None, None);
    admin(&root, &["SET", "kept", "1"]).await;
    let follower = as_user(replica.port, None, None);
    admin(
        &follower,
        &["REPLICAOF", "127.0.0.1", &engine.port.to_string()],
    )
    .await;
    let mut local = Local::new(root.clone(), vec![]);
    local.fence().await.unwrap();
    let mut tries = 0;
    while local.state().await.unwrap().connected_replicas == 0 && tries < 100 {
        tries += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = local.wipe().await.unwrap_err();
    assert_eq!(refused.code, "restore_not_isolated", "{}", refused.message);
    assert_eq!(local.state().await.unwrap().keys["db0"], 1);
    local.finish().await.unwrap();
}
