//! `dev`'s runtime and its Ctrl-C: SIGINT and SIGTERM set a flag the supervision loop
//! polls, from a thread of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One small runtime for `dev`'s requests, and the shutdown flag the supervision loop
/// polls: SIGINT and SIGTERM set it, from a thread of their own, because a
/// current-thread runtime only runs its tasks inside `block_on`.
pub(super) fn runtime_with_shutdown_flag()
-> Result<(tokio::runtime::Runtime, Arc<AtomicBool>), String> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))
    };
    let rt = runtime()?;
    let signals = runtime()?;
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let (handlers_tx, handlers_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("dev-signals".into())
        .spawn(move || {
            use tokio::signal::unix::{SignalKind, signal};
            signals.block_on(async move {
                let (mut int, mut term) = match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = handlers_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handlers_tx.send(Ok(()));
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                set.store(true, Ordering::SeqCst);
            })
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    match handlers_rx.recv() {
        Ok(Ok(())) => Ok((rt, flag)),
        Ok(Err(e)) => Err(format!("cannot handle SIGINT/SIGTERM: {e}")),
        Err(_) => Err("the signal thread ended before handling SIGINT/SIGTERM".into()),
    }
}
