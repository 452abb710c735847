//! `keyfleet daemon`: start-up, the shared state, the background poller, systemd
//! notification and shutdown. It wires the concerns together and owns no policy of its
//! own: status comes from `fleet`, routes from `api`, figures from `metrics`.

use crate::config::Config;
use crate::engine::Engine;
use crate::logship::writer::LogFile;
use crate::logship::{ErrorRecord, Shipper};
use crate::metrics::Metrics;
use engines::{engine_for, peer_engines, reader_engine_for, restore_engine_for};
use sd_notify::NotifyState;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[path = "daemon_engines.rs"]
mod engines;

/// Everything the API handlers and workers share.
pub struct State {
    pub config: Config,
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// The bearer token the API requires and sends to peers.
    pub token: Option<String>,
    /// Log shipping, when `[logs]` is configured.
    pub logs: Logs,
    /// Backups to S3, when `[backups]` is configured.
    pub backups: Option<Arc<crate::backup::Backups>>,
    /// Where the API writes its access log (with log shipping).
    pub access_log: Option<Arc<LogFile>>,
    /// The replication-safety checks.
    pub safety: Arc<crate::safety::Safety>,
    /// Upgrade decisions and their record.
    pub upgrades: crate::upgrade::Upgrades,
    /// The fleet view's shared fan-out.
    pub fleet_view: crate::fleet::Coalesced,
}

/// Log shipping as the API sees it.
pub enum Logs {
    /// No `[logs]` table: the engine logs to stdout.
    Off,
    On(Arc<Shipper>),
    /// Configured but could not start (an unusable directory or journal); the daemon
    /// serves on and reports this.
    Broken(ErrorRecord),
}

pub fn main(config_path: &Path) -> u8 {
    init_tracing();
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyfleet: {e}");
            return 2;
        }
    };
    let secrets = match config.read_secrets(config_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keyfleet: {e}");
            return 2;
        }
    };
    let clock = match crate::safety::clock::Clock::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyfleet: {e}");
            return 2;
        }
    };
    if clock.offset_us() != 0 {
        tracing::warn!(
            offset_us = clock.offset_us(),
            "{} is set: this daemon's clock is shifted (tests only)",
            crate::safety::clock::OFFSET_VAR
        );
    }
    // One thread serves the API and polls the engine: the work is small and I/O-bound,
    // and every thread costs resident memory (BENCHMARKS.md). Log shipping, which waits
    // on the disk, has its own (`spawn_shipper`).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyfleet: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.api.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "keyfleet: cannot listen on api.listen {}: {e}",
                    config.api.listen
                );
                return 1;
            }
        };
        let engine = Arc::new(engine_for(&config, secrets.engine_password.clone()));
        let metrics = Arc::new(Metrics::with_databases(config.engine.databases));
        let logs = start_logs(&config, secrets.logs_s3.as_ref(), &metrics);
        let age = (
            secrets.backups_age_recipients.clone(),
            secrets.backups_age_identity.clone(),
        );
        let restore = crate::backup::RestoreAccess {
            engine: Arc::new(restore_engine_for(&config, &secrets)),
            token: secrets.api_token.clone(),
        };
        let backups =
            match start_backups(&config, secrets.backups_s3.as_ref(), age, restore, &metrics) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("keyfleet: backups: {} ({})", e.message, e.code);
                    return 2;
                }
            };
        let access_log = match &logs {
            Logs::On(shipper) => shipper.writer("access"),
            _ => None,
        };
        let safety = Arc::new(crate::safety::Safety::new(
            &config,
            clock,
            peer_engines(&config, secrets.engine_password.clone()),
            reader_engine_for(&config, &secrets, None),
            config
                .peers
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        reader_engine_for(&config, &secrets, Some(p)),
                    )
                })
                .collect(),
        ));
        let upgrades = crate::upgrade::Upgrades::new(&config);
        let state = Arc::new(State {
            fleet_view: Default::default(),
            upgrades,
            safety,
            engine,
            backups,
            metrics,
            token: secrets.api_token,
            logs,
            access_log,
            config,
        });
        serve(state, listener).await
    })
}

/// Prepares log shipping and points the daemon's own log at `daemon.log`.
fn start_logs(
    config: &Config,
    keys: Option<&crate::config::S3Keys>,
    metrics: &Arc<Metrics>,
) -> Logs {
    let (Some(cfg), Some(keys)) = (&config.logs, keys) else {
        return Logs::Off;
    };
    match Shipper::new(
        cfg.clone(),
        keys,
        &config.node_name,
        &config.state_dir,
        metrics.clone(),
    ) {
        Ok(shipper) => {
            if let Some(w) = shipper.writer("daemon") {
                let _ = DAEMON_LOG.set(w);
            }
            Logs::On(Arc::new(shipper))
        }
        Err(e) => {
            tracing::error!(code = e.code(), "log shipping cannot start: {e}");
            metrics.record_error(e.code());
            Logs::Broken(ErrorRecord {
                code: e.code(),
                message: e.to_string(),
                at: crate::logship::now_unix(),
            })
        }
    }
}

