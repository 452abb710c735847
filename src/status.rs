//! `keyfleet status`: a client of a daemon's API that shows the fleet at a glance. It
//! only reads `/api/v1/fleet` and formats it; health is decided by the daemon. Which
//! daemon it asks is `client`'s rule, shared by every client command.
//! Exit status: 0 healthy, 1 unhealthy, 3 the daemon could not be asked.

use crate::client::ClientArgs;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Give up on a daemon after this long.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
}

pub fn main(args: StatusArgs) -> u8 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(args.client.get_json("/api/v1/fleet", args.timeout)) {
        Ok(fleet) => {
            if args.client.json {
                println!("{}", serde_json::to_string_pretty(&fleet).expect("json"));
            } else {
                print!("{}", table(&fleet));
            }
            if fleet["healthy"].as_bool() == Some(true) {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("keyfleet status: {e}");
            3
        }
    }
}

/// The fleet as a fixed-width table, one row per node.
pub fn table(fleet: &Value) -> String {
    let mut rows = vec![
        ["NODE", "UP", "ROLE", "LINKS", "KEYS", "MEMORY"]
            .map(String::from)
            .to_vec(),
    ];
    for n in nodes(fleet) {
        let up = n["up"].as_bool() == Some(true);
        let links = n["links"].as_array().map(Vec::as_slice).unwrap_or_default();
        let links_up = links.iter().filter(|l| l["status"] == "up").count();
        let link_cell = if !up {
            "-".to_owned()
        } else {
            let down: Vec<_> = links
                .iter()
                .filter(|l| l["status"] != "up")
                .filter_map(|l| l["peer"].as_str())
                .collect();
            if down.is_empty() {
                format!("{links_up}/{} up", links.len())
            } else {
                format!("{links_up}/{} up (down: {})", links.len(), down.join(","))
            }
        };
        rows.push(vec![
            n["name"].as_str().unwrap_or("?").to_owned(),
            if up {
                "yes".into()
            } else {
                format!("NO ({})", error_code(n))
            },
            n["role"].as_str().unwrap_or("-").to_owned(),
            link_cell,
            n["keys"].as_u64().map_or("-".into(), |k| k.to_string()),
            n["used_memory_bytes"]
                .as_u64()
                .map_or("-".into(), human_bytes),
        ]);
    }
    let mut out = columns(&rows);
    let healthy = fleet["healthy"].as_bool() == Some(true);
    let _ = writeln!(
        out,
        "fleet: {}",
        if healthy { "healthy" } else { "UNHEALTHY" }
    );
    // Messages can be long (URLs, OS errors): one line each under the table, so the
    // table itself stays narrow.
    for n in nodes(fleet).iter().filter(|n| n["up"] != true) {
        let message = n["error"]["message"].as_str().unwrap_or("no message");
        let _ = writeln!(
            out,
            "  {}: {}: {message}",
            n["name"].as_str().unwrap_or("?"),
            error_code(n)
        );
    }
    out
}

/// Rows as left-aligned columns two spaces apart, one line each.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn nodes(fleet: &Value) -> &[Value] {
    fleet["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn error_code(n: &Value) -> &str {
    n["error"]["code"].as_str().unwrap_or("down")
}

pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_down_nodes_and_links() {
        let fleet = serde_json::json!({
            "healthy": false,
            "nodes": [
                {"name": "node1", "up": true, "role": "active-replica", "keys": 3, "used_memory_bytes": 2827376,
                 "links": [{"peer": "node2", "status": "up"}, {"peer": "node3", "status": "down"}]},
                {"name": "node3", "up": false, "error": {"code": "peer_unreachable", "message": "refused"}}
            ]
        });
        let t = table(&fleet);
        assert!(t.contains("node1  yes"), "{t}");
        assert!(t.contains("1/2 up (down: node3)"), "{t}");
        assert!(t.contains("2.7MiB"), "{t}");
        assert!(t.contains("NO (peer_unreachable)"), "{t}");
        assert!(t.contains("fleet: UNHEALTHY\n"), "{t}");
        assert!(t.ends_with("  node3: peer_unreachable: refused\n"), "{t}");
    }

    #[test]
    fn a_long_error_stays_below_a_narrow_table() {
        let message = "http://127.0.0.1:7102/api/v1/node: client error (Connect): tcp connect \
                       error: Connection refused (os error 111)";
        let fleet = serde_json::json!({
            "healthy": false,
            "nodes": [
                {"name": "node1", "up": false, "role": null, "links": [],
                 "error": {"code": "engine_unreachable", "message": message}},
                {"name": "node2", "up": false,
                 "error": {"code": "peer_unreachable", "message": message}}
            ]
        });
        let t = table(&fleet);
        let (rows, below) = t.split_once("fleet: UNHEALTHY\n").unwrap();
        for row in rows.lines() {
            assert!(row.len() <= 60, "{} columns: {row}", row.len());
            assert!(!row.contains("refused"), "{row}");
        }
        assert!(rows.contains("NO (engine_unreachable)"), "{t}");
        assert_eq!(
            below,
            format!(
                "  node1: engine_unreachable: {message}\n  node2: peer_unreachable: {message}\n"
            )
        );
    }
}
