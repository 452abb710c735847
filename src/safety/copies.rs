//! Each node's copy of a key, read the same way by the divergence sampler and by
//! `keyfleet diff`: `SCAN` steps, one pipelined read per node, and whether the copies
//! agree. A first look at a key is a quick read (`PTTL` and `DUMP`: the dump's first
//! byte is the value's type, so its digest covers the type too); only a key whose
//! copies differed is read in full, with `TYPE` and KeyDB's `OBJECT LASTMODIFIED` for
//! the report. On a healthy fleet that takes the commands per key from four to two on
//! KeyDB (three to two on Redis).

use crate::engine::{Engine, EngineError, Value};
use serde::Serialize;

/// One node's copy of a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    pub node: String,
    pub exists: bool,
    /// `TYPE`: "string", "hash", ...; "none" when it does not exist. Empty in a quick
    /// read ([`Read::Quick`]), which is compared, never reported.
    #[serde(rename = "type")]
    pub kind: String,
    /// Milliseconds to live; null without a TTL.
    pub ttl_ms: Option<i64>,
    /// SHA-256 of the value (its DUMP without version, CRC and MVCC stamp), 16 hex digits.
    pub digest: Option<String>,
    /// KeyDB: seconds since the copy was last written (`OBJECT LASTMODIFIED`, from its
    /// MVCC stamp), which says which write each node kept; null on Redis.
    pub lastmodified_seconds: Option<i64>,
}

/// A key whose copies differ.
#[derive(Debug, Clone, Serialize)]
pub struct Divergent {
    pub db: u32,
    pub key: String,
    pub copies: Vec<Copy>,
    pub first_seen_unix: f64,
    pub checked_unix: f64,
}

/// Whether two TTLs read a moment apart are the same TTL: both none, or within 2 s or
/// a tenth of the longer one.
fn same_ttl(a: Option<i64>, b: Option<i64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 2000.max(a.max(b) / 10),
        _ => false,
    }
}

/// Whether every copy agrees: existence, type, value, and TTL within tolerance.
pub fn agree(copies: &[Copy]) -> bool {
    let Some(first) = copies.first() else {
        return true;
    };
    copies.iter().all(|c| {
        c.exists == first.exists
            && c.kind == first.kind
            && c.digest == first.digest
            && same_ttl(c.ttl_ms, first.ttl_ms)
    })
}

/// How much of each copy a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `PTTL` and `DUMP`: enough to tell whether copies agree (existence, TTL, and a
    /// digest of the value, whose dump starts with its type).
    Quick,
    /// Also `TYPE` and, on KeyDB, `OBJECT LASTMODIFIED`: what a report of a divergent
    /// key shows.
    Full,
}

impl Read {
    /// The commands this read sends for `key`.
    fn commands(self, key: &str, keydb: bool) -> Vec<Vec<&str>> {
        let mut out = Vec::with_capacity(4);
        if self == Read::Full {
            out.push(vec!["TYPE", key]);
        }
        out.push(vec!["PTTL", key]);
        out.push(vec!["DUMP", key]);
        if self == Read::Full && keydb {
            out.push(vec!["OBJECT", "LASTMODIFIED", key]);
        }
        out
    }

    /// One copy from the replies to `commands` (the same order).
    fn copy(self, node: &str, replies: &[Value]) -> Copy {
        // The full read's TYPE first; then PTTL, DUMP and OBJECT LASTMODIFIED.
        let (kind, rest) = match self {
            Read::Full => {
                let kind = match &replies[0] {
                    Value::Status(s) => s.clone(),
                    Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => "none".into(),
                };
                (Some(kind), &replies[1..])
            }
            Read::Quick => (None, replies),
        };
        let digest = match &rest[1] {
            Value::Bulk(b) => Some(crate::engine::value_digest(b)[..16].to_owned()),
            _ => None,
        };
        // Without TYPE, a copy exists when it has a dump.
        let exists = kind.as_deref().map_or(digest.is_some(), |k| k != "none");
        let ttl_ms = match rest[0] {
            // A key that expired between PTTL and DUMP is gone, TTL and all.
            Value::Int(n) if n >= 0 && exists => Some(n),
            _ => None,
        };
        let lastmodified_seconds = match rest.get(2) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        Copy {
            node: node.to_owned(),
            exists,
            kind: kind.unwrap_or_default(),
            ttl_ms,
            digest,
            lastmodified_seconds,
        }
    }
}

