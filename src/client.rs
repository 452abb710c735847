//! What every client command (`status`, and `logs`, `backup`, `upgrade`, `diff` as they
//! come) shares: which daemon to ask, with which token, and how to ask it. One rule for
//! all of them, so a flag or a variable means the same everywhere:
//!
//! 1. `--api URL`, else `--dir DIR` (that dev fleet's `fleet.json`);
//! 2. else `KEYFLEET_API`, else `KEYFLEET_DIR`;
//! 3. else `./.keyfleet-dev/fleet.json` when it exists (a dev fleet started here);
//! 4. else `http://127.0.0.1:9850`, the daemon's default address.
//!
//! A `fleet.json` lists every node: the first whose daemon answers is asked, so one
//! stopped daemon does not hide the fleet. This module only finds and asks; what an
//! answer means is the command's business.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `keyfleet dev`'s directory when `--dir` is not given, relative to the working directory.
pub const DEFAULT_DEV_DIR: &str = ".keyfleet-dev";
/// Where a daemon listens unless configured otherwise.
pub const DEFAULT_API: &str = "http://127.0.0.1:9850";

/// The options every client command takes (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// The daemon's API [env: KEYFLEET_API] [default: a dev fleet's, else http://127.0.0.1:9850]
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    pub api: Option<String>,
    /// A `keyfleet dev` directory: ask the fleet its fleet.json lists [env: KEYFLEET_DIR] [default: ./.keyfleet-dev when it has a fleet.json]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// File holding the API's bearer token.
    #[arg(long, value_name = "FILE", env = "KEYFLEET_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the daemon's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the daemon to ask was found, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--api` or `KEYFLEET_API`.
    Api,
    /// A dev fleet's `fleet.json`.
    FleetFile(PathBuf),
    /// Nothing given and no dev fleet here.
    Default,
}

/// The daemons a command may ask, in order, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub urls: Vec<String>,
    pub source: Source,
}

/// A client command that could not get an answer; `main` prints it and exits 3.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Target(String),
    #[error("--token-file {file}: {source}")]
    Token {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("--token-file {0}: the file is empty")]
    EmptyToken(PathBuf),
    #[error("{0}")]
    NoAnswer(String),
    #[error("{url}: HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: not JSON: {detail}")]
    NotJson { url: String, detail: String },
}

impl ClientArgs {
    /// Applies the rule in the module doc, reading the environment through `env`.
    pub fn target_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<Target, ClientError> {
        let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(api) = &self.api {
            return Ok(api_target(api));
        }
        if let Some(dir) = &self.dir {
            return fleet_target(dir, true);
        }
        if let Some(api) = nonempty("KEYFLEET_API") {
            return Ok(api_target(&api));
        }
        if let Some(dir) = nonempty("KEYFLEET_DIR") {
            return fleet_target(Path::new(&dir), true);
        }
        let here = Path::new(DEFAULT_DEV_DIR);
        if here.join("fleet.json").exists() {
            return fleet_target(here, false);
        }
        Ok(Target {
            urls: vec![DEFAULT_API.to_owned()],
            source: Source::Default,
        })
    }

    /// The target from the process's own environment.
    pub fn target(&self) -> Result<Target, ClientError> {
        self.target_with(|name| std::env::var(name).ok())
    }

    /// The bearer token, when `--token-file` or `KEYFLEET_TOKEN_FILE` names one.
    pub fn token(&self) -> Result<Option<String>, ClientError> {
        let Some(file) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).map_err(|source| ClientError::Token {
            file: file.clone(),
            source,
        })?;
        let token = text.trim_end_matches(['\n', '\r']);
        if token.is_empty() {
            return Err(ClientError::EmptyToken(file.clone()));
        }
        Ok(Some(token.to_owned()))
    }

    /// The one daemon a command that acts asks: `--api`, or the first node of a dev
    /// fleet; (its API URL, the bearer token).
    pub fn daemon(&self) -> Result<(String, Option<String>), ClientError> {
        let url =
            self.target()?.urls.first().cloned().ok_or_else(|| {
                ClientError::Target("no daemon to ask (give --api or --dir)".into())
            })?;
        Ok((url, self.token()?))
    }

    /// GETs `path` from the first daemon of the target that answers, each bounded by
    /// `timeout`. A daemon that cannot be reached is skipped; one that answers with an
    /// error status is the answer.
    pub async fn get_json(&self, path: &str, timeout: Duration) -> Result<Value, ClientError> {
        let target = self.target()?;
        let token = self.token()?;
        let mut failures = Vec::new();
        for base in &target.urls {
            match call(Method::Get, base, path, token.as_deref(), timeout).await {
                Err(ClientError::NoAnswer(why)) => failures.push(why),
                answer => return answer,
            }
        }
        Err(ClientError::NoAnswer(no_answer(&target, &failures)))
    }
}

/// The two methods client commands use.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Get,
    Post,
    /// A POST with a JSON body, naming the user who asks (`X-Keyfleet-User`), for
    /// requests a daemon records (restores).
    PostJson(Value),
}

/// One request to one daemon (`base` is its API URL), bounded by `timeout`. A daemon
/// that cannot be reached is `NoAnswer`; one that answers with an error status gives
/// its error message.
pub async fn call(
    method: Method,
    base: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let exchange = async {
        match method {
            Method::Get => crate::http_client::get(&url, token).await,
            Method::Post => crate::http_client::post(&url, token).await,
            Method::PostJson(body) => {
                let body = serde_json::to_vec(&body).expect("a JSON value serializes");
                let user = asking_user();
                let headers = [("x-keyfleet-user", user.as_str())];
                crate::http_client::post_json(&url, token, body.into(), &headers).await
            }
        }
    };
    let resp = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return Err(ClientError::NoAnswer(format!("{url}: {e}"))),
        Err(_) => {
            return Err(ClientError::NoAnswer(format!(
                "{url}: no answer within {timeout:?}"
            )));
        }
    };
    let body: Value = serde_json::from_slice(&resp.body).map_err(|e| ClientError::NotJson {
        url: url.clone(),
        detail: e.to_string(),
    })?;
    if !(200..300).contains(&resp.status) {
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_owned();
        return Err(ClientError::Refused {
            url,
            status: resp.status,
            message,
        });
    }
    Ok(body)
}

