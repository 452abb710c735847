//! `keyfleet backup restore ID --to HOST:PORT | --scratch | --fleet --yes`, `keyfleet
//! backup rebuild --yes`, `keyfleet backup release --yes` and `keyfleet backup
//! history`: clients of `POST /api/v1/backups/{id}/restore`, `POST /api/v1/restores`,
//! `POST /api/v1/restores/steps` and `GET /api/v1/restores`. Each waits for the outcome
//! in the history, with a progress line on a terminal.
//!
//! `--scratch` starts a throwaway engine here (`scratch`) and has the daemon load the
//! backup into it, then keeps it running until Ctrl-C or SIGTERM: its memory and
//! lifetime are the operator's session's, not the daemon's. The daemon must then run on
//! this machine (it connects to the engine's loopback address).

use crate::client::{ClientArgs, ClientError, Method, call};
use crate::scratch::{Scratch, wait_for_signal};
use crate::status::human_bytes;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("into").required(true).args(["to", "scratch", "fleet"])))]
pub struct RestoreOptions {
    /// The backup's id (`keyfleet backup list`).
    pub id: String,
    /// An empty engine outside the fleet's mesh, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// Start a throwaway engine on this machine and load the backup into it.
    #[arg(long)]
    pub scratch: bool,
    /// Restore every node of the fleet to the backup: writes are refused meanwhile, and
    /// everything written since the backup is gone afterwards. Needs --yes.
    #[arg(long, requires = "yes")]
    pub fleet: bool,
    /// Confirm a restore that changes the fleet's data.
    #[arg(long)]
    pub yes: bool,
    /// The target engine's user (with --to).
    #[arg(long, requires = "to")]
    pub user: Option<String>,
    /// File holding the target engine's password (with --to).
    #[arg(long, value_name = "FILE", requires = "to")]
    pub password_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Stop waiting after this long (exit 1; the restore goes on).
    #[arg(long, default_value = "1h", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
}

#[derive(clap::Args, Debug)]
pub struct RebuildOptions {
    /// The peer to copy (default: the first, by name, with all its links up).
    #[arg(long, value_name = "PEER")]
    pub from: Option<String>,
    /// Confirm: the node's data is replaced by its peer's.
    #[arg(long, required = true)]
    pub yes: bool,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Stop waiting after this long (exit 1; the rebuild goes on).
    #[arg(long, default_value = "1h", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
}

