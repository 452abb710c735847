//! The engine's wire protocol (RESP2), as much of it as the daemon speaks: one
//! connection over TCP or a Unix socket, a command written as an array of bulk strings,
//! and a reply read back whole. Replies are bounded (bulk length, array length and
//! nesting) so a confused or hostile peer cannot make the daemon allocate without limit.
//!
//! Why not the `redis` crate: the daemon sends a handful of commands on one connection,
//! and the crate's code (with `combine` and `num-bigint`) was a fifth of the binary's
//! resident size for it (BENCHMARKS.md). Tests still use the crate as a second, independent
//! client.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

/// The longest bulk string accepted: the engines' own default `proto-max-bulk-len`.
const MAX_BULK: usize = 512 * 1024 * 1024;
/// The most elements in one array reply, and the deepest nesting.
const MAX_ARRAY: usize = 1 << 20;
const MAX_DEPTH: usize = 8;
/// The longest status, error or length line.
const MAX_LINE: usize = 64 * 1024;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Nil,
    Int(i64),
    /// A simple-string reply such as `OK` or `Background saving started`.
    Status(String),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    /// An error reply: its first word is the code (`ERR`, `NOPERM`, `WRONGPASS`, ...).
    Error(String),
}

impl Value {
    /// The error reply's code: its first word.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Value::Error(text) => text.split(' ').next(),
            _ => None,
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One open connection. A command whose reply was not read to the end (a timeout
/// cancelled it) leaves the connection unusable: the caller drops it.
pub struct Connection {
    stream: BufReader<Stream>,
    out: Vec<u8>,
}

impl Connection {
    pub async fn tcp(host: &str, port: u16) -> io::Result<Connection> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(Connection::new(Stream::Tcp(stream)))
    }

    pub async fn unix(path: &Path) -> io::Result<Connection> {
        Ok(Connection::new(Stream::Unix(
            UnixStream::connect(path).await?,
        )))
    }

    fn new(stream: Stream) -> Connection {
        Connection {
            stream: BufReader::new(stream),
            out: Vec::new(),
        }
    }

    /// Whether this idle connection can no longer carry a command: the engine closed
    /// or reset it (it restarted, a proxy or partition cut it), or it holds bytes
    /// nobody asked for. Checked before a kept connection is used again, so a
    /// connection cut while idle costs a reconnect, not a failed command. One
    /// non-blocking read; a cut seen by nobody yet (microseconds old) still slips by.
    pub fn is_stale(&self) -> bool {
        if !self.stream.buffer().is_empty() {
            return true;
        }
        let mut byte = [0u8; 1];
        let read = match self.stream.get_ref() {
            Stream::Tcp(s) => s.try_read(&mut byte),
            Stream::Unix(s) => s.try_read(&mut byte),
        };
        !matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends one command and reads its reply. An error reply is `Ok(Value::Error)`; `Err`
    /// is a broken connection or a reply that is not RESP.
    pub async fn call(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        self.out.clear();
        encode(&mut self.out, args);
        self.stream.get_mut().write_all(&self.out).await?;
        read_value(&mut self.stream, 0).await
    }

    /// Sends several commands at once and reads their replies, in order (one round trip).
    pub async fn call_many(&mut self, commands: &[Vec<&[u8]>]) -> io::Result<Vec<Value>> {
        self.out.clear();
        for args in commands {
            encode(&mut self.out, args);
        }
        self.stream.get_mut().write_all(&self.out).await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(read_value(&mut self.stream, 0).await?);
        }
        Ok(replies)
    }

    /// Reads the next message the engine pushes on a subscribed connection.
    pub async fn next_push(&mut self) -> io::Result<Value> {
        read_value(&mut self.stream, 0).await
    }
}

/// A command as RESP: an array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// One CRLF-terminated line, without its CRLF.
async fn read_line<R: AsyncBufReadExt + Unpin>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!(
            "a reply line longer than {MAX_LINE} bytes or without CRLF"
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| bad("a reply line that is not UTF-8".to_owned()))
}

