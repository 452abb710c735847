//! Renders the engine's configuration file from a node's keyfleet config, for
//! `keyfleet dev` and `keyfleet render keydb-conf`. The NixOS module renders the same
//! text in Nix (`modules/engine-conf.nix`), so that the engine's unit depends on its
//! own config only and not on the keyfleet package; a check proves both renderings
//! equal for every example host. Pure: reads nothing but the parsed config, writes no
//! secret (those reach the engine at run time through the `include` file).

use crate::config::{Config, Directive, EngineKind, Scalar};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The engine config text for this node: two comment lines, every directive in name
/// order (one line per value; KeyDB needs `active-replica` and `multi-master` before
/// `replicaof`, which name order gives), then `include` last so that the run-time
/// secrets file has the final word. `modules/engine-conf.nix` renders the same text in
/// Nix from the same values; `scripts/check-nix.sh` proves the two equal.
pub fn keydb_conf(c: &Config) -> String {
    let mut directives = typed_directives(c);
    for (name, value) in &c.engine.settings {
        directives.insert(name.clone(), directive_values(value));
    }
    let mut out = format!(
        "# Engine config of keyfleet node {}, rendered from its keyfleet config.\n\
         # Do not edit: change the keyfleet config (or services.keyfleet) instead.\n",
        c.node_name
    );
    for (name, values) in &directives {
        for value in values {
            // Writing to a String cannot fail.
            writeln!(out, "{name} {value}").unwrap();
        }
    }
    if let Some(inc) = &c.engine.include {
        writeln!(out, "include {}", quote(&inc.display().to_string())).unwrap();
    }
    out
}

/// The directives the typed keys of `[engine]` and the peers stand for, each with its
/// values already written as the engine's config parser reads them.
fn typed_directives(c: &Config) -> BTreeMap<String, Vec<String>> {
    let e = &c.engine;
    let mut d: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut set = |name: &str, value: String| {
        d.insert(name.to_owned(), vec![value]);
    };
    set("bind", e.bind.clone());
    set("port", e.port.to_string());
    set("protected-mode", "yes".into());
    set("daemonize", "no".into());
    let logfile = c.engine_logfile().map(|f| f.display().to_string());
    set("logfile", quote(logfile.as_deref().unwrap_or("")));
    set("databases", e.databases.to_string());
    if let Some(sock) = &e.unix_socket {
        set("unixsocket", quote(&sock.display().to_string()));
        set("unixsocketperm", "660".into());
    }
    set("dir", quote(&e.data_dir.display().to_string()));
    set("maxmemory", e.maxmemory.to_string());
    set("maxmemory-policy", e.maxmemory_policy.clone());
    set("appendonly", yes_no(e.appendonly).into());
    if c.safety.enabled {
        // Keyevent notifications of deletes and expiries only (not of every write):
        // the safety checks record the keys deleted while a link is down.
        set("notify-keyspace-events", "Egx".into());
    }
    let replicaof = |p: &crate::config::Peer| format!("{} {}", p.address, p.replication_port());
    let masters: Vec<String> = match e.kind {
        EngineKind::Keydb => {
            set("server-threads", e.server_threads.to_string());
            // Active replication: every node accepts writes and replicates from every
            // other one; multi-master lets one node follow several masters at once.
            set("active-replica", "yes".into());
            set("multi-master", "yes".into());
            c.peers.iter().map(replicaof).collect()
        }
        EngineKind::Redis => {
            let primary = e.primary.as_deref().unwrap_or(&c.node_name);
            c.peers
                .iter()
                .filter(|p| p.name == primary)
                .map(replicaof)
                .collect()
        }
    };
    let save = if e.save.is_empty() {
        vec![quote("")]
    } else {
        e.save.clone()
    };
    d.insert("save".into(), save);
    if !masters.is_empty() {
        d.insert("replicaof".into(), masters);
    }
    d
}

/// An `engine.settings` value as config lines: as written, `yes`/`no` for booleans, one
/// line per element for a list.
fn directive_values(value: &Directive) -> Vec<String> {
    let scalar = |s: &Scalar| match s {
        Scalar::Int(n) => n.to_string(),
        Scalar::Str(s) => s.clone(),
    };
    match value {
        Directive::Bool(b) => vec![yes_no(*b).into()],
        Directive::Int(n) => vec![n.to_string()],
        Directive::Str(s) => vec![s.clone()],
        Directive::List(items) => items.iter().map(scalar).collect(),
    }
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
        // KeyDB refuses `replicaof` before `active-replica` and `multi-master`.
        let pos = |line: &str| out.find(line).unwrap_or_else(|| panic!("{line}: {out}"));
        assert!(pos("\nactive-replica yes\n") < pos("\nreplicaof "));
        assert!(pos("\nmulti-master yes\n") < pos("\nreplicaof "));
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
        // Through a tunnel: the engine dials the replication port.
        let tunnelled = conf(&format!(
            "node_name = \"c\"\n[engine]\nport = 7003\n{}",
            base.replacen(
                "api_port = 9001\n",
                "api_port = 9001\nreplication_port = 17001\n",
                1
            )
        ));
        assert!(
            tunnelled.contains("replicaof 127.0.0.1 17001\nreplicaof 127.0.0.1 7002\n"),
            "{tunnelled}"
        );
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

    #[test]
    fn settings_add_and_replace_directives_in_name_order() {
        let out = conf(
            "node_name = \"n\"\n[engine]\nmaxmemory = \"1GiB\"\n\
             [engine.settings]\nhz = 20\nmaxmemory = \"3gb\"\nlazyfree-lazy-eviction = true\n\
             save = [\"60 1000\", 3600]\n",
        );
        assert!(out.contains("\nhz 20\n"), "{out}");
        assert!(out.contains("\nmaxmemory 3gb\n"), "{out}");
        assert!(!out.contains("maxmemory 1073741824"), "{out}");
        assert!(out.contains("\nlazyfree-lazy-eviction yes\n"), "{out}");
        assert!(out.contains("\nsave 60 1000\nsave 3600\n"), "{out}");
        let names: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{out}");
        assert!(out.contains("\ndatabases 16\n"), "{out}");
    }
}
