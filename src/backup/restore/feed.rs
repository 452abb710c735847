//! Loading an RDB into an engine without touching its files or restarting it: keyfleet
//! plays a master for one replication handshake. The target is told `REPLICAOF` this
//! listener; the replica that connects must authenticate with a one-time password
//! (set as the target's `masterauth` just before), gets `+FULLRESYNC` and the RDB as the
//! bulk payload, and loads it as any replica loads its master's snapshot. Nothing else
//! is sent; the caller then turns the target back into a master (`REPLICAOF NO ONE`).
//!
//! The handshake answered here is the one KeyDB 6.3 and Redis 6/7 replicas send
//! (`syncWithMaster` in their `replication.c[pp]`): `PING` (KeyDB: `REPLPING`), `AUTH`,
//! `REPLCONF listening-port|ip-address|capa|uuid`, then `PSYNC` (or `SYNC`). KeyDB
//! accepts an error answer to `REPLCONF uuid` as "not a KeyDB master".

use super::super::BackupError;
use super::failed;
use crate::engine::resp::{Value, read_value};
use hyper::body::Bytes;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long the target has to connect and finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(20);

/// Waits for the target's replica connection on `listener`, authenticates it with
/// `password`, and sends it `rdb_len` bytes of RDB from `rdb`. Returns the connection,
/// which the caller keeps open until the target has loaded the data. Connections that
/// do not authenticate are closed and the wait goes on, for `HANDSHAKE` in all.
pub async fn serve(
    listener: TcpListener,
    password: &str,
    rdb_len: u64,
    rdb: mpsc::Receiver<Bytes>,
) -> Result<TcpStream, BackupError> {
    let stream = tokio::time::timeout(HANDSHAKE, accept(&listener, Some(password)))
        .await
        .map_err(|_| {
            failed(format!(
                "the target did not connect and finish its sync handshake within {HANDSHAKE:?}"
            ))
        })??;
    send_payload(stream, rdb_len, rdb).await
}

/// Waits for a replica connection that completes the handshake (with `password`, when
/// there is one) and returns it, ready for the payload. Others are closed and logged.
pub(super) async fn accept(
    listener: &TcpListener,
    password: Option<&str>,
) -> Result<TcpStream, BackupError> {
    loop {
        let (stream, peer) = listener
            .accept()
            .await
            .map_err(|e| failed(format!("accepting the target's connection: {e}")))?;
        match tokio::time::timeout(HANDSHAKE, handshake(stream, password)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(why)) => {
                tracing::warn!(%peer, "restore: refused a replication connection: {why}")
            }
            Err(_) => tracing::warn!(
                %peer,
                "restore: a replication handshake did not finish within {HANDSHAKE:?}"
            ),
        }
    }
}

