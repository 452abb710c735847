//! The directory of generations and staging, with a fake supervisor thread playing
//! `keyfleet dev` (it writes running.json when `current` moves), and the agent's
//! journal. Real engines and the whole agent run in tests/integration/upgrade.rs.

use super::generations::{Dir, Generations, Running};
use super::journal::{Journal, JournalFile};
use super::stage;
use crate::config::Config;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A stand-in engine binary: it only answers `--version` (nothing here starts it).
fn fake_engine(dir: &Path, banner: &str) -> PathBuf {
    let p = dir.join(format!("engine-{}", banner.len()));
    std::fs::write(&p, format!("#!/bin/sh\necho '{banner}'\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn config(dir: &Path) -> Config {
    let text = format!(
        "node_name = \"n1\"\n[engine]\nkind = \"redis\"\nport = 7000\ndata_dir = \"{}\"\n\
         [upgrades]\ngenerations = \"dir\"\ngenerations_dir = \"{}\"\n",
        dir.join("data").display(),
        dir.join("gens").display()
    );
    Config::parse(Path::new("n1.toml"), &text).unwrap()
}

/// Plays dev's supervisor: whenever `current` points elsewhere, "restarts" the engine.
fn supervisor(root: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut running = String::new();
        while !stop.load(Ordering::SeqCst) {
            if let Ok(t) = std::fs::read_link(root.join("current")) {
                let t = t.to_string_lossy().into_owned();
                if t != running {
                    let r = Running {
                        generation: t.clone(),
                        pid: 1,
                        started_at_unix: 0,
                    };
                    std::fs::write(
                        root.join("running.json"),
                        serde_json::to_string(&r).unwrap(),
                    )
                    .unwrap();
                    running = t;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

#[test]
fn staging_switching_and_rolling_back_a_directory_of_generations() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let root = tmp.path().join("gens");
    let old = fake_engine(tmp.path(), "Redis server v=7.0.15 sha=0");
    let new = fake_engine(tmp.path(), "Redis server v=7.2.4 sha=00000000:0");
    let meta = stage::initial(&root, &cfg, &old).unwrap();
    assert_eq!(
        (meta.engine.as_str(), meta.engine_version.as_str()),
        ("redis", "7.0.15")
    );
    let dir = Dir::new(&root);
    assert_eq!(dir.current().unwrap().id, "gen-1");
    assert!(dir.candidate().unwrap().is_none());
    assert!(dir.previous().unwrap().is_none());

    let c = stage::Candidate {
        engine: new.clone(),
        extra_conf: vec!["hz 20".into()],
        ..Default::default()
    };
    stage::stage_node(&root, &cfg, &c, "rel-1").unwrap();
    let cand = dir.candidate().unwrap().unwrap();
    assert_eq!(cand.meta.release, "rel-1");
    assert_eq!(cand.meta.engine_version, "7.2.4");
    let conf = std::fs::read_to_string(root.join("staged/rel-1/engine.conf")).unwrap();
    assert!(conf.ends_with("hz 20\n"), "{conf}");
    assert!(conf.contains(&format!("dir {}", tmp.path().join("data").display())));

    let stop = Arc::new(AtomicBool::new(false));
    let sup = supervisor(root.clone(), stop.clone());
    let now = dir.switch(&cand).unwrap();
    assert_eq!(now.id, "gen-2");
    assert_eq!(now.meta.release, "rel-1");
    assert_eq!(dir.running().unwrap().generation, "gen-2");
    assert_eq!(
        std::fs::read_link(root.join("gen-2/engine")).unwrap(),
        std::fs::canonicalize(&new).unwrap()
    );
    let prev = dir.previous().unwrap().unwrap();
    assert_eq!(prev.id, "gen-1");
    dir.rollback(&now, &prev).unwrap();
    assert_eq!(dir.current().unwrap().id, "gen-1");
    assert!(
        !root.join("gen-2").exists(),
        "the failed generation is removed"
    );
    // A later candidate is numbered after the newest there is.
    stage::stage_node(&root, &cfg, &c, "rel-2").unwrap();
    let again = dir.switch(&dir.candidate().unwrap().unwrap()).unwrap();
    assert_eq!(again.id, "gen-2");
    stop.store(true, Ordering::SeqCst);
    sup.join().unwrap();

    // Without a supervisor the switch says so instead of waiting forever.
    let mut slow = Dir::new(&root);
    slow.restart_timeout = Duration::from_millis(200);
    stage::stage_node(&root, &cfg, &c, "rel-3").unwrap();
    let err = slow
        .switch(&slow.candidate().unwrap().unwrap())
        .unwrap_err();
    assert!(err.contains("is `keyfleet dev` running?"), "{err}");
}

#[test]
fn an_engine_that_says_no_version_needs_one_given() {
    let tmp = tempfile::tempdir().unwrap();
    let mute = fake_engine(tmp.path(), "hello");
    let err = stage::engine_version(&mute).unwrap_err();
    assert!(
        err.contains("printed no version") && err.contains("--engine-version"),
        "{err}"
    );
    let err = stage::engine_version(&tmp.path().join("nowhere")).unwrap_err();
    assert!(err.contains("cannot run"), "{err}");
    let kdb = fake_engine(
        tmp.path(),
        "KeyDB server v=6.3.4 sha=00000000:0 malloc=jemalloc",
    );
    assert_eq!(
        stage::engine_version(&kdb).unwrap(),
        ("keydb".to_owned(), "6.3.4".to_owned())
    );
    let cfg = config(tmp.path());
    let m = stage::meta_for(&mute, "r", Some("7.1.0"), cfg.engine.kind).unwrap();
    assert_eq!(
        (m.engine.as_str(), m.engine_version.as_str()),
        ("redis", "7.1.0")
    );
}

#[test]
fn the_agents_journal_survives_a_restart_and_says_when_it_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let f = JournalFile::new(&tmp.path().join("agent"));
    assert!(
        f.load().unwrap().active.is_none(),
        "no file: an empty journal"
    );
    let g = super::generations::Generation {
        id: "gen-1".into(),
        meta: super::policy::GenerationMeta {
            release: "initial".into(),
            engine: "redis".into(),
            engine_version: "7.0.15".into(),
            keyfleet_version: None,
        },
    };
    let j = Journal {
        known_current: Some(g.clone()),
        outbox: vec![(
            "a-1".into(),
            super::wire::Event {
                seq: 1,
                step: super::wire::Step::Switched { at_unix: 5 },
            },
        )],
        ..Default::default()
    };
    f.save(&j).unwrap();
    let back = f.load().unwrap();
    assert_eq!(back.known_current, Some(g));
    assert_eq!(back.outbox, j.outbox);
    std::fs::write(tmp.path().join("agent/journal.json"), "{not json").unwrap();
    let err = f.load().unwrap_err();
    assert!(err.contains("journal.json"), "{err}");
}

#[test]
fn the_record_keeps_the_newest_attempts_and_a_lease_expires() {
    use super::record::*;
    let mut r = Record {
        lease: Some(Lease {
            holder: "n2".into(),
            release: "r".into(),
            expires_at_unix: 100,
        }),
        ..Default::default()
    };
    assert!(r.live_lease(99).is_some());
    assert!(r.live_lease(100).is_none());
    let meta = |release: &str| super::policy::GenerationMeta {
        release: release.into(),
        engine: "redis".into(),
        engine_version: "7.0.15".into(),
        keyfleet_version: None,
    };
    let a = |i: usize, phase| Attempt {
        id: format!("a-{i}"),
        phase,
        ..Attempt::new(
            i as u64,
            &meta("r"),
            &meta("x"),
            super::policy::Class::EngineUnchanged,
            "planned",
            "test".into(),
            0,
        )
    };
    for i in 0..HISTORY_MAX + 5 {
        r.attempts.push(a(i, Phase::Done));
    }
    assert!(r.active().is_none());
    r.attempts.push(a(999, Phase::Gate));
    r.trim();
    assert_eq!(r.attempts.len(), HISTORY_MAX);
    assert_eq!(r.attempts[0].id, "a-6");
    assert_eq!(r.active().unwrap().id, "a-999");
}
