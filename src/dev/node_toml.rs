//! A dev node's keyfleet TOML: its engine on its port, its API, its peers (at the
//! proxies' ports in a partitionable fleet).

use super::{Node, proxy};
use crate::config::EngineKind;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Node `n`'s config. With a `mesh`, peers' engines are named at the proxies' ports: the
/// reads proxy as `engine_port`, the replication proxy as `replication_port`.
pub(super) fn node_toml(
    n: &Node,
    all: &[Node],
    kind: EngineKind,
    node_dir: &Path,
    mesh: Option<&proxy::Mesh>,
) -> String {
    let engine_port = |to: &Node| {
        mesh.and_then(|m| m.port(&n.name, &to.name, proxy::Carries::Reads))
            .unwrap_or(to.engine_port)
    };
    let mut t = format!(
        "node_name = \"{}\"\n\n[engine]\nkind = \"{}\"\nbind = \"127.0.0.1\"\nport = {}\n",
        n.name,
        kind.as_str(),
        n.engine_port
    );
    let _ = writeln!(
        t,
        "data_dir = {}",
        // TOML's own quoting: a path may hold quotes, backslashes or non-ASCII.
        toml::Value::String(node_dir.join("data").display().to_string())
    );
    t.push_str("maxmemory = \"256MiB\"\nappendonly = true\nsave = []\nserver_threads = 1\n");
    if kind == EngineKind::Redis {
        let _ = writeln!(t, "primary = \"{}\"", all[0].name);
    }
    let _ = writeln!(t, "\n[api]\nlisten = \"127.0.0.1:{}\"\n", n.api_port);
    t.push_str("[fleet]\npoll_interval = \"500ms\"\npeer_timeout = \"1s\"\n");
    for p in all.iter().filter(|p| p.name != n.name) {
        let _ = write!(
            t,
            "\n[[peers]]\nname = \"{}\"\naddress = \"127.0.0.1\"\nengine_port = {}\napi_port = {}\n",
            p.name,
            engine_port(p),
            p.api_port
        );
        if let Some(port) = mesh.and_then(|m| m.port(&n.name, &p.name, proxy::Carries::Replication))
        {
            let _ = writeln!(t, "replication_port = {port}");
        }
    }
    // A Redis primary knows its replicas by the port they announce: through a proxy,
    // each must announce the port the primary's config names it at.
    if kind == EngineKind::Redis
        && n.name != all[0].name
        && let Some(port) =
            mesh.and_then(|m| m.port(&all[0].name, &n.name, proxy::Carries::Replication))
    {
        let _ = write!(t, "\n[engine.settings]\nreplica-announce-port = {port}\n");
    }
    t
}

/// The `[upgrades]` table of a dev node: generations in `gens`, the agent's journal in
/// the node's directory, the windows given (always open by default).
pub(super) fn upgrades_toml(
    node_dir: &Path,
    gens: &Path,
    windows: &[String],
    gate: Duration,
) -> String {
    let q = |p: &Path| toml::Value::String(p.display().to_string());
    let windows: Vec<toml::Value> = if windows.is_empty() {
        vec![toml::Value::String("always".into())]
    } else {
        windows
            .iter()
            .map(|w| toml::Value::String(w.clone()))
            .collect()
    };
    format!(
        "\n[upgrades]\ngenerations = \"dir\"\ngenerations_dir = {}\nagent_state_dir = {}\n\
         windows = {}\ngate_timeout = \"{}ms\"\ngate_settle = \"2s\"\nlease_ttl = \"{}s\"\n",
        q(gens),
        q(&node_dir.join("agent")),
        toml::Value::Array(windows),
        gate.as_millis(),
        gate.as_secs() * 2 + 30,
    )
}
