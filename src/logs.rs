//! `keyfleet logs status` and `keyfleet logs flush`: clients of `GET /api/v1/logs` and
//! `POST /api/v1/logs/flush`. Log shipping is per node, so both ask every daemon of the
//! target (one with `--api`, each node of a dev fleet). A flush rotates every source now
//! and waits until everything queued up to then is uploaded, with a progress line on a
//! terminal. Exit status: 0 all shipped and healthy, 1 a node failing (or the flush timed
//! out), 3 no daemon could be asked.

use crate::client::{ClientArgs, ClientError, Method, call};
use crate::status::human_bytes;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(subcommand)]
    pub command: LogsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum LogsCommand {
    /// Log shipping per node and source: queue, last upload, last error, dropped bytes.
    Status(LogsOptions),
    /// Rotate every log now and wait until the store has confirmed every segment.
    Flush(FlushOptions),
}

#[derive(clap::Args, Debug)]
pub struct LogsOptions {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Give up on a daemon after this long.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct FlushOptions {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Stop waiting for the uploads after this long (exit 1).
    #[arg(long, default_value = "120s", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
}

/// How long one request to a daemon may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn main(args: LogsArgs) -> u8 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match args.command {
        LogsCommand::Status(o) => rt.block_on(status(&o)),
        LogsCommand::Flush(o) => rt.block_on(flush(&o)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyfleet logs: {e}");
            3
        }
    }
}

/// Every daemon of the target: (API URL, its answer or why not).
async fn ask_all(
    client: &ClientArgs,
    method: Method,
    path: &str,
    timeout: Duration,
) -> Result<Vec<(String, Result<Value, ClientError>)>, ClientError> {
    let target = client.target()?;
    let token = client.token()?;
    let mut out = Vec::new();
    for base in &target.urls {
        out.push((
            base.clone(),
            call(method.clone(), base, path, token.as_deref(), timeout).await,
        ));
    }
    if out
        .iter()
        .all(|(_, r)| matches!(r, Err(ClientError::NoAnswer(_))))
    {
        let why: Vec<String> = out
            .into_iter()
            .filter_map(|(_, r)| r.err().map(|e| e.to_string()))
            .collect();
        return Err(ClientError::NoAnswer(why.join("; ")));
    }
    Ok(out)
}

async fn status(o: &LogsOptions) -> Result<u8, ClientError> {
    let answers = ask_all(&o.client, Method::Get, "/api/v1/logs", o.timeout).await?;
    let mut code = 0;
    let mut nodes = Vec::new();
    for (url, answer) in answers {
        match answer {
            Ok(v) => {
                if !healthy(&v) {
                    code = 1;
                }
                nodes.push(json!({"api_url": url, "logs": v}));
            }
            Err(e) => {
                code = 1;
                nodes.push(json!({"api_url": url, "error": e.to_string()}));
            }
        }
    }
    if o.client.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"nodes": nodes})).expect("json")
        );
    } else {
        print!("{}", table(&nodes));
    }
    Ok(code)
}

/// Shipping is healthy when it runs, its last attempt succeeded and nothing was dropped.
fn healthy(logs: &Value) -> bool {
    if logs["enabled"] == false {
        return true;
    }
    let dropped = logs["sources"].as_array().is_some_and(|s| {
        s.iter()
            .any(|s| s["dropped_bytes"].as_u64().unwrap_or(0) > 0)
    });
    logs["failing"] != true && logs["budget"]["full"] != true && !dropped
}

