//! `keyfleet diff [--pattern P] [--rate N]`: the client of `/api/v1/safety/diff`. It
//! starts a comparison of the whole keyspace across every node on the daemon asked,
//! shows its progress on a terminal, and prints the keys whose copies differ (after the
//! daemon's re-check). Exit status: 0 every node agrees, 1 keys differ (or the diff
//! failed, or is still running after `--wait`), 3 no daemon could be asked.

use crate::client::{ClientArgs, ClientError, Method, call};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Only keys matching this SCAN pattern (`user:*`).
    #[arg(long)]
    pub pattern: Option<String>,
    /// Keys a second at most, read on every node.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Stop waiting after this long (exit 1; the diff goes on).
    #[arg(long, default_value = "1h", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
    #[command(flatten)]
    pub client: ClientArgs,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn main(args: DiffArgs) -> u8 {
    crate::client::run("diff", diff(&args))
}

async fn diff(o: &DiffArgs) -> Result<u8, ClientError> {
    let (url, token) = o.client.daemon()?;
    let body = json!({"pattern": o.pattern, "rate": o.rate});
    let started = call(
        Method::PostJson(body),
        &url,
        "/api/v1/safety/diff",
        token.as_deref(),
        REQUEST_TIMEOUT,
    )
    .await?;
    let id = started["id"].clone();
    let tty = std::io::stderr().is_terminal() && !o.client.json;
    let t0 = Instant::now();
    let job = loop {
        let v = call(
            Method::Get,
            &url,
            "/api/v1/safety/diff",
            token.as_deref(),
            REQUEST_TIMEOUT,
        )
        .await?;
        if v["id"] != id || v["state"] != "running" {
            break v;
        }
        if tty {
            eprint!("\r\x1b[2K{}", progress(&v));
            let _ = std::io::stderr().flush();
        }
        if t0.elapsed() > o.wait {
            if tty {
                eprintln!();
            }
            eprintln!(
                "keyfleet diff: still running after {:?}: {}",
                o.wait,
                progress(&v)
            );
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if tty {
        eprintln!("\r\x1b[2K{}", progress(&job));
    }
    if o.client.json {
        println!("{}", serde_json::to_string_pretty(&job).expect("json"));
    } else {
        print!("{}", report(&job));
    }
    Ok(
        if job["state"] == "complete" && job["differing_total"] == 0 {
            0
        } else {
            1
        },
    )
}

fn progress(v: &Value) -> String {
    format!(
        "diff {}: {} of about {} keys compared, {} differed at first reading",
        v["phase"].as_str().unwrap_or("?"),
        v["compared"],
        v["total_estimate"],
        v["suspects"]
    )
}

/// The result, for people: one line per differing key, then each node's copy.
fn report(v: &Value) -> String {
    let mut out = String::new();
    if v["state"] == "failed" {
        out += &format!(
            "diff failed after {} keys: {} ({})\n",
            v["compared"],
            v["error"]["message"].as_str().unwrap_or("?"),
            v["error"]["code"].as_str().unwrap_or("?")
        );
        return out;
    }
    let differing = v["differing"].as_array().cloned().unwrap_or_default();
    out += &format!(
        "{} keys compared on every node; {} differ",
        v["compared"], v["differing_total"]
    );
    if v["differing_total"].as_u64().unwrap_or(0) > differing.len() as u64 {
        out += &format!(" (the first {} shown)", differing.len());
    }
    out += "\n";
    for d in &differing {
        out += &format!("db{} {}\n", d["db"], d["key"].as_str().unwrap_or("?"));
        for c in d["copies"].as_array().into_iter().flatten() {
            let what = if c["exists"] == true {
                let written = c["lastmodified_seconds"]
                    .as_i64()
                    .map_or(String::new(), |s| format!(" written {s}s ago"));
                format!(
                    "{} ttl {} value {}{written}",
                    c["type"].as_str().unwrap_or("?"),
                    c["ttl_ms"]
                        .as_i64()
                        .map_or("none".to_owned(), |t| format!("{t}ms")),
                    c["digest"].as_str().unwrap_or("?")
                )
            } else {
                "missing".to_owned()
            };
            out += &format!("  {:<12} {what}\n", c["node"].as_str().unwrap_or("?"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_each_nodes_copy() {
        let v = json!({"state": "complete", "compared": 10, "differing_total": 1, "differing": [
            {"db": 0, "key": "k", "copies": [
                {"node": "node1", "exists": true, "type": "string", "ttl_ms": null, "digest": "ab12", "lastmodified_seconds": 7},
                {"node": "node2", "exists": false, "type": "none", "ttl_ms": null, "digest": null}
            ]}
        ]});
        let r = report(&v);
        assert!(
            r.starts_with("10 keys compared on every node; 1 differ\n"),
            "{r}"
        );
        assert!(
            r.contains(
                "db0 k\n  node1        string ttl none value ab12 written 7s ago\n  node2        missing\n"
            ),
            "{r}"
        );
        let failed = json!({"state": "failed", "compared": 3,
            "error": {"code": "engine_unreachable", "message": "node2 down"}});
        assert_eq!(
            report(&failed),
            "diff failed after 3 keys: node2 down (engine_unreachable)\n"
        );
    }
}
