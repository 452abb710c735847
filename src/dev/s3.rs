//! Log shipping for a dev fleet: to the store `--s3-endpoint` names (credentials from
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`), or, with no endpoint given and
//! `s3s-fs` on PATH, to one started here on a free loopback port with its data under
//! DIR. The bucket is created when missing; every node ships under its own name.

use super::on_path;
use super::supervise::{Supervised, spawn};
use crate::config::{S3Config, S3Keys};
use crate::s3::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the fleet ships its logs, as the node configs name it.
pub struct DevS3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id_file: PathBuf,
    pub secret_access_key_file: PathBuf,
    /// The s3s-fs this `dev` started, if it started one.
    pub server: Option<Supervised>,
    /// Where s3s-fs keeps the objects (`DATA/BUCKET/KEY`), if it started one.
    pub data_dir: Option<PathBuf>,
}

/// Sets up the store; None (and a line saying how to turn it on) when there is none.
pub fn setup(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    endpoint: Option<&str>,
    bucket: &str,
) -> Result<Option<DevS3>, String> {
    let s3_dir = dir.join("s3");
    std::fs::create_dir_all(&s3_dir).map_err(|e| format!("{}: {e}", s3_dir.display()))?;
    let (endpoint, keys, server, data_dir) = match endpoint {
        Some(ep) => {
            let var = |name: &str| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("--s3-endpoint needs the store's credentials in {name}"))
            };
            let keys = S3Keys {
                access_key_id: var("AWS_ACCESS_KEY_ID")?,
                secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            };
            (ep.trim_end_matches('/').to_owned(), keys, None, None)
        }
        None => {
            let Some(bin) = on_path("s3s-fs") else {
                eprintln!(
                    "keyfleet dev: log shipping is off: give --s3-endpoint URL (and \
                     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), or put s3s-fs on PATH \
                     (cargo install --locked s3s-fs --version 0.14.1 --features binary)"
                );
                return Ok(None);
            };
            let keys = S3Keys {
                access_key_id: format!("KFDEV{}", crate::s3::random_hex(8)?.to_uppercase()),
                secret_access_key: crate::s3::random_hex(20)?,
            };
            let data = s3_dir.join("data");
            std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("cannot find a free port for s3s-fs: {e}"))?
                .port();
            let child = spawn(
                Command::new(&bin)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", &keys.access_key_id])
                    .args(["--secret-key", &keys.secret_access_key])
                    .arg(&data),
                &s3_dir.join("s3s-fs.log"),
            )?;
            let server = Supervised {
                what: "s3s-fs".into(),
                child,
                exited: false,
            };
            (
                format!("http://127.0.0.1:{port}"),
                keys,
                Some(server),
                Some(data),
            )
        }
    };
    let access_key_id_file = s3_dir.join("access-key-id");
    let secret_access_key_file = s3_dir.join("secret-access-key");
    write_secret(&access_key_id_file, &keys.access_key_id)?;
    write_secret(&secret_access_key_file, &keys.secret_access_key)?;
    let config = S3Config {
        endpoint: endpoint.clone(),
        region: "us-east-1".into(),
        bucket: bucket.to_owned(),
        prefix: String::new(),
        path_style: true,
        access_key_id_file: access_key_id_file.clone(),
        secret_access_key_file: secret_access_key_file.clone(),
        part_size: 16 << 20,
        timeout: Duration::from_secs(10),
    };
    if let Some((key, message)) = config.problem() {
        return Err(format!("--s3-{key}: {message}"));
    }
    let client = crate::s3::Client::new(&config, &keys).map_err(|e| e.to_string())?;
    rt.block_on(ensure_bucket(&client))
        .map_err(|e| format!("the log store at {endpoint}: {e}"))?;
    Ok(Some(DevS3 {
        endpoint,
        bucket: bucket.to_owned(),
        access_key_id_file,
        secret_access_key_file,
        server,
        data_dir,
    }))
}

/// The bucket exists afterwards (created when missing); the store may still be starting.
async fn ensure_bucket(client: &crate::s3::Client) -> Result<(), crate::s3::S3Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.head_bucket().await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NoSuchBucket => return client.create_bucket().await,
            Err(e) if e.kind() == ErrorKind::Unreachable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl DevS3 {
    /// The top-level keys (before any table), and the `[logs]` tables and `[backups]`
    /// (sharing the log store, on demand) of one node's config.
    pub fn node_toml(&self, node_dir: &Path) -> (String, String) {
        let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
        let p = |v: &Path| s(&v.display().to_string());
        let top = format!("state_dir = {}\n", p(&node_dir.join("state")));
        let tables = format!(
            "\n[logs]\ndir = {}\nmax_local_bytes = \"256MiB\"\n\n[logs.rotate]\nmax_size = \"8MiB\"\nmax_age = \"1m\"\n\n[logs.s3]\nendpoint = {}\nbucket = {}\naccess_key_id_file = {}\nsecret_access_key_file = {}\ntimeout = \"10s\"\n\n[backups]\nfleet = \"dev\"\n",
            p(&node_dir.join("logs")),
            s(&self.endpoint),
            s(&self.bucket),
            p(&self.access_key_id_file),
            p(&self.secret_access_key_file),
        );
        (top, tables)
    }
}

fn write_secret(path: &Path, value: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(value.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}
