//! `keyfleet backup restore ID --to HOST:PORT | --scratch` and `keyfleet backup
//! history`: clients of `POST /api/v1/backups/{id}/restore` and `GET /api/v1/restores`.
//! `--scratch` starts a throwaway engine here (KeyDB or redis-server, found as `dev`
//! finds it) on a free loopback port with its data in a temporary directory, has the
//! daemon load the backup into it, and keeps it running until Ctrl-C or SIGTERM: its
//! memory and lifetime are the operator's session's, not the daemon's. The daemon must
//! then run on this machine (it connects to the engine's loopback address).

use crate::client::{ClientArgs, ClientError, Method, call};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("into").required(true).args(["to", "scratch"])))]
pub struct RestoreOptions {
    /// The backup's id (`keyfleet backup list`).
    pub id: String,
    /// An empty engine outside the fleet's mesh, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// Start a throwaway engine on this machine and load the backup into it.
    #[arg(long)]
    pub scratch: bool,
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
    let path = format!("/api/v1/backups/{}/restore", o.id);
    let started = call(Method::PostJson(body), url, &path, token, REQUEST_TIMEOUT).await?;
    let requested_at = started["restore"]["requested_at"].as_i64();
    let tty = std::io::stderr().is_terminal() && !o.client.json;
    let t0 = Instant::now();
    let record = loop {
        let v = call(Method::Get, url, "/api/v1/restores", token, REQUEST_TIMEOUT).await?;
        let mine = v["restores"].as_array().and_then(|all| {
            all.iter()
                .rev()
                .find(|r| {
                    r["backup"] == o.id.as_str() && r["requested_at"].as_i64() == requested_at
                })
                .cloned()
        });
        match mine {
            Some(r) if r["outcome"] != "running" => break r,
            _ if t0.elapsed() > o.wait => {
                eprintln!(
                    "\nkeyfleet backup: restoring {} into {target} still runs after {:?}; see `keyfleet backup history`",
                    o.id, o.wait
                );
                return Ok(1);
            }
            _ => {}
        }
        if tty {
            eprint!(
                "\rrestoring {} into {target}: {:.0}s",
                o.id,
                t0.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if tty {
        eprintln!();
    }
    if o.client.json {
        println!("{}", serde_json::to_string_pretty(&record).expect("json"));
    }
    if record["outcome"] != "complete" {
        eprintln!(
            "keyfleet backup: restoring {} failed: {} ({})",
            o.id,
            record["error"]["message"].as_str().unwrap_or("?"),
            record["error"]["code"].as_str().unwrap_or("?")
        );
        return Ok(1);
    }
    let keys: u64 = record["keys"]
        .as_object()
        .map(|k| k.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    if !o.client.json {
        println!(
            "backup {} loaded into {target}: {keys} keys {}",
            o.id, record["keys"]
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

/// A throwaway engine: stopped, and its directory deleted, when dropped (the engine is
/// declared first, so it stops before its directory goes).
struct Scratch {
    engine: crate::dev::supervise::Supervised,
    port: u16,
    dir: ScratchDir,
}

/// A private temporary directory, deleted when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> Result<ScratchDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let name = format!("keyfleet-scratch-{}", crate::s3::random_hex(6)?);
        let path = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    fn start() -> Result<Scratch, String> {
        let (bin, _) = crate::dev::find_engine().ok_or(
            "--scratch needs keydb-server (KEYFLEET_KEYDB_SERVER or PATH) or redis-server on PATH",
        )?;
        let dir = ScratchDir::new()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let mut cmd = std::process::Command::new(&bin);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path());
        let child = crate::dev::supervise::spawn(&mut cmd, &dir.path().join("engine.log"))?;
        let engine = crate::dev::supervise::Supervised {
            what: format!("the scratch engine on port {port}"),
            child,
            exited: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {port} within 10s",
                    bin.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Scratch { engine, port, dir })
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
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
        "{:<20} {:<34} {:<22} {:<9} ASKED BY",
        "WHEN", "BACKUP", "TARGET", "OUTCOME"
    );
    for r in &rows {
        let when = jiff::Timestamp::from_second(r["requested_at"].as_i64().unwrap_or(0))
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        println!(
            "{:<20} {:<34} {:<22} {:<9} {}",
            when,
            r["backup"].as_str().unwrap_or("?"),
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
