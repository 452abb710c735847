//! `keyfleet backup create|list|show` (and `restore|history`, in `restore_cli`): clients
//! of `/api/v1/backups`. `create` asks one
//! daemon (`--api`, or the first node of a dev fleet) for a backup and waits for it,
//! with a progress line on a terminal. Exit status: 0 done, 1 the backup failed (or the
//! wait timed out), 3 no daemon could be asked.

use crate::client::{ClientArgs, ClientError, Method, call};
use crate::status::human_bytes;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Snapshot the node's engine to S3 now and wait until its manifest is stored.
    Create(CreateOptions),
    /// The fleet's complete backups, oldest first.
    List(Options),
    /// One backup: its manifest, or its progress while it runs.
    Show(ShowOptions),
    /// Load a backup into an engine outside the fleet: an empty one (--to HOST:PORT), or
    /// a throwaway one started here (--scratch, running until Ctrl-C); or restore every
    /// node of the fleet to it (--fleet --yes).
    Restore(crate::restore_cli::RestoreOptions),
    /// Empty the daemon's node and copy a healthy peer's data into it (--yes).
    Rebuild(crate::restore_cli::RebuildOptions),
    /// End an in-fleet restore that stopped half way on the daemon's node: its links as
    /// configured, writes allowed again (--yes).
    Release(crate::restore_cli::ReleaseOptions),
    /// The restores recorded on the daemon's node: who asked, when, and the outcome.
    History(Options),
}

#[derive(clap::Args, Debug)]
pub struct Options {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct CreateOptions {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Stop waiting after this long (exit 1; the backup goes on).
    #[arg(long, default_value = "1h", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
}

#[derive(clap::Args, Debug)]
pub struct ShowOptions {
    /// The backup's id (`keyfleet backup list`).
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub fn main(args: BackupArgs) -> u8 {
    crate::client::run("backup", async {
        match args.command {
            BackupCommand::Create(o) => create(&o).await,
            BackupCommand::List(o) => list(&o).await,
            BackupCommand::Show(o) => show(&o).await,
            BackupCommand::Restore(o) => {
                let (url, token) = o.client.daemon()?;
                crate::restore_cli::restore(&o, &url, token.as_deref()).await
            }
            BackupCommand::Rebuild(o) => {
                let (url, token) = o.client.daemon()?;
                crate::restore_cli::rebuild(&o, &url, token.as_deref()).await
            }
            BackupCommand::Release(o) => {
                let (url, token) = o.client.daemon()?;
                crate::restore_cli::release(&o, &url, token.as_deref()).await
            }
            BackupCommand::History(o) => {
                let (url, token) = o.client.daemon()?;
                crate::restore_cli::history(o.client.json, &url, token.as_deref()).await
            }
        }
    })
}

async fn create(o: &CreateOptions) -> Result<u8, ClientError> {
    let (url, token) = o.client.daemon()?;
    let started = call(
        Method::Post,
        &url,
        "/api/v1/backups",
        token.as_deref(),
        REQUEST_TIMEOUT,
    )
    .await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/backups/{id}");
    let tty = std::io::stderr().is_terminal() && !o.client.json;
    let t0 = Instant::now();
    loop {
        let v = call(Method::Get, &url, &path, token.as_deref(), REQUEST_TIMEOUT).await?;
        let state = v["state"].as_str();
        if tty && matches!(state, Some("complete" | "failed")) {
            eprintln!(); // ends the progress line
        }
        match state {
            Some("complete") => {
                print_one(&v, o.client.json);
                return Ok(0);
            }
            Some("failed") => {
                let err = &v["progress"]["error"];
                if o.client.json {
                    print_one(&v, true);
                }
                eprintln!(
                    "keyfleet backup: {id} failed: {} ({})",
                    err["message"].as_str().unwrap_or("?"),
                    err["code"].as_str().unwrap_or("?")
                );
                return Ok(1);
            }
            state => {
                if tty {
                    let p = &v["progress"];
                    let (done, total) = (
                        p["uploaded_bytes"].as_u64().unwrap_or(0),
                        p["rdb_bytes"].as_u64().unwrap_or(0),
                    );
                    eprint!(
                        "\r{id}: {:<8} {} uploaded (RDB {})   ",
                        state.unwrap_or("?"),
                        human_bytes(done),
                        human_bytes(total)
                    );
                    let _ = std::io::stderr().flush();
                }
            }
        }
        if t0.elapsed() > o.wait {
            eprintln!(
                "\nkeyfleet backup: {id} still running after {:?}; see `keyfleet backup show {id}`",
                o.wait
            );
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn list(o: &Options) -> Result<u8, ClientError> {
    let (url, token) = o.client.daemon()?;
    let v = call(
        Method::Get,
        &url,
        "/api/v1/backups",
        token.as_deref(),
        REQUEST_TIMEOUT,
    )
    .await?;
    if o.client.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(0);
    }
    let rows = v["backups"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no backups yet");
    } else {
        println!(
            "{:<34} {:<10} {:>10} {:>10} {:>8}",
            "ID", "NODE", "KEYS", "STORED", "SECONDS"
        );
        for m in &rows {
            let keys: u64 = m["keys"]
                .as_object()
                .map(|k| k.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            println!(
                "{:<34} {:<10} {:>10} {:>10} {:>8.1}",
                m["id"].as_str().unwrap_or("?"),
                m["node"].as_str().unwrap_or("?"),
                keys,
                human_bytes(m["stored_bytes"].as_u64().unwrap_or(0)),
                m["duration_seconds"].as_f64().unwrap_or(0.0)
            );
        }
    }
    if let Some(r) = v["running"]
        .as_object()
        .filter(|r| r["state"] == "snapshot" || r["state"] == "upload")
    {
        println!(
            "running: {} ({})",
            r["id"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?")
        );
    }
    Ok(0)
}

async fn show(o: &ShowOptions) -> Result<u8, ClientError> {
    let (url, token) = o.client.daemon()?;
    let v = call(
        Method::Get,
        &url,
        &format!("/api/v1/backups/{}", o.id),
        token.as_deref(),
        REQUEST_TIMEOUT,
    )
    .await?;
    print_one(&v, o.client.json);
    Ok(if v["state"] == "failed" { 1 } else { 0 })
}

fn print_one(v: &Value, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).expect("json"));
        return;
    }
    let Some(m) = v["manifest"].as_object() else {
        println!(
            "{}: {}",
            v["id"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?")
        );
        return;
    };
    for key in [
        "id",
        "node",
        "engine",
        "engine_version",
        "created_at",
        "object",
        "compression",
    ] {
        println!("{key:<16} {}", m[key].as_str().unwrap_or("?"));
    }
    println!(
        "{:<16} {}",
        "rdb",
        human_bytes(m["rdb_bytes"].as_u64().unwrap_or(0))
    );
    println!(
        "{:<16} {}",
        "stored",
        human_bytes(m["stored_bytes"].as_u64().unwrap_or(0))
    );
    println!(
        "{:<16} {}",
        "stored_sha256",
        m["stored_sha256"].as_str().unwrap_or("?")
    );
    println!("{:<16} {}", "keys", m["keys"]);
    println!(
        "{:<16} {:.1}s",
        "duration",
        m["duration_seconds"].as_f64().unwrap_or(0.0)
    );
}
