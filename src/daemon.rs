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
#[path = "daemon_process.rs"]
mod process;
use process::{DAEMON_LOG, init_tracing, notify, wait_for_signal, watchdog_loop};

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