fn length(text: &str, max: usize) -> io::Result<Option<usize>> {
    let n: i64 = text
        .parse()
        .map_err(|_| bad(format!("a length that is not a number: {text:.40}")))?;
    match n {
        -1 => Ok(None),
        n if n < 0 || n as u64 > max as u64 => Err(bad(format!("a length out of bounds: {n}"))),
        n => Ok(Some(n as usize)),
    }
}

/// Reads one reply; `depth` counts the arrays it is nested in.
pub async fn read_value<R: AsyncBufReadExt + Unpin>(r: &mut R, depth: usize) -> io::Result<Value> {
    let line = read_line(r).await?;
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Value::Status(rest.to_owned())),
        "-" => Ok(Value::Error(rest.to_owned())),
        ":" => rest
            .parse()
            .map(Value::Int)
            .map_err(|_| bad(format!("an integer reply that is not a number: {rest:.40}"))),
        "$" => {
            let Some(len) = length(rest, MAX_BULK)? else {
                return Ok(Value::Nil);
            };
            let mut bytes = vec![0; len + 2];
            r.read_exact(&mut bytes).await?;
            if !bytes.ends_with(b"\r\n") {
                return Err(bad("a bulk string without its CRLF".to_owned()));
            }
            bytes.truncate(len);
            Ok(Value::Bulk(bytes))
        }
        "*" => {
            let Some(len) = length(rest, MAX_ARRAY)? else {
                return Ok(Value::Nil);
            };
            if depth >= MAX_DEPTH {
                return Err(bad(format!("arrays nested deeper than {MAX_DEPTH}")));
            }
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(Box::pin(read_value(r, depth + 1)).await?);
            }
            Ok(Value::Array(items))
        }
        _ => Err(bad(format!("a reply of unknown type: {line:.40}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> io::Result<Value> {
        let mut r = BufReader::new(bytes);
        read_value(&mut r, 0).await
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"AUTH", b"u", b"p w\r\n"]);
        assert_eq!(out, b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$5\r\np w\r\n\r\n");
    }

    #[tokio::test]
    async fn every_reply_type_is_read() {
        assert_eq!(parse(b"+OK\r\n").await.unwrap(), Value::Status("OK".into()));
        assert_eq!(parse(b":-42\r\n").await.unwrap(), Value::Int(-42));
        assert_eq!(parse(b"$-1\r\n").await.unwrap(), Value::Nil);
        assert_eq!(parse(b"*-1\r\n").await.unwrap(), Value::Nil);
        assert_eq!(
            parse(b"$7\r\na\r\nb\x00cd\r\n").await.unwrap(),
            Value::Bulk(b"a\r\nb\x00cd".to_vec())
        );
        let err = parse(b"-NOPERM this user has no permissions\r\n")
            .await
            .unwrap();
        assert_eq!(err.error_code(), Some("NOPERM"));
        assert_eq!(
            parse(b"*3\r\n:1\r\n*1\r\n$1\r\nx\r\n$-1\r\n")
                .await
                .unwrap(),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::Bulk(b"x".to_vec())]),
                Value::Nil
            ])
        );
    }

    #[tokio::test]
    async fn malformed_or_unbounded_replies_are_refused() {
        for (bytes, expect) in [
            (&b"?what\r\n"[..], "unknown type"),
            (b"+OK\n", "CRLF"),
            (b"$3\r\nabcd\r\n", "CRLF"),
            (b":12x\r\n", "not a number"),
            (b"$-2\r\n", "out of bounds"),
            (b"$999999999999\r\n", "out of bounds"),
            (b"*99999999\r\n", "out of bounds"),
        ] {
            let err = parse(bytes).await.unwrap_err();
            assert!(err.to_string().contains(expect), "{bytes:?}: {err}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes()).await.is_err());
        let long = format!("+{}\r\n", "x".repeat(MAX_LINE + 1));
        assert!(parse(long.as_bytes()).await.is_err());
        // A reply cut short is an end of stream, never a value.
        let cut = parse(b"$5\r\nab").await.unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
    }
}
