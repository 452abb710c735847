//! The API's listener and connections, bounded so a hostile client cannot lock the
//! daemon out: at most `api.max_connections` open; at the cap a new connection closes
//! the connection idle longest, or is refused at once with 503 when none is idle; a
//! client must send its request head within `api.header_timeout` (counted from the
//! connection, from its previous answer, or from the request's first byte) and a
//! kept-alive connection that sends nothing is closed after `api.idle_timeout`.
//! Requests then go to `front::handle`.

use super::conns::{Answering, AnsweringBody, Conn, Limits, NONE, Registry, Tracked};
use super::front::Front;
use super::sockets::{fit_file_limit, shed};
use crate::daemon::State;
use crate::metrics::http::Closed;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The largest request head (request line and headers); past it hyper answers 431.
const MAX_HEAD: usize = 16 * 1024;

/// Serves the API on `listener` until `stop` turns true, then lets open requests
/// finish (the caller bounds how long). The rejections' summaries are logged meanwhile.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let front = Front::new(state.clone());
    {
        let (front, stop) = (front.clone(), stop.clone());
        tokio::spawn(async move { front.rejections.run(stop).await });
    }
    let api = &state.config.api;
    let limits = Limits {
        header_timeout: api.header_timeout,
        idle_timeout: api.idle_timeout,
        max_connections: fit_file_limit(api.max_connections),
    };
    let http = &state.metrics.http;
    http.set_max_connections(limits.max_connections);
    let registry = Registry::new();
    let mut accept_errors_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin, and say
                // so at most once a minute.
                if accept_errors_logged.elapsed() > Duration::from_secs(60) {
                    tracing::warn!(error = %e, "the API cannot accept connections");
                    accept_errors_logged = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_one(&limits) {
            http.refused();
            shed(stream.as_raw_fd());
            drop(stream);
            continue;
        }
        let (conn, registered) = registry.open(&state);
        let (registry, front, stop) = (registry.clone(), front.clone(), stop.clone());
        tokio::spawn(async move {
            // Unregistered however the task ends, a panic included.
            let _registered = registered;
            serve_connection(stream, peer, &conn, &registry, front, limits, stop).await;
        });
        // Let the new connection read its request before the next is accepted: one
        // thread serves everything, and a connection that has not run yet looks idle,
        // so a burst of accepts would otherwise evict connections that are about to be
        // busy.
        tokio::task::yield_now().await;
    }
    // New clients are refused from now on; open connections finish their requests and
    // close (`serve_connection` watches `stop` too): wait for them.
    drop(listener);
    while registry.len() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: &Arc<Conn>,
    registry: &Arc<Registry>,
    front: Arc<Front>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    // Until its first byte a connection is only this task: hyper, and its buffers, come
    // with the request, so a flood of connections that never send costs little memory.
    tokio::select! {
        ready = stream.readable() => {
            if ready.is_err() {
                return;
            }
        }
        _ = conn.evict.notified() => {
            front.state().metrics.http.closed(Closed::Evicted);
            shed(fd);
            return;
        }
        _ = tokio::time::sleep(limits.header_timeout) => {
            front.state().metrics.http.closed(Closed::HeaderTimeout);
            return;
        }
        _ = stop.wait_for(|s| *s) => return,
    }
    let io = TokioIo::new(Tracked {
        inner: stream,
        conn: conn.clone(),
        registry: registry.clone(),
    });
    let service = {
        let (conn, registry, front) = (conn.clone(), registry.clone(), front.clone());
        hyper::service::service_fn(move |req| {
            conn.busy.fetch_add(1, Ordering::AcqRel);
            conn.head_since.store(NONE, Ordering::Release);
            // Busy until hyper has written the answer's body and dropped it (or the
            // request is dropped unanswered): a slow reader is not idle.
            let answering = Answering {
                conn: conn.clone(),
                registry: registry.clone(),
            };
            let front = front.clone();
            async move {
                let resp = super::front::handle(&front, peer, req).await;
                Ok::<_, Infallible>(resp.map(|inner| AnsweringBody {
                    inner,
                    _answering: answering,
                }))
            }
        })
    };
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        // The listener's own deadlines (above) replace hyper's, which would also run
        // on a kept-alive connection waiting for its next request.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, service);
    let mut http = std::pin::pin!(http);
    let mut stopping = false;
    loop {
        let deadline = conn.deadline(&limits);
        let wait = match deadline {
            Some((at, _)) => Duration::from_millis(at.saturating_sub(registry.now())),
            // Busy: look again when the request is likely done.
            None => limits.idle_timeout,
        };
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    note_error(&front, &e);
                }
                return;
            }
            _ = conn.evict.notified() => {
                // A request that began as it was picked is served: the cap is exceeded
                // by one for that long rather than a request cut off.
                if conn.busy.fetch_sub(1, Ordering::AcqRel) > 1 {
                    conn.idle_since.store(registry.now(), Ordering::Release);
                    continue;
                }
                front.state().metrics.http.closed(Closed::Evicted);
                // A connection whose request has not been answered is told why; a
                // kept-alive one after its answer is just closed, as clients expect.
                if !conn.answered.load(Ordering::Acquire) || conn.head_started() {
                    shed(fd);
                }
                return;
            }
            _ = conn.head.notified() => {}
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(wait) => {
                if let Some((at, why)) = conn.deadline(&limits)
                    && at <= registry.now()
                {
                    front.state().metrics.http.closed(why);
                    return;
                }
            }
        }
    }
}

/// hyper answers a head too large (431) or malformed (400) itself and then closes; those
/// count as requests with no route.
fn note_error(front: &Front, e: &hyper::Error) {
    let status = if e.is_parse_too_large() {
        431
    } else if e.is_parse() {
        400
    } else {
        return;
    };
    front.note_unrouted(status);
}