/// Prepares backups and aborts an upload a killed daemon left open (in the background).
fn start_backups(
    config: &Config,
    keys: Option<&crate::config::S3Keys>,
    age: (Option<String>, Option<String>),
    restore: crate::backup::RestoreAccess,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<crate::backup::Backups>>, crate::backup::BackupError> {
    let Some(keys) = keys else { return Ok(None) };
    let age = crate::backup::crypt::Keys::parse(age.0.as_deref(), age.1.as_deref())?;
    let Some(backups) = crate::backup::Backups::new(config, keys, age, metrics.clone(), restore)?
    else {
        return Ok(None);
    };
    metrics.enable_backups();
    let backups = Arc::new(backups);
    let b = backups.clone();
    tokio::spawn(async move { b.clean_up_interrupted().await });
    Ok(Some(backups))
}

async fn serve(state: Arc<State>, listener: tokio::net::TcpListener) -> u8 {
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(poll_loop(state.clone(), stop_rx.clone()));
    let shipper = match &state.logs {
        Logs::On(s) => match spawn_shipper(s.clone(), stop_rx.clone()) {
            Ok(done) => Some(done),
            Err(e) => {
                eprintln!("keyfleet: cannot start the log shipping thread: {e}");
                return 1;
            }
        },
        _ => None,
    };
    let watchdog = tokio::spawn(watchdog_loop(stop_rx.clone()));
    tokio::spawn(crate::backup::scheduled::run(
        state.clone(),
        stop_rx.clone(),
    ));
    crate::safety::spawn(state.clone(), stop_rx.clone());
    tokio::spawn(crate::upgrade::lease::renew_loop(
        state.clone(),
        stop_rx.clone(),
    ));
    tracing::info!(
        node = %state.config.node_name,
        listen = %state.config.api.listen,
        peers = state.config.peers.len(),
        "keyfleet daemon listening"
    );
    notify(&[
        NotifyState::Ready,
        NotifyState::Status("listening; first engine poll under way"),
    ]);
    let server = tokio::spawn(crate::api::server::serve(
        listener,
        state.clone(),
        stop_rx.clone(),
    ));
    wait_for_signal().await;
    tracing::info!("shutting down");
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    let _ = stop_tx.send(true);
    // In-flight requests get a deadline; past it the process exits anyway.
    let deadline = Duration::from_secs(5);
    let _ = tokio::time::timeout(deadline, async {
        // Together: a slow API connection does not keep the shipper from finishing.
        let shipper = async {
            if let Some(s) = shipper {
                let _ = s.await;
            }
        };
        let _ = tokio::join!(server, poller, watchdog, shipper);
    })
    .await;
    0
}

/// Runs log shipping on a thread and runtime of its own until `stop`: its journal fsyncs
/// and file work can take seconds on a busy disk, and the API answers meanwhile. The
/// receiver completes when shipping has stopped.
fn spawn_shipper(
    shipper: Arc<Shipper>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("logship".into())
        .spawn(move || {
            rt.block_on(shipper.run(stop));
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}

/// Reads the engine every poll interval so that systemd's STATUS= and the logs say what
/// the node is doing, and link changes are logged as they happen.
async fn poll_loop(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.config.fleet.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Only a change is logged and sent as STATUS=, so a steady node stays quiet.
    let mut last_summary = String::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let node = crate::fleet::local_node(&state).await;
        let reasons = node.problems();
        let answered = state.engine.has_answered();
        let summary = crate::fleet::summary_line(&node, &reasons, answered);
        if last_summary != summary {
            if reasons.is_empty() || !answered {
                tracing::info!("{summary}");
            } else {
                tracing::warn!("{summary}");
            }
            notify(&[NotifyState::Status(&summary)]);
            last_summary = summary;
        }
    }
}

/// Pings systemd's watchdog at half its interval while the runtime is alive.
async fn watchdog_loop(mut stop: watch::Receiver<bool>) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = tick.tick() => notify(&[NotifyState::Watchdog]),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// `WATCHDOG_USEC`, when it is meant for this process: systemd sets `WATCHDOG_PID` to
/// the main pid; without it (a manager that sets only the interval) the interval counts.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse()
        .ok()
        .filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID").ok().map(|p| p.parse::<u32>()) {
        Some(Ok(pid)) if pid != std::process::id() => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn notify(states: &[NotifyState]) {
    // Without NOTIFY_SOCKET (not under systemd) this is a no-op.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Logs to stderr (the journal under systemd): one level from `RUST_LOG` ("debug",
/// "warn", ...; default info), colours only on a terminal. A plain level instead of
/// per-target filters keeps the regex engine, and its memory, out of the daemon.
/// With log shipping, the same lines also go to `daemon.log` (plain, no colours).
fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let stderr = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let file = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .with_writer(|| DaemonLogWriter);
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::from_level(level))
        .with(stderr)
        .with(file)
        .try_init();
}

/// `daemon.log`, once log shipping has started; before that the file layer writes nowhere.
static DAEMON_LOG: std::sync::OnceLock<Arc<LogFile>> = std::sync::OnceLock::new();

/// Hands each formatted event (one whole line, written at once) to `daemon.log`.
struct DaemonLogWriter;

impl std::io::Write for DaemonLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(log) = DAEMON_LOG.get() {
            log.write_line(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
