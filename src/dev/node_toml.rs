//! A dev node's keyfleet TOML: its engine on its port, its API, its peers (at the
//! proxies' ports in a partitionable fleet).

use super::{Node, proxy};
use crate::config::EngineKind;
use std::fmt::Write as _;
use std::path::Path;

/// Node `n`'s config. With a `mesh`, peers' engines are named at the proxies' ports.
pub(super) fn node_toml(
    n: &Node,
    all: &[Node],
    kind: EngineKind,
    node_dir: &Path,
    mesh: Option<&proxy::Mesh>,
) -> String {
    let engine_port = |to: &Node| {
        mesh.and_then(|m| m.port(&n.name, &to.name))
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
    t.push_str("maxmemory = \"256MiB\"\nappendonly = false\nsave = []\nserver_threads = 1\n");
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
    }
    // A Redis primary knows its replicas by the port they announce: through a proxy,
    // each must announce the port the primary's config names it at.
    if kind == EngineKind::Redis
        && n.name != all[0].name
        && let Some(port) = mesh.and_then(|m| m.port(&all[0].name, &n.name))
    {
        let _ = write!(t, "\n[engine.settings]\nreplica-announce-port = {port}\n");
    }
    t
}