/// Answers the handshake up to `PSYNC`; the connection must have sent the password,
/// if there is one.
async fn handshake(stream: TcpStream, password: Option<&str>) -> Result<TcpStream, String> {
    let mut conn = BufReader::new(stream);
    let mut authed = password.is_none();
    loop {
        let words = match read_value(&mut conn, 0).await {
            Ok(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            Ok(other) => return Err(format!("not a command: {other:.40?}")),
            Err(e) => return Err(format!("the connection ended: {e}")),
        };
        let name = words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default();
        let sub = words
            .get(1)
            .map(|w| w.to_ascii_lowercase())
            .unwrap_or_default();
        let answer: &[u8] = match (name.as_str(), sub.as_str()) {
            ("PING" | "REPLPING", _) => b"+PONG\r\n",
            ("AUTH", _)
                if password.is_none_or(|p| words.last().map(String::as_str) == Some(p))
                    && words.len() > 1 =>
            {
                authed = true;
                b"+OK\r\n"
            }
            ("AUTH", _) => {
                let _ = conn
                    .get_mut()
                    .write_all(b"-WRONGPASS invalid password\r\n")
                    .await;
                return Err("wrong password".into());
            }
            (_, _) if !authed => {
                let _ = conn
                    .get_mut()
                    .write_all(b"-NOAUTH Authentication required.\r\n")
                    .await;
                return Err(format!("{name} before AUTH"));
            }
            ("REPLCONF", "uuid") => b"-ERR keyfleet is not a KeyDB master\r\n",
            ("REPLCONF", _) => b"+OK\r\n",
            ("PSYNC" | "SYNC", _) => return Ok(conn.into_inner()),
            _ => b"-ERR unexpected command during a restore\r\n",
        };
        conn.get_mut()
            .write_all(answer)
            .await
            .map_err(|e| format!("writing: {e}"))?;
    }
}

pub(super) async fn send_payload(
    mut stream: TcpStream,
    rdb_len: u64,
    mut rdb: mpsc::Receiver<Bytes>,
) -> Result<TcpStream, BackupError> {
    // A fresh replication id each time: the target can never take this for a master it
    // has seen and ask for a partial resync.
    let replid = crate::s3::random_hex(20).map_err(failed)?;
    let head = format!("+FULLRESYNC {replid} 0\r\n${rdb_len}\r\n");
    let write = |e: std::io::Error| failed(format!("sending the RDB to the target: {e}"));
    stream.write_all(head.as_bytes()).await.map_err(write)?;
    let mut sent = 0u64;
    while let Some(chunk) = rdb.recv().await {
        stream.write_all(&chunk).await.map_err(write)?;
        sent += chunk.len() as u64;
    }
    if sent != rdb_len {
        // Cut the link before the last byte: the replica discards a partial transfer.
        let _ = stream.shutdown().await;
        return Err(failed(format!(
            "only {sent} of {rdb_len} RDB bytes could be sent"
        )));
    }
    stream.flush().await.map_err(write)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn send(s: &mut TcpStream, words: &[&str]) -> String {
        let mut out = Vec::new();
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        crate::engine::resp::encode(&mut out, &args);
        s.write_all(&out).await.unwrap();
        let mut buf = vec![0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn only_the_replica_with_the_password_gets_the_rdb() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(2);
        let server = tokio::spawn(async move { serve(listener, "s3cret", 6, rx).await });
        tx.send(Bytes::from_static(b"REDIS0")).await.unwrap();
        drop(tx);

        // A stray client: answered PING, refused everything else without AUTH.
        let mut stray = TcpStream::connect(addr).await.unwrap();
        assert_eq!(send(&mut stray, &["PING"]).await, "+PONG\r\n");
        assert!(
            send(&mut stray, &["PSYNC", "?", "-1"])
                .await
                .starts_with("-NOAUTH")
        );
        let mut wrong = TcpStream::connect(addr).await.unwrap();
        assert!(
            send(&mut wrong, &["AUTH", "guess"])
                .await
                .starts_with("-WRONGPASS")
        );

        // The replica: KeyDB's handshake, then the payload.
        let mut replica = TcpStream::connect(addr).await.unwrap();
        assert_eq!(send(&mut replica, &["REPLPING"]).await, "+PONG\r\n");
        assert_eq!(send(&mut replica, &["AUTH", "s3cret"]).await, "+OK\r\n");
        assert_eq!(
            send(&mut replica, &["REPLCONF", "listening-port", "7000"]).await,
            "+OK\r\n"
        );
        assert!(
            send(&mut replica, &["REPLCONF", "uuid", "x"])
                .await
                .starts_with("-ERR")
        );
        let mut out = Vec::new();
        crate::engine::resp::encode(&mut out, &[b"PSYNC", b"?", b"-1"]);
        replica.write_all(&out).await.unwrap();
        let link = server.await.unwrap().unwrap();
        drop(link);
        let mut got = String::new();
        replica.read_to_string(&mut got).await.unwrap();
        let (head, payload) = got.split_once("\r\n$6\r\n").unwrap();
        assert!(
            head.starts_with("+FULLRESYNC ") && head.ends_with(" 0"),
            "{head}"
        );
        assert_eq!(head.len(), "+FULLRESYNC  0".len() + 40);
        assert_eq!(payload, "REDIS0");
    }
}
