//! The engine's other conversations: several commands in one round trip (`pipeline`),
//! and connections of their own that listen on channels (`subscribe`, `psubscribe`).

use super::resp::{Connection, Value};
use super::{Engine, EngineError, unexpected};

/// This node's canary as the canary worker writes it: its key and value, and the
/// announcement (node name first) published on the canary channel.
#[derive(Debug, Clone, Copy)]
pub struct CanaryWrite<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub channel: &'a str,
    pub announcement: &'a str,
}

/// What one canary round trip gave: the write's outcome (when there was one) and the
/// canary keys read.
#[derive(Debug)]
pub struct CanaryRound {
    pub written: Option<Result<(), EngineError>>,
    pub read: Result<Vec<Option<Vec<u8>>>, EngineError>,
}

impl Engine {
    /// Several commands in one round trip on the shared connection, which nothing else
    /// uses meanwhile (so a `SELECT` among them holds for the ones after it). Error
    /// replies come back as `Value::Error`, for the caller to read; the whole exchange is
    /// bounded like one command.
    pub async fn pipeline(
        &self,
        name: &'static str,
        commands: &[Vec<&str>],
    ) -> Result<Vec<Value>, EngineError> {
        let limit = self.options.connect_timeout + self.options.command_timeout;
        let exchange = async {
            let mut slot = self.conn.lock().await;
            let mut conn = self.kept_or_new(slot.take()).await?;
            let words: Vec<Vec<&[u8]>> = commands
                .iter()
                .map(|c| c.iter().map(|w| w.as_bytes()).collect())
                .collect();
            match tokio::time::timeout(self.options.command_timeout, conn.call_many(&words)).await {
                Err(_) => Err(self.timeout(name, self.options.command_timeout)),
                Ok(Err(e)) => Err(EngineError::ConnectionLost {
                    target: self.options.target.to_string(),
                    command: name,
                    detail: e.to_string(),
                }),
                Ok(Ok(values)) => {
                    if values
                        .iter()
                        .any(|v| matches!(v.error_code(), Some("NOAUTH" | "WRONGPASS")))
                    {
                        return Err(self.auth_failed());
                    }
                    *slot = Some(conn);
                    Ok(values)
                }
            }
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout(name, limit)),
        }
    }

    /// The canary worker's round trip (`safety::canary`): this node's canary written to
    /// its key and announced on the canary channel (when `write` is given), then every
    /// canary key in `keys` read, each `None` when missing or not a string. Pipelined, so
    /// the engine wakes once for the three, and each peer once for the write and the
    /// announcement its replication stream carries together. The daemon's only writes,
    /// to `keyfleet:` keys and channels only (daemon.acl).
    ///
    /// A pipelined announcement goes out even if its write is refused (OOM, READONLY),
    /// and peers would time a write that never happened. So after a refused write the
    /// caller asks for `cautious` rounds: the announcement is sent in a second round
    /// trip, only once the write succeeded. The outer error is the round trip's; the
    /// inner ones the write's and the read's, each reported on its own.
    pub async fn canary_round(
        &self,
        write: Option<CanaryWrite<'_>>,
        keys: &[&str],
        cautious: bool,
    ) -> Result<CanaryRound, EngineError> {
        let mut commands = Vec::with_capacity(3);
        if let Some(w) = &write {
            commands.push(vec!["SET", w.key, w.value]);
            if !cautious {
                commands.push(vec!["PUBLISH", w.channel, w.announcement]);
            }
        }
        commands.push(
            std::iter::once("MGET")
                .chain(keys.iter().copied())
                .collect(),
        );
        let mut replies = self.pipeline("canary", &commands).await?.into_iter();
        let mut reply = |command: &'static str| match replies.next() {
            Some(value) => self.refused(command, value),
            None => Err(unexpected(command, &Value::Nil)),
        };
        let mut written = write.map(|_| {
            let set = reply("SET").map(drop);
            if cautious {
                set
            } else {
                set.and(reply("PUBLISH").map(drop))
            }
        });
        let read = match reply("MGET") {
            Ok(Value::Array(values)) if values.len() == keys.len() => Ok(values
                .into_iter()
                .map(|v| match v {
                    Value::Bulk(b) => Some(b),
                    _ => None,
                })
                .collect()),
            Ok(other) => Err(unexpected("MGET", &other)),
            Err(e) => Err(e),
        };
        if let (true, Some(w), Some(Ok(()))) = (cautious, &write, &written) {
            written = Some(
                self.run("PUBLISH", &[w.channel, w.announcement])
                    .await
                    .map(drop),
            );
        }
        Ok(CanaryRound { written, read })
    }

    /// A connection of its own, subscribed to `channel`: read it with
    /// [`Subscription::next`]. It carries nothing else.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, EngineError> {
        self.listen("SUBSCRIBE", &[channel]).await
    }

    /// A connection of its own, subscribed to every channel matching `patterns`.
    pub async fn psubscribe(&self, patterns: &[&str]) -> Result<Subscription, EngineError> {
        self.listen("PSUBSCRIBE", patterns).await
    }

    async fn listen(
        &self,
        command: &'static str,
        names: &[&str],
    ) -> Result<Subscription, EngineError> {
        let mut conn = self.connect().await?;
        let mut words: Vec<&[u8]> = vec![command.as_bytes()];
        words.extend(names.iter().map(|n| n.as_bytes()));
        // One confirmation per name; the first says whether the user may.
        let reply = tokio::time::timeout(self.options.command_timeout, async {
            let first = conn.call(&words).await?;
            for _ in 1..names.len() {
                if matches!(first, Value::Error(_)) {
                    break;
                }
                conn.next_push().await?;
            }
            Ok::<Value, std::io::Error>(first)
        })
        .await;
        match reply {
            Err(_) => Err(self.timeout(command, self.options.command_timeout)),
            Ok(Err(e)) => Err(EngineError::ConnectionLost {
                target: self.options.target.to_string(),
                command,
                detail: e.to_string(),
            }),
            Ok(Ok(Value::Error(text))) if text.starts_with("NOPERM") => {
                Err(EngineError::NoPermission {
                    user: self.user().to_owned(),
                    command,
                    detail: text,
                })
            }
            Ok(Ok(Value::Array(_))) => Ok(Subscription {
                conn,
                target: self.options.target.to_string(),
            }),
            Ok(Ok(other)) => Err(unexpected(command, &other)),
        }
    }
}

