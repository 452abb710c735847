//! The API's listener and connections, bounded so a hostile client cannot lock the
//! daemon out: at most `api.max_connections` open; at the cap a new connection closes
//! the connection idle longest, or is refused at once with 503 when none is idle; a
//! client must send its request head within `api.header_timeout` (counted from the
//! connection, from its previous answer, or from the request's first byte) and a
//! kept-alive connection that sends nothing is closed after `api.idle_timeout`.
//! Requests then go to `front::handle`.

use super::front::Front;
use super::sockets::{fit_file_limit, shed};
use crate::metrics::http::Closed;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// The largest request head (request line and headers); past it hyper answers 431.
const MAX_HEAD: usize = 16 * 1024;

/// `u64::MAX`: no request has begun on an idle connection.
const NONE: u64 = u64::MAX;

/// What the listener knows of one open connection. Times are milliseconds since the
/// registry's epoch.
struct Conn {
    /// Requests being answered.
    busy: AtomicUsize,
    /// When the connection became idle: accepted, or its latest answer was handed over.
    idle_since: AtomicU64,
    /// The first byte read while idle (a request head under way), or `NONE`.
    head_since: AtomicU64,
    /// False until the first answer: before it, silence counts against `header_timeout`.
    answered: AtomicBool,
    evict: Notify,
    /// Fired when a request head begins on an idle connection, so that its deadline
    /// becomes the header timeout's.
    head: Notify,
}

impl Conn {
    fn head_started(&self) -> bool {
        self.head_since.load(Ordering::Acquire) != NONE
    }

    /// When this connection is due to be closed, and why; `None` while it is busy.
    fn deadline(&self, limits: &Limits) -> Option<(u64, Closed)> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::Acquire);
        let idle = self.idle_since.load(Ordering::Acquire);
        let header = limits.header_timeout.as_millis() as u64;
        if head != NONE {
            Some((head.saturating_add(header), Closed::HeaderTimeout))
        } else if !self.answered.load(Ordering::Acquire) {
            Some((idle.saturating_add(header), Closed::HeaderTimeout))
        } else {
            Some((
                idle + limits.idle_timeout.as_millis() as u64,
                Closed::IdleTimeout,
            ))
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

struct Registry {
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Closes the idle connection nearest its own deadline (the one that has waited
    /// longest for its request, or trickled its head longest); false when every
    /// connection is busy.
    fn evict_one(&self, limits: &Limits) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let victim = conns
            .values()
            .filter_map(|c| Some((c.deadline(limits)?.0, c)))
            .min_by_key(|(at, _)| *at)
            .map(|(_, c)| c);
        match victim {
            Some(c) => {
                // Marked busy-proof: a second eviction should pick another one.
                c.idle_since.store(NONE, Ordering::Release);
                c.busy.fetch_add(1, Ordering::AcqRel);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `front` on `listener` until `stop` turns true, then lets open requests
/// finish (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        conns: Mutex::new(HashMap::new()),
    });
    let limits = Limits {
        max_connections: fit_file_limit(limits.max_connections),
        ..limits
    };
    let http = &front.state().metrics.http;
    http.set_max_connections(limits.max_connections);
    let mut next_id = 0u64;
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
        next_id += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(registry.now()),
            head_since: AtomicU64::new(NONE),
            answered: AtomicBool::new(false),
            evict: Notify::new(),
            head: Notify::new(),
        });
        registry
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(next_id, conn.clone());
        http.opened();
        let id = next_id;
        let (registry, front, stop) = (registry.clone(), front.clone(), stop.clone());
        tokio::spawn(async move {
            // Unregistered however the task ends, a panic included.
            let _registered = Registered {
                id,
                registry: registry.clone(),
                front: front.clone(),
            };
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

/// Removes a connection from the registry when its task ends.
struct Registered {
    id: u64,
    registry: Arc<Registry>,
    front: Arc<Front>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.front.state().metrics.http.ended();
    }
}

/// One request in flight on a connection; dropped with the answer's body.
struct Answering {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.registry.now(), Ordering::Release);
        self.conn.answered.store(true, Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body, holding its connection busy until hyper is done with it.
struct AnsweringBody {
    inner: axum::body::Body,
    _answering: Answering,
}

impl http_body::Body for AnsweringBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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

/// The connection's socket, noting the first byte of each request so the header
/// timeout can run from it.
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.busy.load(Ordering::Acquire) == 0
            && self.conn.head_since.load(Ordering::Acquire) == NONE
        {
            let now = self.registry.now();
            self.conn.head_since.store(now, Ordering::Release);
            self.conn.head.notify_one();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
