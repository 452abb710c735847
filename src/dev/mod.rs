//! `keyfleet dev`: a local fleet on 127.0.0.1 for development and for the integration
//! tests. It starts N engine processes configured by the same renderer NixOS uses and one
//! real `keyfleet daemon` per node, writes `fleet.json` once every node is ready, and on
//! Ctrl-C or SIGTERM stops every child. It owns process supervision only; status comes
//! from the daemons' own API.

mod args;
mod lock;
mod node_toml;
mod nodes;
mod partition;
pub mod proxy;
mod ready;
mod s3;
mod signals;
pub(crate) mod supervise;

use crate::config::EngineKind;
pub use args::{DevAction, DevArgs};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;
use supervise::{Supervised, spawn, stop_all};

struct Node {
    name: String,
    engine_port: u16,
    api_port: u16,
}

/// Finds the engine binary: `KEYFLEET_KEYDB_SERVER`, `keydb-server`, then `redis-server`.
pub fn find_engine() -> Option<(PathBuf, EngineKind)> {
    if let Some(p) = std::env::var_os("KEYFLEET_KEYDB_SERVER").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), EngineKind::Keydb));
    }
    [
        ("keydb-server", EngineKind::Keydb),
        ("redis-server", EngineKind::Redis),
    ]
    .into_iter()
    .find_map(|(bin, kind)| on_path(bin).map(|p| (p, kind)))
}

/// `bin` in a directory of PATH.
pub fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|c| c.is_file())
}

pub fn main(args: DevArgs) -> u8 {
    if let Some(action) = &args.action {
        return partition::act(action);
    }
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("keyfleet dev: {e}");
            1
        }
    }
}

