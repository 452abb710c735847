//! Renders the engine's configuration file from a node's keyfleet config. The NixOS
//! module runs it at build time and `keyfleet dev` at run time, so both get the same
//! directives from one place. Pure: reads nothing but the parsed config, writes no secret
//! (those reach the engine at run time through the `include` file).

use crate::config::{Config, EngineKind, Peer};
use std::fmt::Write;

/// The engine config text for this node.
pub fn keydb_conf(c: &Config) -> String {
    let e = &c.engine;
    let mut out = String::new();
    let w = &mut out;
    // Writing to a String cannot fail, hence the unwraps below are infallible.
    writeln!(
        w,
        "# Rendered by `keyfleet render keydb-conf` for node {}.",
        c.node_name
    )
    .unwrap();
    writeln!(
        w,
        "# Do not edit: change the keyfleet config and render again."
    )
    .unwrap();
    writeln!(w, "bind {}", e.bind).unwrap();
    writeln!(w, "port {}", e.port).unwrap();
    writeln!(w, "protected-mode yes").unwrap();
    writeln!(w, "daemonize no").unwrap();
    writeln!(w, "logfile \"\"").unwrap();
    if let Some(sock) = &e.unix_socket {
        writeln!(w, "unixsocket {}", quote(&sock.display().to_string())).unwrap();
        writeln!(w, "unixsocketperm 660").unwrap();
    }
    writeln!(w, "dir {}", quote(&e.data_dir.display().to_string())).unwrap();
    writeln!(w, "maxmemory {}", e.maxmemory).unwrap();
    writeln!(w, "maxmemory-policy {}", e.maxmemory_policy).unwrap();
    writeln!(w, "appendonly {}", yes_no(e.appendonly)).unwrap();
    if e.save.is_empty() {
        writeln!(w, "save \"\"").unwrap();
    }
    for rule in &e.save {
        writeln!(w, "save {rule}").unwrap();
    }
    match e.kind {
        EngineKind::Keydb => {
            writeln!(w, "server-threads {}", e.server_threads).unwrap();
            // Active replication: every node accepts writes and replicates from every
            // other one; multi-master lets one node follow several masters at once.
            writeln!(w, "active-replica yes").unwrap();
            writeln!(w, "multi-master yes").unwrap();
            for p in &c.peers {
                replicaof(w, p);
            }
        }
        EngineKind::Redis => {
            let primary = e.primary.as_deref().unwrap_or(&c.node_name);
            if let Some(p) = c.peers.iter().find(|p| p.name == primary) {
                replicaof(w, p);
            }
        }
    }
    if let Some(inc) = &e.include {
        // Last, so that what the secrets file sets wins.
        writeln!(w, "include {}", quote(&inc.display().to_string())).unwrap();
    }
    out
}

fn replicaof(w: &mut String, p: &Peer) {
    writeln!(w, "replicaof {} {}", p.address, p.engine_port).unwrap();
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Quotes a value for the engine's config parser when it holds spaces or quotes.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        return s.to_owned();
    }
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn conf(text: &str) -> String {
        keydb_conf(&Config::parse(Path::new("t.toml"), text).unwrap())
    }

    #[test]
    fn keydb_replicates_from_every_peer() {
        let out = conf(include_str!("../examples/keyfleet.toml"));
        assert!(
            out.contains("\nactive-replica yes\nmulti-master yes\n"),
            "{out}"
        );
        assert!(
            out.contains("replicaof 127.0.0.1 6380\nreplicaof 127.0.0.1 6381\n"),
            "{out}"
        );
        assert!(out.contains("maxmemory 1073741824\n"));
        assert!(out.contains("save 900 1\nsave 300 10\n"));
    }

    #[test]
    fn redis_replicas_follow_the_primary_only() {
        let base = "[[peers]]\nname = \"a\"\naddress = \"127.0.0.1\"\nengine_port = 7001\napi_port = 9001\n\
                    [[peers]]\nname = \"b\"\naddress = \"127.0.0.1\"\nengine_port = 7002\napi_port = 9002\n";
        let replica = conf(&format!(
            "node_name = \"c\"\n[engine]\nkind = \"redis\"\nprimary = \"a\"\nport = 7003\n{base}"
        ));
        assert!(replica.contains("replicaof 127.0.0.1 7001\n"));
        assert!(!replica.contains("7002") && !replica.contains("active-replica"));
        let primary = conf(
            "node_name = \"a\"\n[engine]\nkind = \"redis\"\nprimary = \"a\"\nport = 7001\n\
             [[peers]]\nname = \"b\"\naddress = \"127.0.0.1\"\nengine_port = 7002\napi_port = 9002\n",
        );
        assert!(!primary.contains("replicaof"), "{primary}");
    }

    #[test]
    fn paths_with_spaces_are_quoted_and_include_comes_last() {
        let out = conf(
            "node_name = \"n\"\n[engine]\ndata_dir = \"/var/lib/my keydb\"\ninclude = \"/run/keydb/secrets.conf\"\nsave = []",
        );
        assert!(out.contains("dir \"/var/lib/my keydb\"\n"), "{out}");
        assert!(out.contains("save \"\"\n"));
        assert!(out.ends_with("include /run/keydb/secrets.conf\n"), "{out}");
    }
}
