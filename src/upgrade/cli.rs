//! `keyfleet upgrade status|approve|confirm|rollback|stage|check-switch`: clients of
//! `/api/v1/upgrades…`, and staging into a dev fleet. Exit status: 0 done, 1 refused or
//! failed, 3 no daemon could be asked.

use crate::client::{ClientArgs, ClientError, Method, call};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct UpgradeArgs {
    #[command(subcommand)]
    pub command: UpgradeCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum UpgradeCommand {
    /// Every node's upgrade state, the next window, approvals waiting, and this node's
    /// history.
    Status {
        /// How many past attempts to show.
        #[arg(long, default_value_t = 10)]
        history: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approves a release that waits for a person's yes, on every node where it waits.
    Approve {
        /// The release (its id in `keyfleet upgrade status`).
        release: String,
        /// Go at once instead of waiting for a maintenance window.
        #[arg(long)]
        now: bool,
        /// Only on the node asked, not the whole fleet.
        #[arg(long)]
        this_node_only: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Keeps the generation switched to by hand even if its health gate fails.
    Confirm {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Goes back to the previous generation (the agent does it, then gates it).
    Rollback {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stages a candidate into a running dev fleet: ENGINE (a server binary) with each
    /// node's engine config, plus any --extra-conf lines.
    Stage {
        engine: PathBuf,
        /// The dev fleet's directory.
        #[arg(long, default_value = crate::client::DEFAULT_DEV_DIR)]
        dir: PathBuf,
        /// The release name [default: ENGINE_VERSION-TIMESTAMP].
        #[arg(long)]
        release: Option<String>,
        /// A line to append to every node's engine config (repeatable); a directive
        /// the engine rejects makes a broken candidate.
        #[arg(long = "extra-conf", value_name = "LINE")]
        extra_conf: Vec<String>,
        /// The engine version to record when `ENGINE --version` cannot tell.
        #[arg(long)]
        engine_version: Option<String>,
    },
    /// Whether a generation may be switched to by hand now (NixOS's preSwitchChecks
    /// runs this); exits 1 when the fleet is unhealthy or another node upgrades.
    CheckSwitch {
        /// The incoming system (preSwitchChecks' $1).
        toplevel: Option<String>,
        /// The action (preSwitchChecks' $2); only switch and boot are checked.
        action: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

const TIMEOUT: Duration = Duration::from_secs(15);

pub fn main(args: UpgradeArgs) -> u8 {
    match args.command {
        UpgradeCommand::Stage {
            engine,
            dir,
            release,
            extra_conf,
            engine_version,
        } => {
            if let Some(r) = &release
                && (r.is_empty()
                    || r.len() > 128
                    || !r
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)))
            {
                eprintln!(
                    "keyfleet upgrade stage: `{r}` is not a release name (letters, digits, . _ - +)"
                );
                return 2;
            }
            let c = super::stage::Candidate {
                engine,
                release,
                extra_conf,
                engine_version,
            };
            match super::stage::stage_fleet(&dir, &c) {
                Ok(release) => {
                    println!(
                        "staged release {release} on every node of {}; watch it with `keyfleet upgrade status --dir {}`",
                        dir.display(),
                        dir.display()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("keyfleet upgrade stage: {e}");
                    1
                }
            }
        }
        UpgradeCommand::Status { history, client } => {
            crate::client::run("upgrade status", status(client, history))
        }
        UpgradeCommand::Approve {
            release,
            now,
            this_node_only,
            client,
        } => crate::client::run(
            "upgrade approve",
            post(
                client,
                format!("/api/v1/upgrades/{release}/approve"),
                json!({"now": now, "fleet": !this_node_only}),
            ),
        ),
        UpgradeCommand::Confirm { client } => crate::client::run(
            "upgrade confirm",
            post(client, "/api/v1/upgrades/confirm".into(), json!({})),
        ),
        UpgradeCommand::Rollback { client } => crate::client::run(
            "upgrade rollback",
            post(client, "/api/v1/upgrades/rollback".into(), json!({})),
        ),
        UpgradeCommand::CheckSwitch {
            toplevel,
            action,
            client,
        } => {
            if !matches!(action.as_deref(), None | Some("switch") | Some("boot")) {
                return 0;
            }
            let code = crate::client::run("upgrade check-switch", check_switch(client, toplevel));
            if code != 0 {
                eprintln!(
                    "keyfleet: this switch is refused to keep the fleet safe; NIXOS_NO_CHECK=1 \
                     skips every pre-switch check if you must"
                );
            }
            if code == 0 { 0 } else { 1 }
        }
    }
}

async fn post(client: ClientArgs, path: String, body: Value) -> Result<u8, ClientError> {
    let (url, token) = client.daemon()?;
    let v = call(
        Method::PostJson(body),
        &url,
        &path,
        token.as_deref(),
        TIMEOUT,
    )
    .await?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else if let Some(nodes) = v["nodes"].as_array() {
        for n in nodes {
            match n["approved"].as_bool() {
                Some(true) => println!("{}: approved", n["node"].as_str().unwrap_or("?")),
                _ => println!(
                    "{}: not approved: {}",
                    n["node"].as_str().unwrap_or("?"),
                    n["error"]["message"].as_str().unwrap_or("?")
                ),
            }
        }
    } else if let Some(r) = v["confirmed"].as_str() {
        println!("confirmed: release {r} stays even if its gate fails");
    } else if v["requested"] == true {
        println!(
            "rollback requested: the agent switches back to the previous generation and gates it"
        );
    } else {
        println!("{v}");
    }
    Ok(0)
}

async fn check_switch(client: ClientArgs, toplevel: Option<String>) -> Result<u8, ClientError> {
    let (url, token) = client.daemon()?;
    match call(
        Method::Get,
        &url,
        "/api/v1/upgrades/preflight",
        token.as_deref(),
        TIMEOUT,
    )
    .await
    {
        Ok(v) => {
            println!(
                "keyfleet: switch to {} allowed: {}",
                toplevel.as_deref().unwrap_or("the new generation"),
                v["reason"].as_str().unwrap_or("")
            );
            Ok(0)
        }
        Err(ClientError::Refused { message, .. }) => {
            eprintln!("keyfleet: switch refused: {message}");
            Ok(1)
        }
        Err(e) => Err(e),
    }
}

async fn status(client: ClientArgs, history: usize) -> Result<u8, ClientError> {
    let v = client
        .get_json(
            &format!("/api/v1/upgrades?fleet=true&history={history}"),
            TIMEOUT,
        )
        .await?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!("{}", text(&v));
    }
    Ok(0)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// The status for people.
pub fn text(v: &Value) -> String {
    let mut out = String::new();
    if v["enabled"] == false {
        let _ = writeln!(out, "{}: {}", s(&v["node"]), s(&v["message"]));
        return out;
    }
    let _ = writeln!(
        out,
        "{:<10} {:<14} {:<34} LEASE",
        "NODE", "STATE", "RELEASE"
    );
    for n in v["fleet"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let lease = n["lease"]["holder"]
            .as_str()
            .map_or("-".to_owned(), |h| format!("held by {h}"));
        let state = if n["error"].is_null() {
            s(&n["state"]).to_owned()
        } else {
            "unreachable".into()
        };
        let _ = writeln!(
            out,
            "{:<10} {:<14} {:<34} {lease}",
            s(&n["node"]),
            state,
            s(&n["current_release"])
        );
    }
    let _ = writeln!(out);
    let node = s(&v["node"]);
    let cur = &v["current"];
    let _ = writeln!(
        out,
        "{node}: runs {} ({} {}), state {}",
        s(&cur["release"]),
        s(&cur["engine"]),
        s(&cur["engine_version"]),
        s(&v["state"])
    );
    if v["window_open"] == true {
        let _ = writeln!(
            out,
            "  window: open now ({})",
            s(&v["open_window"]["window"])
        );
    }
    match &v["next_window"] {
        Value::Null if v["window_open"] != true => {
            let _ = writeln!(out, "  window: none configured: automatic upgrades wait");
        }
        Value::Null => {}
        w => {
            let _ = writeln!(
                out,
                "  next window: {} = {} UTC ({} {})",
                s(&w["window"]),
                s(&w["start_utc"]),
                s(&w["start_local"]),
                s(&w["zone"])
            );
        }
    }
    if let Some(p) = v["pending"].as_object() {
        let _ = writeln!(
            out,
            "  waiting ({}): release {} ({}): {}",
            s(&p["waiting_for"]),
            s(&p["release"]),
            s(&p["class"]),
            s(&p["reason"])
        );
    }
    if let Some(a) = v["active"].as_object() {
        let _ = writeln!(
            out,
            "  under way: attempt {} to {} ({})",
            s(&a["id"]),
            s(&a["release"]),
            s(&a["phase"])
        );
    }
    let history = v["history"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !history.is_empty() {
        let _ = writeln!(out, "  history (newest first):");
    }
    for a in history {
        let gate = a["gate"]["seconds"]
            .as_f64()
            .map_or("-".into(), |g| format!("{g:.1}s"));
        let why = a["rollback_reason"].as_str().unwrap_or(s(&a["decision"]));
        let _ = writeln!(
            out,
            "    {} {} {} {} -> {} gate {gate} {}: {why}",
            s(&a["id"]),
            s(&a["kind"]),
            s(&a["class"]),
            s(&a["from"]["release"]),
            s(&a["release"]),
            a["outcome"].as_str().unwrap_or(s(&a["phase"])),
        );
    }
    out
}