fn run(args: DevArgs) -> Result<(), String> {
    let (engine, kind) = find_engine().ok_or(
        "no engine found: set KEYFLEET_KEYDB_SERVER, or put keydb-server or redis-server on PATH",
    )?;
    if kind == EngineKind::Redis {
        eprintln!(
            "keyfleet dev: using {} — Redis has no multi-master: node1 is the primary and the \
             other nodes are its read-only replicas. Set KEYFLEET_KEYDB_SERVER for a KeyDB fleet.",
            engine.display()
        );
    }
    let nodes: Vec<Node> = (0..args.nodes)
        .map(|i| {
            let engine_port = args.base_port.checked_add(i);
            let api_port = args.base_port.checked_add(100 + i);
            match (engine_port, api_port) {
                (Some(engine_port), Some(api_port)) => Ok(Node {
                    name: format!("node{}", i + 1),
                    engine_port,
                    api_port,
                }),
                _ => Err(format!(
                    "--base-port {} leaves no room for {} nodes",
                    args.base_port, args.nodes
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.dir.display()))?;
    // Held until `run` returns: nothing below touches a directory another `dev` uses.
    let _lock = lock::DirLock::acquire(&dir)?;
    for n in &nodes {
        for (port, what) in [(n.engine_port, "engine"), (n.api_port, "API")] {
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                return Err(format!(
                    "port {port} ({} {what}) is already in use on 127.0.0.1: {e}; \
                     is another `keyfleet dev` running? Give this one other ports with \
                     --base-port and its own directory with --dir",
                    n.name
                ));
            }
        }
    }
    // A fleet.json left by a `dev` that was killed describes a fleet that is gone.
    let _ = std::fs::remove_file(dir.join("fleet.json"));
    let me = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut mesh = if args.partitionable {
        let engines: Vec<(&str, u16)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.engine_port))
            .collect();
        let mut mesh = proxy::Mesh::start(&engines)?;
        mesh.reset_files(&dir)?;
        Some(mesh)
    } else {
        let _ = std::fs::remove_file(dir.join("partition.json"));
        None
    };

    let (rt, shutdown) = signals::runtime_with_shutdown_flag()?;
    let mut store = if args.no_s3 {
        None
    } else {
        s3::setup(&rt, &dir, args.s3_endpoint.as_deref(), &args.s3_bucket)?
    };
    let mut children: Vec<Supervised> = Vec::new();
    let mut node_procs: Vec<(nodes::NodeProcs, PathBuf)> = Vec::new();
    let mut fleet = Vec::new();
    for n in &nodes {
        let node_dir = dir.join(&n.name);
        // The engine opens its log file in logs/ (with shipping) as it starts.
        for sub in ["data", "logs"] {
            std::fs::create_dir_all(node_dir.join(sub))
                .map_err(|e| format!("{}: {e}", node_dir.display()))?;
        }
        let config_path = node_dir.join("keyfleet.toml");
        let gens_dir = node_dir.join("generations");
        let mut toml = node_toml::node_toml(n, &nodes, kind, &node_dir, mesh.as_ref());
        toml += &node_toml::upgrades_toml(&node_dir, &gens_dir, &args.window, args.gate_timeout);
        match &store {
            Some(store) => {
                let (top, tables) = store.node_toml(&node_dir);
                toml = top + &toml + &tables;
            }
            // The daemon's state (the safety checks' deleted keys) stays in the node's
            // directory, as with a store.
            None => {
                let state = toml::Value::String(node_dir.join("state").display().to_string());
                toml = format!("state_dir = {state}\n") + &toml;
            }
        }
        std::fs::write(&config_path, &toml)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let config = crate::config::Config::load(&config_path).map_err(|e| e.to_string())?;
        // The first generation: this engine with the config rendered from the TOML;
        // engine.conf shows the one running.
        crate::upgrade::stage::initial(&gens_dir, &config, &engine)?;
        let conf_link = node_dir.join("engine.conf");
        let _ = std::fs::remove_file(&conf_link);
        std::os::unix::fs::symlink("generations/current/engine.conf", &conf_link)
            .map_err(|e| format!("{}: {e}", conf_link.display()))?;
        let mut procs = nodes::NodeProcs::new(&n.name, &node_dir, &gens_dir);
        let engine_pid = procs.start_engine()?;
        let mut daemon = Command::new(&me);
        daemon
            .args(["daemon", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info");
        // Tests shift one node's clock: KEYFLEET_TEST_CLOCK_OFFSET_node2=+200ms.
        let offset_var = crate::safety::clock::OFFSET_VAR;
        if let Some(offset) = std::env::var_os(format!("{offset_var}_{}", n.name)) {
            daemon.env(offset_var, offset);
        }
        let daemon_child = spawn(&mut daemon, &node_dir.join("daemon.log"))?;
        fleet.push(serde_json::json!({
            "name": n.name,
            "engine_addr": format!("127.0.0.1:{}", n.engine_port),
            "api_url": format!("http://127.0.0.1:{}", n.api_port),
            "engine_pid": engine_pid,
            "daemon_pid": daemon_child.id(),
        }));
        node_procs.push((procs, config_path.clone()));
        children.push(Supervised {
            what: format!("{} daemon", n.name),
            child: daemon_child,
            exited: false,
        });
    }

    ready::wait_ready(&rt, &nodes, &mut children, args.ready_timeout, &shutdown)?;
    for (procs, config_path) in &mut node_procs {
        procs.start_agent(&me, config_path)?;
    }
    let mut fleet_doc = serde_json::json!({ "nodes": fleet });
    if let Some(mesh) = &mesh {
        fleet_doc["partitionable"] = true.into();
        fleet_doc["links"] = mesh.links_json();
    }
    if let Some(store) = &store {
        fleet_doc["logs_s3"] =
            serde_json::json!({"endpoint": store.endpoint, "bucket": store.bucket});
    }
    let fleet_json = serde_json::to_string_pretty(&fleet_doc).expect("json");
    std::fs::write(dir.join("fleet.json"), fleet_json + "\n")
        .map_err(|e| format!("fleet.json: {e}"))?;
    let mut summary = format!(
        "keyfleet dev: {} nodes ready ({}); {}\n",
        nodes.len(),
        kind.as_str(),
        dir.join("fleet.json").display()
    );
    for n in &nodes {
        let _ = writeln!(
            summary,
            "  {}  engine 127.0.0.1:{}  api http://127.0.0.1:{}",
            n.name, n.engine_port, n.api_port
        );
    }
    // Client commands find a fleet in ./.keyfleet-dev by themselves; elsewhere, --dir.
    let status = if args.dir == Path::new(crate::client::DEFAULT_DEV_DIR) {
        "keyfleet status".to_owned()
    } else {
        format!(
            "keyfleet status --dir {}",
            shell_word(&args.dir.display().to_string())
        )
    };
    if let Some(store) = &store {
        let _ = writeln!(
            summary,
            "  logs: shipped to {}/{}/NODE/{}",
            store.endpoint,
            store.bucket,
            match &store.data_dir {
                Some(d) => format!(
                    " (s3s-fs, objects under {})",
                    d.join(&store.bucket).display()
                ),
                None => String::new(),
            }
        );
    }
    if mesh.is_some() {
        let dir_arg = shell_word(&args.dir.display().to_string());
        let _ = writeln!(
            summary,
            "  partitionable: `keyfleet dev partition {} --dir {dir_arg}` cuts a node off, \
             `keyfleet dev heal --dir {dir_arg}` restores it",
            nodes.last().map_or("node1", |n| n.name.as_str())
        );
    }
    if let Some(path) = &args.upgrade_to {
        let candidate = crate::upgrade::stage::Candidate {
            engine: path.clone(),
            ..Default::default()
        };
        let release = crate::upgrade::stage::stage_fleet(&dir, &candidate)?;
        let _ = writeln!(
            summary,
            "  upgrade: release {release} ({}) staged on every node; watch it with `{}`",
            path.display(),
            status.replacen("status", "upgrade status", 1)
        );
    }
    let _ = writeln!(summary, "  try: {status}   (Ctrl-C stops the fleet)");
    print!("{summary}");

    while !shutdown.load(Ordering::SeqCst) {
        if let Some(line) = mesh.as_mut().and_then(|m| m.poll(&dir)) {
            eprintln!("keyfleet dev: {line}");
        }
        for (procs, _) in &mut node_procs {
            for line in procs.poll() {
                eprintln!("keyfleet dev: {line}");
            }
        }
        for c in children.iter_mut().filter(|c| !c.exited) {
            if let Ok(Some(status)) = c.child.try_wait() {
                eprintln!(
                    "keyfleet dev: {} exited ({status}); the rest of the fleet keeps running",
                    c.what
                );
                c.exited = true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (agents, engines): (Vec<_>, Vec<_>) = node_procs
        .into_iter()
        .map(|(p, _)| (p.agent, p.engine))
        .unzip();
    let agents: Vec<Supervised> = agents.into_iter().flatten().filter(|a| !a.exited).collect();
    let engines: Vec<Supervised> = engines
        .into_iter()
        .flatten()
        .filter(|e| !e.exited)
        .collect();
    eprintln!(
        "keyfleet dev: stopping {} processes",
        children.iter().filter(|c| !c.exited).count() + agents.len() + engines.len()
    );
    // Agents, then daemons, so neither reports the engines' shutdown as a failure; each
    // group is signalled at once and then awaited, so stopping takes a grace period each.
    stop_all(agents);
    stop_all(children);
    stop_all(engines);
    if let Some(server) = store.as_mut().and_then(|s| s.server.take()) {
        stop_all(vec![server]);
    }
    let _ = std::fs::remove_file(dir.join("fleet.json"));
    for f in ["partition.json", "partition-applied.json"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    eprintln!("keyfleet dev: stopped");
    Ok(())
}

/// `s` as one shell word, quoted only when it needs to be.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