/// `$USER@host`, as far as this machine says.
fn asking_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

fn api_target(api: &str) -> Target {
    Target {
        urls: vec![api.to_owned()],
        source: Source::Api,
    }
}

/// The nodes a dev fleet's `fleet.json` lists. `explicit`: the directory was named by
/// the user, so a missing file is worth its own message.
fn fleet_target(dir: &Path, explicit: bool) -> Result<Target, ClientError> {
    let file = dir.join("fleet.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        ClientError::Target(if explicit && e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: not found: no `keyfleet dev --dir {}` is running here (it writes \
                 fleet.json once its nodes are ready)",
                file.display(),
                dir.display()
            )
        } else {
            format!("{}: {e}", file.display())
        })
    })?;
    let parsed: Value = serde_json::from_str(&text)
        .map_err(|e| ClientError::Target(format!("{}: not a fleet file: {e}", file.display())))?;
    let urls: Vec<String> = parsed["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n["api_url"].as_str().map(str::to_owned))
        .collect();
    if urls.is_empty() {
        return Err(ClientError::Target(format!(
            "{}: lists no node with an api_url",
            file.display()
        )));
    }
    Ok(Target {
        urls,
        source: Source::FleetFile(file),
    })
}

fn no_answer(target: &Target, failures: &[String]) -> String {
    let tried = failures.join("; ");
    match &target.source {
        Source::FleetFile(file) => format!(
            "no daemon of the dev fleet in {} answered ({tried}); is that `keyfleet dev` \
             still running?",
            file.display()
        ),
        Source::Default => format!(
            "{tried}; no daemon answers at the default address and there is no \
             ./{DEFAULT_DEV_DIR}/fleet.json here: give --api URL or --dir DIR"
        ),
        Source::Api => tried,
    }
}

/// Runs a client command on a small runtime: its exit status, or for an error printed
/// as `keyfleet NAME: ...`, 3 when no daemon could be asked and 1 otherwise.
pub fn run(name: &str, command: impl std::future::Future<Output = Result<u8, ClientError>>) -> u8 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(command) {
        Ok(code) => code,
        Err(e @ (ClientError::NoAnswer(_) | ClientError::Target(_))) => {
            eprintln!("keyfleet {name}: {e}");
            3
        }
        Err(e) => {
            eprintln!("keyfleet {name}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet_dir(urls: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Value> = urls
            .iter()
            .enumerate()
            .map(|(i, u)| serde_json::json!({"name": format!("node{}", i + 1), "api_url": u}))
            .collect();
        std::fs::write(
            dir.path().join("fleet.json"),
            serde_json::json!({ "nodes": nodes }).to_string(),
        )
        .unwrap();
        dir
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn flags_beat_the_environment_and_api_beats_dir() {
        let dir = fleet_dir(&["http://127.0.0.1:7200", "http://127.0.0.1:7201"]);
        let env = |name: &str| match name {
            "KEYFLEET_API" => Some("http://10.0.0.1:9850".to_owned()),
            _ => None,
        };
        let by_dir = ClientArgs {
            dir: Some(dir.path().to_owned()),
            ..ClientArgs::default()
        };
        let t = by_dir.target_with(env).unwrap();
        assert_eq!(t.urls, ["http://127.0.0.1:7200", "http://127.0.0.1:7201"]);
        assert_eq!(t.source, Source::FleetFile(dir.path().join("fleet.json")));

        let by_env = ClientArgs::default().target_with(env).unwrap();
        assert_eq!(by_env.urls, ["http://10.0.0.1:9850"]);
        assert_eq!(by_env.source, Source::Api);

        let dir_env =
            |name: &str| (name == "KEYFLEET_DIR").then(|| dir.path().display().to_string());
        let t = ClientArgs::default().target_with(dir_env).unwrap();
        assert_eq!(t.urls.len(), 2);

        let by_api = ClientArgs {
            api: Some("http://127.0.0.1:1".into()),
            ..ClientArgs::default()
        };
        assert_eq!(
            by_api.target_with(env).unwrap().urls,
            ["http://127.0.0.1:1"]
        );
    }

    #[test]
    fn a_named_directory_without_fleet_json_says_so() {
        let empty = tempfile::tempdir().unwrap();
        let args = ClientArgs {
            dir: Some(empty.path().to_owned()),
            ..ClientArgs::default()
        };
        let err = args.target_with(no_env).unwrap_err().to_string();
        assert!(err.contains("fleet.json: not found"), "{err}");
        assert!(err.contains("keyfleet dev --dir"), "{err}");
    }

    #[test]
    fn a_broken_fleet_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fleet.json"), "{\"nodes\": [{}]}").unwrap();
        let args = ClientArgs {
            dir: Some(dir.path().to_owned()),
            ..ClientArgs::default()
        };
        let err = args.target_with(no_env).unwrap_err().to_string();
        assert!(err.contains("lists no node with an api_url"), "{err}");
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "\n").unwrap();
        let args = ClientArgs {
            token_file: Some(file),
            ..ClientArgs::default()
        };
        assert!(matches!(args.token(), Err(ClientError::EmptyToken(_))));
    }
}