#[derive(clap::Args, Debug)]
pub struct ReleaseOptions {
    /// Confirm: the node's links come back as configured and it takes writes again,
    /// merging whatever it holds with its peers.
    #[arg(long, required = true)]
    pub yes: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn restore(
    o: &RestoreOptions,
    url: &str,
    token: Option<&str>,
) -> Result<u8, ClientError> {
    let scratch = if o.scratch {
        let host = url
            .trim_start_matches("http://")
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        if !matches!(host, "127.0.0.1" | "localhost" | "[") {
            return Err(ClientError::Target(format!(
                "--scratch starts the engine on this machine's loopback, which the daemon at {url} cannot reach; use --to with an engine it can"
            )));
        }
        Some(Scratch::start().map_err(ClientError::Target)?)
    } else {
        None
    };
    let body = if o.fleet {
        json!({"mode": "fleet", "confirm": o.yes})
    } else {
        let target = match &scratch {
            Some(s) => format!("127.0.0.1:{}", s.port),
            None => o.to.clone().unwrap_or_default(),
        };
        let mut body = json!({"mode": "to", "target": target});
        if let Some(user) = &o.user {
            body["user"] = json!(user);
        }
        if let Some(file) = &o.password_file {
            let password = std::fs::read_to_string(file)
                .map_err(|e| ClientError::Target(format!("{}: {e}", file.display())))?;
            body["password"] = json!(password.trim_end_matches(['\n', '\r']));
        }
        body
    };
    let path = format!("/api/v1/backups/{}/restore", o.id);
    let started = call(Method::PostJson(body), url, &path, token, REQUEST_TIMEOUT).await?;
    let target = started["restore"]["target"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let what = format!("restoring {} into {target}", o.id);
    let Some(record) = follow(&started, &what, o.wait, o.client.json, url, token).await? else {
        return Ok(1);
    };
    if !o.client.json {
        println!(
            "backup {} loaded into {target}: {} keys {}",
            o.id,
            total(&record["keys"]),
            record["keys"]
        );
    }
    if let Some(s) = scratch {
        // On stdout, so scripts can read where the engine is.
        println!(
            "scratch engine: 127.0.0.1:{} (pid {}, data in {}); Ctrl-C stops it and deletes its data",
            s.port,
            s.engine.child.id(),
            s.dir.path().display()
        );
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
    }
    Ok(0)
}

/// `keyfleet backup rebuild`: the daemon's node emptied and copied from a peer.
pub async fn rebuild(
    o: &RebuildOptions,
    url: &str,
    token: Option<&str>,
) -> Result<u8, ClientError> {
    let mut body = json!({"mode": "rebuild", "confirm": o.yes});
    if let Some(from) = &o.from {
        body["from"] = json!(from);
    }
    let started = call(
        Method::PostJson(body),
        url,
        "/api/v1/restores",
        token,
        REQUEST_TIMEOUT,
    )
    .await?;
    let what = format!(
        "rebuilding {}",
        started["restore"]["target"].as_str().unwrap_or("?")
    );
    let Some(record) = follow(&started, &what, o.wait, o.client.json, url, token).await? else {
        return Ok(1);
    };
    if !o.client.json {
        println!(
            "{what}: done, {} keys {}",
            total(&record["keys"]),
            record["keys"]
        );
    }
    Ok(0)
}

/// `keyfleet backup release`: the way out of an in-fleet restore that stopped half way.
pub async fn release(
    o: &ReleaseOptions,
    url: &str,
    token: Option<&str>,
) -> Result<u8, ClientError> {
    let body =
        json!({"session": "release", "coordinator": "keyfleet backup release", "step": "release"});
    let v = call(
        Method::PostJson(body),
        url,
        "/api/v1/restores/steps",
        token,
        REQUEST_TIMEOUT,
    )
    .await?;
    if o.client.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        println!(
            "node {}: linked as configured ({} masters), takes writes again; {} keys {}",
            v["node"].as_str().unwrap_or("?"),
            v["state"]["masters"].as_object().map_or(0, |m| m.len()),
            total(&v["state"]["keys"]),
            v["state"]["keys"]
        );
    }
    Ok(0)
}

fn total(keys: &Value) -> u64 {
    keys.as_object()
        .map(|k| k.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Polls the history until the restore `started` answered for has ended; prints its
/// failure, and its record with --json. The record when it completed; None when it
/// failed or `wait` ran out.
async fn follow(
    started: &Value,
    what: &str,
    wait: Duration,
    json_out: bool,
    url: &str,
    token: Option<&str>,
) -> Result<Option<Value>, ClientError> {
    let id = started["restore"]["id"].as_str().unwrap_or_default();
    let tty = std::io::stderr().is_terminal() && !json_out;
    let t0 = Instant::now();
    let record = loop {
        let v = call(Method::Get, url, "/api/v1/restores", token, REQUEST_TIMEOUT).await?;
        let mine = v["restores"]
            .as_array()
            .and_then(|all| all.iter().rev().find(|r| r["id"] == id).cloned());
        match mine {
            Some(r) if r["outcome"] != "running" => break r,
            Some(r) if tty => {
                let sent = match (r["sent_bytes"].as_u64(), r["rdb_bytes"].as_u64()) {
                    (Some(s), Some(t)) => format!("{} of {} RDB ", human_bytes(s), human_bytes(t)),
                    _ => String::new(),
                };
                eprint!(
                    "\r{what}: {:<8} {sent}{:.0}s   ",
                    r["phase"].as_str().unwrap_or("loading"),
                    t0.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
            }
            _ => {}
        }
        if t0.elapsed() > wait {
            eprintln!(
                "\nkeyfleet backup: {what} still runs after {wait:?}; see `keyfleet backup history`"
            );
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if tty {
        eprintln!();
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&record).expect("json"));
    }
    if record["outcome"] != "complete" {
        eprintln!(
            "keyfleet backup: {what} failed: {} ({})",
            record["error"]["message"].as_str().unwrap_or("?"),
            record["error"]["code"].as_str().unwrap_or("?")
        );
        return Ok(None);
    }
    Ok(Some(record))
}

/// `keyfleet backup history`: the restores recorded on the daemon's node.
pub async fn history(json_out: bool, url: &str, token: Option<&str>) -> Result<u8, ClientError> {
    let v = call(Method::Get, url, "/api/v1/restores", token, REQUEST_TIMEOUT).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(0);
    }
    let rows = v["restores"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no restores yet");
        return Ok(0);
    }
    println!(
        "{:<20} {:<8} {:<34} {:<22} {:<9} ASKED BY",
        "WHEN", "MODE", "BACKUP", "TARGET", "OUTCOME"
    );
    for r in &rows {
        let when = jiff::Timestamp::from_second(r["requested_at"].as_i64().unwrap_or(0))
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        println!(
            "{:<20} {:<8} {:<34} {:<22} {:<9} {}",
            when,
            r["mode"].as_str().unwrap_or("?"),
            r["backup"]
                .as_str()
                .filter(|b| !b.is_empty())
                .unwrap_or("-"),
            r["target"].as_str().unwrap_or("?"),
            r["outcome"].as_str().unwrap_or("?"),
            r["requested_by"].as_str().unwrap_or("?")
        );
        if let Some(code) = r["error"]["code"].as_str() {
            println!(
                "    {code}: {}",
                r["error"]["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(0)
}
