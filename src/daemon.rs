//! `keyfleet daemon`: start-up, the shared state, the background poller, systemd
//! notification and shutdown. It wires the concerns together and owns no policy of its
//! own: status comes from `fleet`, routes from `api`, figures from `metrics`.

use crate::config::Config;
use crate::engine::{Engine, EngineOptions, Secret, Target};
use crate::metrics::Metrics;
use sd_notify::NotifyState;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything the API handlers and workers share.
pub struct State {
    pub config: Config,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// The bearer token the API requires and sends to peers.
    pub token: Option<String>,
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        let engine = engine_for(&config, secrets.engine_password);
        let state = Arc::new(State {
            engine,
            metrics: Arc::new(Metrics::with_databases(config.engine.databases)),
            token: secrets.api_token,
            config,
        });
        serve(state, listener).await
    })
}

fn engine_for(config: &Config, password: Option<String>) -> Engine {
    let target = match &config.engine.unix_socket {
        Some(path) => Target::Unix(path.clone()),
        None => Target::Tcp {
            host: config.engine_host(),
            port: config.engine.port,
        },
    };
    Engine::new(EngineOptions {
        target,
        user: config.engine.user.clone(),
        password: password.map(Secret::new),
        connect_timeout: config.engine.connect_timeout,
        command_timeout: config.engine.command_timeout,
    })
}

async fn serve(state: Arc<State>, listener: tokio::net::TcpListener) -> u8 {
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(poll_loop(state.clone(), stop_rx.clone()));
    let watchdog = tokio::spawn(watchdog_loop(stop_rx.clone()));
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
    let mut shutdown_rx = stop_rx.clone();
    let server = axum::serve(listener, crate::api::router(state.clone())).with_graceful_shutdown(
        async move {
            let _ = shutdown_rx.wait_for(|s| *s).await;
        },
    );
    let server = tokio::spawn(async move { server.await });
    wait_for_signal().await;
    tracing::info!("shutting down");
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    let _ = stop_tx.send(true);
    // In-flight requests get a deadline; past it the process exits anyway.
    let deadline = Duration::from_secs(5);
    let _ = tokio::time::timeout(deadline, async {
        let _ = server.await;
        let _ = poller.await;
        let _ = watchdog.await;
    })
    .await;
    0
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
fn init_tracing() {
    use std::io::IsTerminal;
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
