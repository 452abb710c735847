//! Reading the RDB file into upload parts: on a blocking thread, the file is read in
//! chunks, compressed with zstd (or not), encrypted with age (or not: `crypt`), hashed
//! before and after, and cut into parts of
//! `PART_SIZE` that go to the uploader through a channel of one. Memory stays at about
//! three parts (one being filled, one queued, one in flight) whatever the RDB's size.

use crate::s3::hex;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Bytes per uploaded part (S3 wants at least 5 MiB for all but the last); at most
/// 10,000 parts make an object of up to 60 GiB.
pub const PART_SIZE: usize = 6 << 20;

/// What the reader reports once the file is read.
#[derive(Debug, Clone)]
pub struct Totals {
    pub rdb_bytes: u64,
    pub rdb_sha256: String,
    pub stored_bytes: u64,
    pub stored_sha256: String,
}

/// The part sink: a `Write` that hashes what passes and sends every full part.
struct Parts {
    buf: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
    hash: Sha256,
    bytes: u64,
}

impl Write for Parts {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hash.update(data);
        self.bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PART_SIZE {
            let rest = self.buf.split_off(PART_SIZE);
            let part = std::mem::replace(&mut self.buf, rest);
            self.send(part)?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Parts {
    fn send(&mut self, part: Vec<u8>) -> std::io::Result<()> {
        self.tx
            .blocking_send(part)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

/// The age layer, next to the parts.
enum Sealed<'a> {
    Age(age::stream::StreamWriter<&'a mut Parts>),
    Plain(&'a mut Parts),
}

impl Write for Sealed<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sealed::Age(w) => w.write(data),
            Sealed::Plain(p) => p.write(data),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sealed<'_> {
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sealed::Age(w) => w.finish().map(drop),
            Sealed::Plain(_) => Ok(()),
        }
    }
}

/// The compression layer, on top.
enum Out<'a> {
    Zstd(zstd::stream::write::Encoder<'static, Sealed<'a>>),
    Plain(Sealed<'a>),
}

/// Reads `file` into parts sent on `tx`; runs on a blocking thread. The last part may
/// be short; an empty file still gives one part.
pub fn read_parts(
    mut file: std::fs::File,
    path: PathBuf,
    zstd: bool,
    age: Option<age::Encryptor>,
    tx: mpsc::Sender<Vec<u8>>,
) -> Result<Totals, String> {
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut sink = Parts {
        buf: Vec::with_capacity(PART_SIZE + (64 << 10)),
        tx,
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut raw_hash = Sha256::new();
    let mut raw_bytes = 0u64;
    let mut chunk = vec![0u8; 256 << 10];
    {
        let sealed = match age {
            Some(enc) => Sealed::Age(enc.wrap_output(&mut sink).map_err(io)?),
            None => Sealed::Plain(&mut sink),
        };
        let mut out = if zstd {
            Out::Zstd(zstd::stream::write::Encoder::new(sealed, 1).map_err(io)?)
        } else {
            Out::Plain(sealed)
        };
        loop {
            let n = file.read(&mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            raw_hash.update(&chunk[..n]);
            raw_bytes += n as u64;
            match &mut out {
                Out::Zstd(enc) => enc.write_all(&chunk[..n]).map_err(io)?,
                Out::Plain(sealed) => sealed.write_all(&chunk[..n]).map_err(io)?,
            }
        }
        match out {
            Out::Zstd(enc) => enc.finish().and_then(Sealed::finish).map_err(io)?,
            Out::Plain(sealed) => sealed.finish().map_err(io)?,
        }
    }
    let last = std::mem::take(&mut sink.buf);
    sink.send(last).map_err(io)?;
    Ok(Totals {
        rdb_bytes: raw_bytes,
        rdb_sha256: hex(&raw_hash.finalize()),
        stored_bytes: sink.bytes,
        stored_sha256: hex(&sink.hash.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_rejoin_to_a_frame_that_decompresses_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.rdb");
        // Incompressible enough to need more than one part.
        let mut data = Vec::new();
        let mut x: u64 = 1;
        while data.len() < PART_SIZE * 2 + 1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            data.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(&path, &data).unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let file = std::fs::File::open(&path).unwrap();
        let p = path.clone();
        let reader = std::thread::spawn(move || read_parts(file, p, true, None, tx));
        let mut parts = Vec::new();
        while let Some(part) = rx.blocking_recv() {
            parts.push(part);
        }
        let totals = reader.join().unwrap().unwrap();
        assert!(parts.len() >= 3, "{} parts", parts.len());
        assert!(
            parts[..parts.len() - 1]
                .iter()
                .all(|p| p.len() == PART_SIZE)
        );
        let joined: Vec<u8> = parts.concat();
        assert_eq!(joined.len() as u64, totals.stored_bytes);
        assert_eq!(hex(&Sha256::digest(&joined)), totals.stored_sha256);
        assert_eq!(zstd::decode_all(&joined[..]).unwrap(), data);
        assert_eq!(totals.rdb_bytes, data.len() as u64);
        assert_eq!(hex(&Sha256::digest(&data)), totals.rdb_sha256);
    }
}
