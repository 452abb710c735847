//! A backup's RDB read back from the store: the object range by range, decrypted (age)
//! and decompressed on a blocking thread, its length and both SHA-256s checked against
//! the manifest. The
//! last chunk is held back until every check has passed, so a consumer that acts only
//! on a complete transfer (a replica loads an RDB only once it has every byte) never
//! acts on a corrupt or truncated one. Memory: one range, one chunk in each channel.

use super::super::{BackupError, Manifest, crypt::Keys};
use crate::s3;
use hyper::body::Bytes;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bytes fetched per ranged GET.
const RANGE: u64 = 4 << 20;
/// Bytes of RDB handed on per chunk.
const CHUNK: usize = 1 << 20;

/// Streams backup `m`'s RDB into `out`, in order. On any failure `out` is closed
/// before the RDB's last byte, and the error says why.
pub async fn rdb(
    client: &s3::Client,
    m: &Manifest,
    keys: Arc<Keys>,
    out: mpsc::Sender<Bytes>,
) -> Result<(), BackupError> {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let expect = Expect::from(m);
    let decoder = tokio::task::spawn_blocking(move || decode(expect, &keys, rx, out));
    let fetched = fetch(client, m, tx).await;
    let decoded = decoder
        .await
        .map_err(|e| BackupError::new("restore_failed", format!("the decoder stopped: {e}")))?;
    // A fetch error explains a decoder that ran dry; report it first.
    fetched?;
    decoded
}

async fn fetch(
    client: &s3::Client,
    m: &Manifest,
    tx: mpsc::Sender<Bytes>,
) -> Result<(), BackupError> {
    let mut start = 0;
    while start < m.stored_bytes {
        let len = RANGE.min(m.stored_bytes - start);
        let bytes = get_with_retries(client, &m.object, start, len).await?;
        if bytes.is_empty() {
            return Err(BackupError::new(
                "restore_object_short",
                format!(
                    "{}: the store has only {start} of {} bytes",
                    m.object, m.stored_bytes
                ),
            ));
        }
        start += bytes.len() as u64;
        if tx.send(bytes).await.is_err() {
            // The decoder stopped; its result says why.
            return Ok(());
        }
    }
    Ok(())
}

async fn get_with_retries(
    client: &s3::Client,
    key: &str,
    start: u64,
    len: u64,
) -> Result<Bytes, BackupError> {
    let mut wait = std::time::Duration::from_millis(500);
    for attempt in 1.. {
        match client.get_range(key, start, len).await {
            Ok(b) => return Ok(b),
            Err(e) if attempt < 4 && e.kind() == s3::ErrorKind::Unreachable => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) if e.status() == Some(404) => {
                return Err(BackupError::new(
                    "restore_object_missing",
                    format!("{key}: the manifest names an object the store does not have"),
                ));
            }
            Err(e) => return Err(BackupError::new(e.code(), format!("reading {key}: {e}"))),
        }
    }
    unreachable!("the loop returns")
}

/// What the manifest promises.
struct Expect {
    zstd: bool,
    age: bool,
    stored_bytes: u64,
    stored_sha256: String,
    rdb_bytes: u64,
    rdb_sha256: String,
}

impl From<&Manifest> for Expect {
    fn from(m: &Manifest) -> Expect {
        Expect {
            zstd: m.compression == "zstd",
            age: m.encryption == "age",
            stored_bytes: m.stored_bytes,
            stored_sha256: m.stored_sha256.clone(),
            rdb_bytes: m.rdb_bytes,
            rdb_sha256: m.rdb_sha256.clone(),
        }
    }
}

/// The fetched object as a `Read`, hashed and counted as it is read.
struct Fetched {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    sha: Sha256,
    len: u64,
}

impl Read for Fetched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.sha.update(&b);
                    self.len += b.len() as u64;
                    self.cur = b;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

fn decode(
    expect: Expect,
    keys: &Keys,
    rx: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Bytes>,
) -> Result<(), BackupError> {
    let corrupt = |what: String| BackupError::new("restore_checksum_mismatch", what);
    let mut src = Fetched {
        rx,
        cur: Bytes::new(),
        sha: Sha256::new(),
        len: 0,
    };
    let mut rdb_sha = Sha256::new();
    let mut rdb_len = 0u64;
    let mut held: Option<Bytes> = None;
    {
        let sealed: Box<dyn Read + '_> = if expect.age {
            Box::new(keys.decrypt(&mut src)?)
        } else {
            Box::new(&mut src)
        };
        let mut reader: Box<dyn Read + '_> = if expect.zstd {
            Box::new(zstd::Decoder::new(sealed).map_err(|e| corrupt(format!("zstd: {e}")))?)
        } else {
            sealed
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        return Err(corrupt(format!(
                            "the stored object does not decompress: {e}"
                        )));
                    }
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            rdb_sha.update(&buf);
            rdb_len += filled as u64;
            if rdb_len > expect.rdb_bytes {
                return Err(corrupt(format!(
                    "the RDB is longer than the manifest's {} bytes",
                    expect.rdb_bytes
                )));
            }
            if let Some(prev) = held.replace(Bytes::from(buf))
                && out.blocking_send(prev).is_err()
            {
                return Err(BackupError::new(
                    "restore_failed",
                    "the receiving side stopped".into(),
                ));
            }
        }
    }
    // Whatever the decoder did not need still counts for the stored object's checksum.
    std::io::copy(&mut src, &mut std::io::sink()).ok();
    let stored = s3::hex(&src.sha.finalize());
    if src.len != expect.stored_bytes || stored != expect.stored_sha256 {
        return Err(corrupt(format!(
            "the stored object is {} bytes with SHA-256 {stored}; the manifest says {} bytes, {}",
            src.len, expect.stored_bytes, expect.stored_sha256
        )));
    }
    let rdb = s3::hex(&rdb_sha.finalize());
    if rdb_len != expect.rdb_bytes || rdb != expect.rdb_sha256 {
        return Err(corrupt(format!(
            "the RDB is {rdb_len} bytes with SHA-256 {rdb}; the manifest says {} bytes, {}",
            expect.rdb_bytes, expect.rdb_sha256
        )));
    }
    if let Some(last) = held
        && out.blocking_send(last).is_err()
    {
        return Err(BackupError::new(
            "restore_failed",
            "the receiving side stopped".into(),
        ));
    }
    Ok(())
}
