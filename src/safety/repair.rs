//! `keyfleet repair resurrected`: the keys each node reports resurrected
//! (`safety::deletes`), gathered from every node, and with `delete` removed on every
//! node. The route is no general DEL: the daemon asked deletes only keys that some node
//! reports (a peer it asks deletes what it is sent), and refuses to delete at all while
//! a node's list could not be read.

use crate::daemon::State;
use crate::engine::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `POST /api/v1/safety/repair`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    #[serde(default)]
    pub delete: bool,
    /// Gather every peer's list and repair there too (the CLI's request); a peer asked
    /// by another node gets `false` and acts on itself only.
    #[serde(default = "yes")]
    pub peers: bool,
    /// The keys to delete: the ones the operator looked at. With `peers`, each must be
    /// reported resurrected by some node; absent: every key reported.
    #[serde(default)]
    pub keys: Option<Vec<RepairKey>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct RepairKey {
    pub db: u32,
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RepairNode {
    pub node: String,
    /// Keys reported resurrected there.
    pub resurrected: Vec<RepairKey>,
    /// With `delete`: keys that existed there and were deleted.
    pub deleted: Option<u64>,
    pub error: Option<RepairFailure>,
}

/// Why a node's part of a repair failed: a stable code and a message.
#[derive(Debug, Serialize, Deserialize)]
pub struct RepairFailure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct RepairAnswer {
    /// Whether keys were deleted.
    pub delete: bool,
    /// The union of every node's resurrected keys.
    pub keys: Vec<RepairKey>,
    pub nodes: Vec<RepairNode>,
}

/// A request the daemon refuses before doing anything.
pub struct Refused(pub String);

/// Deletes `keys` ((db, key)) on `engine`: how many existed. Each db's DELs follow its
/// SELECT in one round trip; a db the engine does not have is refused before.
pub(crate) async fn delete(
    engine: &crate::engine::Engine,
    keys: &[(u32, String)],
) -> Result<u64, crate::engine::EngineError> {
    let mut by_db: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (db, key) in keys {
        by_db.entry(*db).or_default().push(key);
    }
    let mut deleted = 0;
    for (db, keys) in by_db {
        let db_text = db.to_string();
        let mut commands: Vec<Vec<&str>> = vec![vec!["SELECT", &db_text]];
        commands.extend(keys.iter().map(|k| vec!["DEL", *k]));
        let replies = engine.pipeline("DEL", &commands).await?;
        for reply in &replies {
            match reply {
                Value::Error(e) => return Err(engine.reply_error("DEL", e)),
                Value::Int(n) => deleted += *n as u64,
                _ => {}
            }
        }
    }
    Ok(deleted)
}

/// This node's resurrected keys.
fn reported(state: &State) -> Vec<RepairKey> {
    state
        .safety
        .deletes()
        .map(|t| {
            t.resurrected
                .iter()
                .map(|r| RepairKey {
                    db: r.deleted.db,
                    key: r.deleted.key.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Lists or repairs on this node alone; `delete_keys`: what to delete, if anything.
async fn here(state: &State, delete_keys: Option<Vec<RepairKey>>) -> RepairNode {
    let mut node = RepairNode {
        node: state.config.node_name.clone(),
        resurrected: reported(state),
        deleted: None,
        error: None,
    };
    let Some(keys) = delete_keys else { return node };
    let keys: Vec<(u32, String)> = keys.into_iter().map(|k| (k.db, k.key)).collect();
    match delete(&state.safety.reader, &keys).await {
        Ok(n) => {
            node.deleted = Some(n);
            state.safety.forget_resurrected(&keys);
            node.resurrected = reported(state);
            tracing::warn!(
                deleted = n,
                asked = keys.len(),
                "repair: resurrected keys deleted"
            );
        }
        Err(e) => {
            node.error = Some(RepairFailure {
                code: e.code().into(),
                message: format!("deleting: {e}"),
            });
        }
    }
    node
}

/// The whole repair. With `peers`: every node's list first; then, with `delete` and
/// only when every list was read, each node deletes the keys (those asked for, which
/// must all be listed, or the whole union).
pub async fn repair(state: &State, req: RepairRequest) -> Result<RepairAnswer, Refused> {
    let databases = state.config.engine.databases;
    if let Some(bad) = req
        .keys
        .iter()
        .flatten()
        .find(|k| k.db >= databases || k.key.is_empty())
    {
        return Err(Refused(format!(
            "key {:?} in db {}: the engine has dbs 0 to {}, and a key has a name",
            bad.key,
            bad.db,
            databases - 1
        )));
    }
    if !req.peers {
        let delete = req
            .delete
            .then(|| req.keys.clone().unwrap_or_else(|| reported(state)));
        let node = here(state, delete).await;
        return Ok(RepairAnswer {
            delete: req.delete,
            keys: node.resurrected.clone(),
            nodes: vec![node],
        });
    }
    let mut lists = vec![here(state, None).await];
    lists.extend(
        futures::future::join_all(state.config.peers.iter().map(|p| ask(state, p, None))).await,
    );
    let mut union: Vec<RepairKey> = lists.iter().flat_map(|n| n.resurrected.clone()).collect();
    union.sort();
    union.dedup();
    if !req.delete || lists.iter().any(|n| n.error.is_some()) {
        // A node whose list was not read may hold keys nobody saw: nothing is deleted.
        return Ok(RepairAnswer {
            delete: false,
            keys: union,
            nodes: lists,
        });
    }
    let keys = match req.keys {
        Some(asked) => {
            if let Some(k) = asked.iter().find(|k| !union.contains(k)) {
                return Err(Refused(format!(
                    "key {:?} in db {} is reported resurrected by no node",
                    k.key, k.db
                )));
            }
            asked
        }
        None => union.clone(),
    };
    let mut nodes = vec![here(state, Some(keys.clone())).await];
    nodes.extend(
        futures::future::join_all(
            state
                .config
                .peers
                .iter()
                .map(|p| ask(state, p, Some(keys.clone()))),
        )
        .await,
    );
    Ok(RepairAnswer {
        delete: true,
        keys: union,
        nodes,
    })
}

/// Asks `peer`'s daemon to list (`delete` None) or delete on itself.
async fn ask(
    state: &State,
    peer: &crate::config::Peer,
    delete: Option<Vec<RepairKey>>,
) -> RepairNode {
    let url = format!("{}/api/v1/safety/repair", peer.api_url());
    let body = serde_json::json!({"delete": delete.is_some(), "peers": false, "keys": delete});
    let failed = |code: &'static str, message: String| RepairNode {
        node: peer.name.clone(),
        resurrected: Vec::new(),
        deleted: None,
        error: Some(RepairFailure {
            code: code.into(),
            message,
        }),
    };
    let timeout = state.config.fleet.peer_timeout.max(Duration::from_secs(10));
    let body = serde_json::to_vec(&body).expect("json").into();
    let call = crate::http_client::post_json(&url, state.token.as_deref(), body, &[]);
    match tokio::time::timeout(timeout, call).await {
        Err(_) => failed(
            "peer_timeout",
            format!("{url}: no answer within {timeout:?}"),
        ),
        Ok(Err(e)) => failed(
            "peer_unreachable",
            format!("{url}: {}", crate::http_client::error_chain(&e)),
        ),
        Ok(Ok(resp)) if resp.status != 200 => failed(
            "peer_bad_status",
            format!("{url}: answered HTTP {}", resp.status),
        ),
        Ok(Ok(resp)) => match serde_json::from_slice::<serde_json::Value>(&resp.body) {
            Ok(v) => match v["nodes"]
                .get(0)
                .cloned()
                .map(serde_json::from_value::<RepairNode>)
            {
                Some(Ok(n)) => n,
                _ => failed("peer_bad_response", format!("{url}: not a repair answer")),
            },
            Err(e) => failed("peer_bad_response", format!("{url}: {e}")),
        },
    }
}
