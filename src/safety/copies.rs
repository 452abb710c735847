//! Each node's copy of a key, read the same way by the divergence sampler and by
//! `keyfleet diff`: `SCAN` steps, one pipelined read of type, TTL, value digest (and
//! KeyDB's `OBJECT LASTMODIFIED`) per node, and whether the copies agree.

use crate::engine::{Engine, EngineError, Value};
use serde::Serialize;

/// One node's copy of a key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    pub node: String,
    pub exists: bool,
    /// `TYPE`: "string", "hash", ...; "none" when it does not exist.
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

/// Reads `keys` of `db` on `engine`: one round trip. `keydb`: the engine is KeyDB,
/// which also says when each copy was last written.
pub async fn read_copies(
    node: &str,
    engine: &Engine,
    db: u32,
    keys: &[String],
    keydb: bool,
) -> Result<Vec<Copy>, EngineError> {
    let db_text = db.to_string();
    let per_key = if keydb { 4 } else { 3 };
    let mut commands: Vec<Vec<&str>> = vec![vec!["SELECT", &db_text]];
    for k in keys {
        commands.push(vec!["TYPE", k]);
        commands.push(vec!["PTTL", k]);
        commands.push(vec!["DUMP", k]);
        if keydb {
            commands.push(vec!["OBJECT", "LASTMODIFIED", k]);
        }
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
    for chunk in replies[1..replies.len() - 1].chunks(per_key) {
        let kind = match &chunk[0] {
            Value::Status(s) => s.clone(),
            Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            _ => "none".into(),
        };
        let ttl_ms = match chunk[1] {
            Value::Int(n) if n >= 0 => Some(n),
            _ => None,
        };
        let digest = match &chunk[2] {
            Value::Bulk(b) => Some(crate::engine::value_digest(b)[..16].to_owned()),
            _ => None,
        };
        let lastmodified_seconds = match chunk.get(3) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        out.push(Copy {
            node: node.to_owned(),
            exists: kind != "none",
            kind,
            ttl_ms,
            digest,
            lastmodified_seconds,
        });
    }
    Ok(out)
}

/// Every node's copies of `keys` of `db`, read concurrently: `[key][node]`.
pub async fn read_everywhere(
    engines: &[(String, &Engine)],
    db: u32,
    keys: &[String],
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
