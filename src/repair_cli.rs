//! `keyfleet repair resurrected [--delete]`: the client of `POST /api/v1/safety/repair`.
//! Without `--delete` it lists the keys every node reports resurrected (deleted during a
//! partition, back after the heal), for a look; with `--delete` it lists them, then has
//! the daemon asked delete exactly those on every node (nothing while a node could not
//! be asked). Exit status: 0 nothing resurrected or all deleted, 1 keys listed
//! but not deleted, or a node failed, 3 no daemon could be asked.

use crate::client::{ClientArgs, ClientError, Method, call};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub command: RepairCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RepairCommand {
    /// The keys deleted during a partition that exist again after the heal, on every
    /// node; with --delete, delete them on every node.
    Resurrected(ResurrectedOptions),
}

#[derive(clap::Args, Debug)]
pub struct ResurrectedOptions {
    /// Delete the keys listed, on every node of the fleet.
    #[arg(long)]
    pub delete: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub fn main(args: RepairArgs) -> u8 {
    let RepairCommand::Resurrected(o) = args.command;
    crate::client::run("repair", resurrected(&o))
}

async fn resurrected(o: &ResurrectedOptions) -> Result<u8, ClientError> {
    let (url, token) = o.client.daemon()?;
    let ask = |body: Value| {
        call(
            Method::PostJson(body),
            &url,
            "/api/v1/safety/repair",
            token.as_deref(),
            REQUEST_TIMEOUT,
        )
    };
    // First the lists; with --delete, exactly the keys listed are deleted (none when a
    // node could not be asked, or nothing is listed).
    let mut v = ask(json!({"delete": false, "peers": true})).await?;
    let listed_ok = v["nodes"]
        .as_array()
        .is_some_and(|n| n.iter().all(|n| n["error"].is_null()));
    if o.delete && listed_ok && v["keys"].as_array().is_some_and(|k| !k.is_empty()) {
        v = ask(json!({"delete": true, "peers": true, "keys": v["keys"]})).await?;
    }
    if o.client.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!("{}", table(&v));
    }
    let keys = v["keys"].as_array().map_or(0, Vec::len);
    let failed = v["nodes"]
        .as_array()
        .is_some_and(|n| n.iter().any(|n| !n["error"].is_null()));
    Ok(if failed || (keys > 0 && !o.delete) {
        1
    } else {
        0
    })
}

/// What the answer says, for people.
fn table(v: &Value) -> String {
    let mut out = String::new();
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    if keys.is_empty() {
        out += "no resurrected keys on any node\n";
    } else {
        out += &format!("{:<4} {:<40} NODES\n", "DB", "KEY");
        for k in &keys {
            let on: Vec<&str> = nodes
                .iter()
                .filter(|n| {
                    n["resurrected"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|x| x == k))
                })
                .filter_map(|n| n["node"].as_str())
                .collect();
            out += &format!(
                "{:<4} {:<40} {}\n",
                k["db"],
                k["key"].as_str().unwrap_or("?"),
                on.join(", ")
            );
        }
    }
    for n in &nodes {
        let name = n["node"].as_str().unwrap_or("?");
        if let Some(e) = n["error"].as_object() {
            out += &format!(
                "{name}: failed: {} ({})\n",
                e.get("message").and_then(Value::as_str).unwrap_or("?"),
                e.get("code").and_then(Value::as_str).unwrap_or("?")
            );
        } else if let Some(d) = n["deleted"].as_u64() {
            out += &format!("{name}: deleted {d} keys\n");
        }
    }
    if !keys.is_empty() && v["delete"] != true {
        out +=
            "look at them, then delete them on every node: keyfleet repair resurrected --delete\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_key_and_where_it_came_back() {
        let v = json!({
            "delete": false,
            "keys": [{"db": 0, "key": "k1"}],
            "nodes": [
                {"node": "node1", "resurrected": [{"db": 0, "key": "k1"}], "deleted": null, "error": null},
                {"node": "node2", "resurrected": [], "deleted": null,
                 "error": {"code": "peer_unreachable", "message": "no answer"}}
            ]
        });
        let t = table(&v);
        assert!(t.contains("k1") && t.contains("node1"), "{t}");
        assert!(
            t.contains("node2: failed: no answer (peer_unreachable)"),
            "{t}"
        );
        assert!(t.contains("--delete"), "{t}");
        let none = table(&json!({"delete": true, "keys": [], "nodes": []}));
        assert_eq!(none, "no resurrected keys on any node\n");
    }
}
