//! Helpers for the upgrade tests: which engines to upgrade between, staging a
//! candidate into a dev fleet, reading each node's upgrade state, and a client that
//! writes throughout and remembers what the engine acknowledged.

use crate::fixture::*;
use crate::safety_fixture::cmd;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The engines of an upgrade test: the fleet starts on `env`'s engine and the
/// candidate runs `candidate`; `class` is what the policy must call the change.
pub struct Engines {
    pub env: Vec<(&'static str, String)>,
    pub candidate: PathBuf,
    pub class: &'static str,
    /// Lines the candidate adds to the engine config (an engine-unchanged upgrade
    /// changes its config instead).
    pub extra_conf: Vec<&'static str>,
}

/// KeyDB 6.3.3 → 6.3.4 when both are given, else the one engine there is, upgraded
/// to a new config only. None (and a line saying so) without any engine.
pub fn engines(test: &str) -> Option<Engines> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let (Some(new), Some(old)) = (
        var("KEYFLEET_KEYDB_SERVER"),
        var("KEYFLEET_KEYDB_SERVER_OLD"),
    ) {
        return Some(Engines {
            env: vec![("KEYFLEET_KEYDB_SERVER", old)],
            candidate: new.into(),
            class: "patch",
            extra_conf: vec![],
        });
    }
    let Some((path, _)) = engine() else {
        skip!("skipped {test}: no engine (set KEYFLEET_KEYDB_SERVER or install redis-server)");
        return None;
    };
    skip!(
        "{test}: KEYFLEET_KEYDB_SERVER_OLD (KeyDB 6.3.3) and KEYFLEET_KEYDB_SERVER (6.3.4) \
         are not both set: upgrading {} to a new config only (engine unchanged)",
        path.display()
    );
    Some(Engines {
        env: vec![],
        candidate: path,
        class: "engine_unchanged",
        extra_conf: vec!["hz 20"],
    })
}

pub fn start(n: u16, e: &Engines, args: &[&str]) -> DevFleet {
    let env: Vec<(&str, &str)> = e.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["--no-s3"];
    all.extend_from_slice(args);
    DevFleet::start_with(n, &all, &env)
}

/// `keyfleet upgrade stage ENGINE --dir DIR --release RELEASE [--extra-conf L]... ARGS`.
pub fn stage(
    fleet: &DevFleet,
    engine: &std::path::Path,
    release: &str,
    extra: &[&str],
    args: &[&str],
) {
    let mut c = keyfleet();
    c.args(["upgrade", "stage"])
        .arg(engine)
        .arg("--dir")
        .arg(fleet.dir());
    c.args(["--release", release]);
    for l in extra {
        c.args(["--extra-conf", l]);
    }
    let out = c.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "stage: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node `i`'s `GET /api/v1/upgrades`.
pub fn upgrades(fleet: &DevFleet, i: usize) -> Value {
    get(&format!("{}/api/v1/upgrades?history=50", fleet.api(i)))
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

/// Waits up to 20 s until node `i`'s pending candidate waits for `what` (window,
/// approval, ...); its `GET /api/v1/upgrades` then.
pub fn waiting_for(fleet: &DevFleet, i: usize, what: &str) -> Value {
    eventually(Duration::from_secs(20), || {
        let u = upgrades(fleet, i);
        (u["pending"]["waiting_for"] == what).then_some(u)
    })
    .unwrap_or_else(|| panic!("no wait for {what}: {:#}", upgrades(fleet, i)))
}

/// The history of node `i`, oldest first.
pub fn history(fleet: &DevFleet, i: usize) -> Vec<Value> {
    let mut h = upgrades(fleet, i)["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    h.reverse();
    h
}

/// Waits until node `i` has finished an attempt for `release`; its record.
pub fn finished(fleet: &DevFleet, i: usize, release: &str, within: Duration) -> Value {
    eventually(within, || {
        history(fleet, i)
            .into_iter()
            .find(|a| a["release"] == release && a["phase"] == "done")
    })
    .unwrap_or_else(|| {
        panic!(
            "node{} finished no attempt for {release} within {within:?}: {:#}\n{}",
            i + 1,
            upgrades(fleet, i),
            fleet.logs()
        )
    })
}

/// A client writing `PREFIX:N` = N to one engine every few ms, keeping what the
/// engine acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    pub acked: Arc<Mutex<Vec<u64>>>,
    pub failed: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(port: u16, prefix: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0));
        let (s, a, f) = (stop.clone(), acked.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                n += 1;
                let key = format!("{prefix}:{n}");
                match cmd(port, &["SET", &key, &n.to_string()]) {
                    Ok(_) => a.lock().unwrap().push(n),
                    Err(_) => *f.lock().unwrap() += 1,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Writer {
            stop,
            acked,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops writing; (acknowledged, refused).
    pub fn finish(mut self) -> (Vec<u64>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let acked = self.acked.lock().unwrap().clone();
        let failed = *self.failed.lock().unwrap();
        (acked, failed)
    }
}

/// Every acknowledged `PREFIX:N` reads back as N on the engine at `port`; the missing.
pub fn missing(port: u16, prefix: &str, acked: &[u64]) -> Vec<u64> {
    acked
        .iter()
        .copied()
        .filter(|n| {
            let v = cmd(port, &["GET", &format!("{prefix}:{n}")]);
            !matches!(v, Ok(redis::Value::BulkString(b)) if b == n.to_string().as_bytes())
        })
        .collect()
}
