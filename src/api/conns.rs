//! The listener's table of open connections (`server`): what it knows of each (busy,
//! idle since, a request head under way, answered yet), when each is due to be closed,
//! which to close to make room, and the guards that keep that knowledge true: the
//! socket noting a request's first byte, the answer's body holding its connection busy
//! until written, the registration removed however a connection's task ends.

use crate::daemon::State;
use crate::metrics::http::Closed;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// `u64::MAX`: no request has begun on an idle connection.
pub(super) const NONE: u64 = u64::MAX;

/// What the listener knows of one open connection. Times are milliseconds since the
/// registry's epoch.
pub(super) struct Conn {
    /// Requests being answered.
    pub(super) busy: AtomicUsize,
    /// When the connection became idle: accepted, or its latest answer was handed over.
    pub(super) idle_since: AtomicU64,
    /// The first byte read while idle (a request head under way), or `NONE`.
    pub(super) head_since: AtomicU64,
    /// False until the first answer: before it, silence counts against `header_timeout`.
    pub(super) answered: AtomicBool,
    pub(super) evict: Notify,
    /// Fired when a request head begins on an idle connection, so that its deadline
    /// becomes the header timeout's.
    pub(super) head: Notify,
}

impl Conn {
    pub(super) fn head_started(&self) -> bool {
        self.head_since.load(Ordering::Acquire) != NONE
    }

    /// When this connection is due to be closed, and why; `None` while it is busy.
    pub(super) fn deadline(&self, limits: &Limits) -> Option<(u64, Closed)> {
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
pub(super) struct Limits {
    pub(super) header_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: usize,
}

pub(super) struct Registry {
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    pub(super) fn new() -> Arc<Registry> {
        Arc::new(Registry {
            epoch: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Registers a connection just accepted, idle since now; it stays registered (and
    /// counted open) until the guard returned is dropped.
    pub(super) fn open(self: &Arc<Self>, state: &Arc<State>) -> (Arc<Conn>, Registered) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now()),
            head_since: AtomicU64::new(NONE),
            answered: AtomicBool::new(false),
            evict: Notify::new(),
            head: Notify::new(),
        });
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.clone());
        state.metrics.http.opened();
        let guard = Registered {
            id,
            registry: self.clone(),
            state: state.clone(),
        };
        (conn, guard)
    }

    pub(super) fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Closes the idle connection nearest its own deadline (the one that has waited
    /// longest for its request, or trickled its head longest); false when every
    /// connection is busy.
    pub(super) fn evict_one(&self, limits: &Limits) -> bool {
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

/// Removes a connection from the registry when its task ends.
pub(super) struct Registered {
    id: u64,
    registry: Arc<Registry>,
    state: Arc<State>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.state.metrics.http.ended();
    }
}

/// One request in flight on a connection; dropped with the answer's body.
pub(super) struct Answering {
    pub(super) conn: Arc<Conn>,
    pub(super) registry: Arc<Registry>,
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
pub(super) struct AnsweringBody {
    pub(super) inner: axum::body::Body,
    pub(super) _answering: Answering,
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

/// The connection's socket, noting the first byte of each request so the header
/// timeout can run from it.
pub(super) struct Tracked {
    pub(super) inner: TcpStream,
    pub(super) conn: Arc<Conn>,
    pub(super) registry: Arc<Registry>,
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