/// A connection subscribed to one channel (`Engine::subscribe`).
pub struct Subscription {
    conn: Connection,
    target: String,
}

impl Subscription {
    /// The next message published on the channel; other pushes are skipped. It waits
    /// as long as nothing is published: bound it with a timeout.
    pub async fn next(&mut self) -> Result<Vec<u8>, EngineError> {
        self.next_message().await.map(|(_, payload)| payload)
    }

    /// The next message as (channel, payload), from `SUBSCRIBE` or `PSUBSCRIBE`.
    pub async fn next_message(&mut self) -> Result<(Vec<u8>, Vec<u8>), EngineError> {
        loop {
            let value = self
                .conn
                .next_push()
                .await
                .map_err(|e| EngineError::ConnectionLost {
                    target: self.target.clone(),
                    command: "SUBSCRIBE",
                    detail: e.to_string(),
                })?;
            let Value::Array(parts) = value else { continue };
            let mut parts = parts.into_iter();
            // ["message", channel, payload] or ["pmessage", pattern, channel, payload].
            let n = match parts.next() {
                Some(Value::Bulk(k)) if k == b"message" => 2,
                Some(Value::Bulk(k)) if k == b"pmessage" => 3,
                _ => continue,
            };
            let rest: Vec<Value> = parts.collect();
            if rest.len() != n {
                continue;
            }
            let mut rest = rest.into_iter().skip(n - 2);
            if let (Some(Value::Bulk(channel)), Some(Value::Bulk(payload))) =
                (rest.next(), rest.next())
            {
                return Ok((channel, payload));
            }
        }
    }
}

impl Engine {
    /// The error an error reply within a pipeline stands for: `NoPermission` for NOPERM
    /// (so it shows as `engine_no_permission`), else `Command`.
    pub fn reply_error(&self, command: &'static str, text: &str) -> EngineError {
        if text.starts_with("NOPERM") {
            EngineError::NoPermission {
                user: self.user().to_owned(),
                command,
                detail: text.to_owned(),
            }
        } else {
            EngineError::Command {
                command,
                detail: text.to_owned(),
            }
        }
    }
}
