//! Waiting for a dev fleet to be ready: every daemon's `/readyz` answering 200, within
//! `--ready-timeout`, giving up early when a child exits or on Ctrl-C.

use super::Node;
use super::supervise::Supervised;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(super) fn wait_ready(
    rt: &tokio::runtime::Runtime,
    nodes: &[Node],
    children: &mut [Supervised],
    timeout: Duration,
    shutdown: &AtomicBool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&Node> = nodes.iter().collect();
    let mut last = String::new();
    while !pending.is_empty() {
        if shutdown.load(Ordering::SeqCst) {
            return Err("interrupted while waiting for the fleet".into());
        }
        for c in children.iter_mut() {
            if let Ok(Some(status)) = c.child.try_wait() {
                c.exited = true;
                return Err(format!(
                    "{} exited during start-up ({status}); see its log in the node's directory",
                    c.what
                ));
            }
        }
        pending.retain(|n| match readyz(rt, n.api_port) {
            Some((200, _)) => false,
            Some((_, body)) => {
                last = format!("{}: {body}", n.name);
                true
            }
            None => {
                last = format!("{}: API not answering yet", n.name);
                true
            }
        });
        if Instant::now() > deadline {
            return Err(format!(
                "the fleet was not ready after {timeout:?}; last: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Asks one daemon's `/readyz`: (status, body), or None while it does not answer.
fn readyz(rt: &tokio::runtime::Runtime, port: u16) -> Option<(u16, String)> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let resp = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(2), crate::http_client::get(&url, None)).await
        })
        .ok()?
        .ok()?;
    Some((
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    ))
}
