//! The daemon as a process: systemd's readiness, status and watchdog, the signals that
//! stop it, and its log lines (stderr, and `daemon.log` once log shipping runs).

use crate::logship::writer::LogFile;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Pings systemd's watchdog at half its interval while the runtime is alive.
pub(super) async fn watchdog_loop(mut stop: watch::Receiver<bool>) {
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

pub(super) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub(super) fn notify(states: &[NotifyState]) {
    // Without NOTIFY_SOCKET (not under systemd) this is a no-op.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Logs to stderr (the journal under systemd): one level from `RUST_LOG` ("debug",
/// "warn", ...; default info), colours only on a terminal. A plain level instead of
/// per-target filters keeps the regex engine, and its memory, out of the daemon.
/// With log shipping, the same lines also go to `daemon.log` (plain, no colours).
pub(super) fn init_tracing() {
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
pub(super) static DAEMON_LOG: std::sync::OnceLock<Arc<LogFile>> = std::sync::OnceLock::new();

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