/// Reads `keys` of `db` on `engine`, each as its `Read` says, in one round trip (so the
/// engine wakes once). `keydb`: the engine is KeyDB, which also says (in a full read)
/// when each copy was last written.
pub async fn read_copies(
    node: &str,
    engine: &Engine,
    db: u32,
    keys: &[(String, Read)],
    keydb: bool,
) -> Result<Vec<Copy>, EngineError> {
    let db_text = db.to_string();
    let mut commands: Vec<Vec<&str>> = vec![vec!["SELECT", &db_text]];
    for (k, read) in keys {
        commands.extend(read.commands(k, keydb));
    }
    commands.push(vec!["SELECT", "0"]);
    let replies = engine.pipeline("DUMP", &commands).await?;
    if let Some(Value::Error(e)) = replies.iter().find(|v| matches!(v, Value::Error(_))) {
        return Err(engine.reply_error("DUMP", e));
    }
    if replies.len() != commands.len() {
        return Err(EngineError::Command {
            command: "DUMP",
            detail: format!("{} replies to {} commands", replies.len(), commands.len()),
        });
    }
    let mut out = Vec::with_capacity(keys.len());
    let mut at = 1;
    for (k, read) in keys {
        let n = read.commands(k, keydb).len();
        out.push(read.copy(node, &replies[at..at + n]));
        at += n;
    }
    Ok(out)
}

/// Every node's copies of `keys` of `db`, read concurrently: `[key][node]`.
pub async fn read_everywhere(
    engines: &[(String, &Engine)],
    db: u32,
    keys: &[(String, Read)],
    keydb: bool,
) -> Result<Vec<Vec<Copy>>, (String, EngineError)> {
    let reads = futures::future::join_all(
        engines
            .iter()
            .map(|(name, e)| async move { (name, read_copies(name, e, db, keys, keydb).await) }),
    )
    .await;
    let mut per_node = Vec::with_capacity(engines.len());
    for (name, r) in reads {
        per_node.push(r.map_err(|e| (name.clone(), e))?);
    }
    Ok((0..keys.len())
        .map(|i| per_node.iter().map(|copies| copies[i].clone()).collect())
        .collect())
}

/// `keys`, each to be read as `read`.
pub fn each(keys: &[String], read: Read) -> Vec<(String, Read)> {
    keys.iter().map(|k| (k.clone(), read)).collect()
}

/// One `SCAN` step on `db`: (next cursor, keys), keyfleet's own keys left out.
pub async fn scan(
    engine: &Engine,
    db: u32,
    cursor: &str,
    count: usize,
    pattern: Option<&str>,
) -> Result<(String, Vec<String>), EngineError> {
    let db_text = db.to_string();
    let count_text = count.to_string();
    let mut step = vec!["SCAN", cursor, "COUNT", &count_text];
    if let Some(p) = pattern {
        step.extend(["MATCH", p]);
    }
    // SCAN goes last: KeyDB 6.3.4 as an active replica runs SCAN apart and answers a
    // command pipelined after it only once more input arrives (seen here: the trailing
    // SELECT's reply waited for the next request). Every use of the reader's connection
    // selects its db first, so leaving this one selected is harmless.
    let replies = engine
        .pipeline("SCAN", &[vec!["SELECT", &db_text], step])
        .await?;
    if let Value::Error(e) = &replies[0] {
        return Err(engine.reply_error("SELECT", e));
    }
    match &replies[1] {
        Value::Array(parts) if parts.len() == 2 => {
            let next = match &parts[0] {
                Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "0".into(),
            };
            let keys = match &parts[1] {
                Value::Array(keys) => keys
                    .iter()
                    .filter_map(|k| match k {
                        // Keys that are not UTF-8 text cannot be named back: skipped.
                        Value::Bulk(b) => String::from_utf8(b.clone()).ok(),
                        _ => None,
                    })
                    .filter(|k| !k.starts_with("keyfleet:"))
                    .collect(),
                _ => Vec::new(),
            };
            Ok((next, keys))
        }
        Value::Error(e) => Err(engine.reply_error("SCAN", e)),
        other => Err(EngineError::Command {
            command: "SCAN",
            detail: format!("unexpected reply {other:.60?}"),
        }),
    }
}
