//! `keyfleet backup restore ID --scratch`'s throwaway engine: KeyDB or redis-server,
//! found as `dev` finds it, on a free loopback port with its data in a private
//! temporary directory, stopped and deleted when dropped.

use std::time::{Duration, Instant};

/// A throwaway engine: stopped, and its directory deleted, when dropped (the engine is
/// declared first, so it stops before its directory goes).
pub struct Scratch {
    pub engine: crate::dev::supervise::Supervised,
    pub port: u16,
    pub dir: ScratchDir,
}

/// A private temporary directory, deleted when dropped.
pub struct ScratchDir(std::path::PathBuf);

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

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    pub fn start() -> Result<Scratch, String> {
        Scratch::start_with(&[])
    }

    /// With `extra` arguments for the engine (for tests: `--active-replica yes`, ...).
    pub fn start_with(extra: &[&str]) -> Result<Scratch, String> {
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
        .arg(dir.path())
        .args(extra);
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

pub async fn wait_for_signal() {
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