/// One block per node: where it ships, then a row per source.
pub fn table(nodes: &[Value]) -> String {
    let mut out = String::new();
    for n in nodes {
        let url = n["api_url"].as_str().unwrap_or("?");
        if let Some(e) = n["error"].as_str() {
            out += &format!("{url}: {e}\n\n");
            continue;
        }
        let l = &n["logs"];
        if l["enabled"] == false {
            out += &format!("{url}: log shipping is not configured (no [logs] table)\n\n");
            continue;
        }
        let state = if l["failing"] == true {
            "FAILING"
        } else {
            "ok"
        };
        let prefix = l["prefix"].as_str().unwrap_or("");
        out += &format!(
            "{url}: s3://{}{}{prefix} at {}, {state}, last upload {}\n",
            l["bucket"].as_str().unwrap_or("?"),
            if prefix.is_empty() { "" } else { "/" },
            l["endpoint"].as_str().unwrap_or("?"),
            ago(l["last_success_at"].as_i64())
        );
        let mut rows = vec![
            [
                "SOURCE",
                "ACTIVE",
                "QUEUED",
                "UPLOADED",
                "DROPPED",
                "LAST UPLOAD",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for s in l["sources"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            rows.push(vec![
                s["source"].as_str().unwrap_or("?").to_owned(),
                human_bytes(n("active_bytes")),
                format!(
                    "{} ({})",
                    n("queued_segments"),
                    human_bytes(n("queued_bytes"))
                ),
                format!(
                    "{} ({})",
                    n("uploaded_segments"),
                    human_bytes(n("uploaded_bytes"))
                ),
                human_bytes(n("dropped_bytes")),
                ago(s["last_upload"]["at"].as_i64()),
            ]);
        }
        out += &crate::status::columns(&rows);
        let budget = &l["budget"];
        out += &format!(
            "budget: {} of {} used{}\n",
            human_bytes(budget["used_bytes"].as_u64().unwrap_or(0)),
            human_bytes(budget["max_local_bytes"].as_u64().unwrap_or(0)),
            if budget["full"] == true { ", FULL" } else { "" }
        );
        if let Some(e) = l["last_error"].as_object() {
            out += &format!(
                "last error ({}, {}): {}\n",
                e.get("code").and_then(Value::as_str).unwrap_or("?"),
                ago(e.get("at").and_then(Value::as_i64)),
                e.get("message").and_then(Value::as_str).unwrap_or("")
            );
        }
        out.push('\n');
    }
    out
}

/// One node a flush waits on: its URL, the last segment of the flush, the bytes that
/// were pending then, and the outcome once known.
struct NodeWait {
    url: String,
    through: Option<u64>,
    pending: u64,
    done: Option<Result<Value, String>>,
}

async fn flush(o: &FlushOptions) -> Result<u8, ClientError> {
    let answers = ask_all(
        &o.client,
        Method::Post,
        "/api/v1/logs/flush",
        REQUEST_TIMEOUT,
    )
    .await?;
    let token = o.client.token()?;
    let tty = std::io::stderr().is_terminal() && !o.client.json;
    let mut waits: Vec<NodeWait> = Vec::new();
    for (url, answer) in answers {
        match answer {
            Ok(t) => waits.push(NodeWait {
                url,
                through: t["through_seq"].as_u64(),
                pending: t["pending_bytes"].as_u64().unwrap_or(0),
                done: None,
            }),
            Err(e) => waits.push(NodeWait {
                url,
                through: None,
                pending: 0,
                done: Some(Err(e.to_string())),
            }),
        }
    }
    let started = Instant::now();
    loop {
        let mut left = 0u64;
        let mut total = 0u64;
        for NodeWait {
            url,
            through,
            pending,
            done,
        } in waits.iter_mut()
        {
            if done.is_some() {
                continue;
            }
            total += *pending;
            match call(
                Method::Get,
                url,
                "/api/v1/logs",
                token.as_deref(),
                REQUEST_TIMEOUT,
            )
            .await
            {
                Ok(v) => {
                    let oldest = v["oldest_pending_seq"].as_u64();
                    let finished = match (through, oldest) {
                        (None, _) | (_, None) => true,
                        (Some(t), Some(o)) => o > *t,
                    };
                    if finished {
                        *done = Some(Ok(v));
                    } else {
                        let queued: u64 = v["sources"]
                            .as_array()
                            .map(|s| {
                                s.iter()
                                    .map(|s| s["queued_bytes"].as_u64().unwrap_or(0))
                                    .sum()
                            })
                            .unwrap_or(0);
                        left += queued.min(*pending);
                        if started.elapsed() >= o.wait {
                            let why = v["last_error"]["message"]
                                .as_str()
                                .unwrap_or("still uploading");
                            *done = Some(Err(format!("not shipped within {:?}: {why}", o.wait)));
                        }
                    }
                }
                Err(e) if started.elapsed() >= o.wait => *done = Some(Err(e.to_string())),
                Err(_) => left += *pending,
            }
        }
        if waits.iter().all(|w| w.done.is_some()) {
            break;
        }
        if tty {
            let shipped = total.saturating_sub(left);
            let pct = (shipped * 100).checked_div(total).unwrap_or(100);
            let bar = "#".repeat((pct / 5) as usize) + &"-".repeat(20 - (pct / 5) as usize);
            eprint!(
                "\rflushing [{bar}] {pct:3}%  {} of {}   ",
                human_bytes(shipped),
                human_bytes(total)
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if tty {
        eprint!("\r{}\r", " ".repeat(60));
    }
    let mut code = 0;
    let mut nodes = Vec::new();
    for NodeWait { url, done, .. } in waits {
        match done.expect("every wait ended") {
            Ok(v) => {
                if !o.client.json {
                    println!(
                        "{url}: shipped; last upload {}",
                        ago(v["last_success_at"].as_i64())
                    );
                }
                nodes.push(json!({"api_url": url, "shipped": true, "logs": v}));
            }
            Err(e) => {
                code = 1;
                if !o.client.json {
                    println!("{url}: {e}");
                }
                nodes.push(json!({"api_url": url, "shipped": false, "error": e}));
            }
        }
    }
    if o.client.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"nodes": nodes})).expect("json")
        );
    }
    Ok(code)
}

fn ago(unix: Option<i64>) -> String {
    let Some(t) = unix else { return "never".into() };
    let secs = (crate::logship::now_unix() - t).max(0);
    match secs {
        0..120 => format!("{secs}s ago"),
        120..7200 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(64 << 20), "64.0MiB");
    }

    #[test]
    fn dropped_bytes_or_a_failing_uploader_is_unhealthy() {
        let ok = json!({"enabled": true, "failing": false, "budget": {"full": false}, "sources": [{"dropped_bytes": 0}]});
        assert!(healthy(&ok));
        let mut dropped = ok.clone();
        dropped["sources"][0]["dropped_bytes"] = json!(10);
        assert!(!healthy(&dropped));
        let mut failing = ok.clone();
        failing["failing"] = json!(true);
        assert!(!healthy(&failing));
        assert!(healthy(&json!({"enabled": false})));
    }
}
