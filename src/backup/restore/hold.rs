//! The holding master of an in-fleet restore: a listener of the daemon's that the
//! node's own engine is told to replicate from (`REPLICAOF`, beside or instead of its
//! peers) for as long as the restore runs. It serves three purposes:
//!
//! - **A fence.** While the engine has any master and `replica-read-only yes`, it refuses
//!   every client write with `READONLY`; the hold keeps a master configured after the
//!   peers are cut, so the node stays read-only however its links change.
//! - **A wipe.** An active replica merges a full sync into what it holds (`fUpdate` in
//!   KeyDB's `readSyncBulkPayload`), so an empty snapshot empties nothing. What a master
//!   sends on the link is applied even on a read-only replica, so the hold empties the
//!   engine by sending `FLUSHALL` on it. The engine passes what its masters send on to
//!   its own replicas: the wipe must come only once no peer replicates from it (the
//!   caller checks `connected_slaves:0` first).
//! - **A load.** Told to serve a backup, the hold cuts the link; the engine reconnects
//!   (its replication cron, within a second) and gets the RDB as a new full sync, which
//!   it merges into its now empty data: it then holds exactly the backup.
//!
//! It answers the replica handshake of `feed`, authenticated by the engine's own
//! `masterauth` (no secret of the peers' changes, so a crash mid-restore leaves every
//! link able to reconnect), and pings the link every few seconds so that the engine's
//! `repl-timeout` never cuts it.

use super::super::BackupError;
use super::failed;
use super::feed;
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// The RDB of an empty data set: version 9 (KeyDB 6.3, Redis 6.2), end of file and a
/// zero checksum, which engines take as "not computed".
const EMPTY_RDB: &[u8] = b"REDIS0009\xff\0\0\0\0\0\0\0\0";
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const FLUSHALL: &[u8] = b"*1\r\n$8\r\nFLUSHALL\r\n";
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long an order waits for the engine to connect (its replication cron retries
/// every second).
const RECONNECT: Duration = Duration::from_secs(30);
/// How long a load may take to be sent, reconnection included.
const LOAD: Duration = Duration::from_secs(3600);

type Done = oneshot::Sender<Result<(), BackupError>>;

/// An RDB to serve as the next full sync, and who waits for it to be sent.
struct Load {
    len: u64,
    rdb: mpsc::Receiver<Bytes>,
    done: Done,
}

enum Order {
    Flushall(Done),
    Serve(Load),
}

/// A running hold; dropping it closes the listener and the link.
pub struct Hold {
    pub addr: SocketAddr,
    orders: mpsc::Sender<Order>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hold {
    /// Listens on `ip` (the address the engine reaches the daemon by) on a free port.
    /// `password`: the engine's `masterauth`, which its replica connection sends; None
    /// when it has none.
    pub async fn start(
        ip: std::net::IpAddr,
        password: Option<String>,
    ) -> Result<Hold, BackupError> {
        let listener = TcpListener::bind((ip, 0))
            .await
            .map_err(|e| failed(format!("listening on {ip}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| failed(format!("listening on {ip}: {e}")))?;
        let (orders, rx) = mpsc::channel(1);
        let task = tokio::spawn(run(listener, password, rx));
        Ok(Hold { addr, orders, task })
    }

    /// Sends `FLUSHALL` on the link; when the engine is not connected (a load was just
    /// cut short), once it is, within `RECONNECT`. An order given up on is never sent.
    pub async fn flushall(&self) -> Result<(), BackupError> {
        let (done, wait) = oneshot::channel();
        self.order(Order::Flushall(done)).await?;
        tokio::time::timeout(RECONNECT, wait)
            .await
            .map_err(|_| {
                failed(format!(
                    "the engine did not connect to the hold within {RECONNECT:?}"
                ))
            })?
            .map_err(|_| failed("the hold stopped".into()))?
    }

    /// Cuts the link and, when the engine reconnects, sends it `len` bytes of RDB from
    /// `rdb` as a full sync; returns once they are sent, within `LOAD`.
    pub async fn serve(&self, len: u64, rdb: mpsc::Receiver<Bytes>) -> Result<(), BackupError> {
        let (done, wait) = oneshot::channel();
        self.order(Order::Serve(Load { len, rdb, done })).await?;
        tokio::time::timeout(LOAD, wait)
            .await
            .map_err(|_| {
                failed(format!(
                    "the backup was not sent to the engine within {LOAD:?}"
                ))
            })?
            .map_err(|_| failed("the hold stopped".into()))?
    }

    async fn order(&self, order: Order) -> Result<(), BackupError> {
        self.orders
            .send(order)
            .await
            .map_err(|_| failed("the hold stopped".into()))
    }
}

/// Accepts the engine's replica connection, gives it the empty snapshot (or the RDB
/// ordered), then keeps the link alive and carries out orders, until dropped.
async fn run(listener: TcpListener, password: Option<String>, mut orders: mpsc::Receiver<Order>) {
    let mut next: Option<Load> = None;
    let mut flush: Option<Done> = None;
    loop {
        let accepted = tokio::select! {
            a = feed::accept(&listener, password.as_deref()) => a,
            order = orders.recv() => match order {
                None => return,
                Some(Order::Flushall(done)) => {
                    flush = Some(done);
                    continue;
                }
                Some(Order::Serve(load)) => {
                    next = Some(load);
                    continue;
                }
            },
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(code = e.code, "restore hold: {}", e.message);
                continue;
            }
        };
        let stream = match next.take() {
            Some(load) => match feed::send_payload(stream, load.len, load.rdb).await {
                Ok(s) => {
                    let _ = load.done.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = load.done.send(Err(e));
                    continue;
                }
            },
            None => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.send(Bytes::from_static(EMPTY_RDB)).await;
                drop(tx);
                match feed::send_payload(stream, EMPTY_RDB.len() as u64, rx).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(code = e.code, "restore hold: {}", e.message);
                        continue;
                    }
                }
            }
        };
        match keep(stream, &mut orders, flush.take()).await {
            Kept::Closed => {}
            Kept::Stop => return,
            Kept::Serve(load) => next = Some(load),
        }
    }
}

enum Kept {
    /// The engine went away; wait for it to come back.
    Closed,
    /// The hold was dropped.
    Stop,
    /// A load was ordered: the link is cut so that the engine asks for a new full sync.
    Serve(Load),
}

/// Keeps one link: pings, reads and drops what the replica sends (`REPLCONF ACK`), and
/// writes `FLUSHALL` when ordered (first thing, when `flush` waited for the link).
async fn keep(
    mut stream: TcpStream,
    orders: &mut mpsc::Receiver<Order>,
    flush: Option<Done>,
) -> Kept {
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut sink = [0u8; 512];
    if let Some(done) = flush {
        send_flushall(&mut stream, done).await;
    }
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if stream.write_all(PING).await.is_err() {
                    return Kept::Closed;
                }
            }
            read = stream.read(&mut sink) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return Kept::Closed;
                }
            }
            order = orders.recv() => match order {
                None => return Kept::Stop,
                Some(Order::Flushall(done)) => send_flushall(&mut stream, done).await,
                Some(Order::Serve(load)) => {
                    let _ = stream.shutdown().await;
                    return Kept::Serve(load);
                }
            },
        }
    }
}

/// Writes `FLUSHALL` on the link, unless whoever ordered it has given up: a wipe that
/// waited for a reconnection must never arrive later, when peers may be linked again.
async fn send_flushall(stream: &mut TcpStream, done: Done) {
    if done.is_closed() {
        tracing::warn!("restore hold: a FLUSHALL given up on is not sent");
        return;
    }
    let wrote = stream.write_all(FLUSHALL).await;
    let _ = done.send(wrote.map_err(|e| failed(format!("sending FLUSHALL: {e}"))));
}
