//! The divergence checks' two reads of a key's copies, against real engines: the quick
//! read (`PTTL` and `DUMP`) that the sampler and `keyfleet diff` take of every key first
//! must tell apart exactly the copies the full read (with `TYPE` and KeyDB's `OBJECT
//! LASTMODIFIED`) tells apart, and agree with it on existence, TTL and digest.

use crate::fixture::{Engine, engine};
use crate::safety_fixture::cmd;
use keyfleet::engine::{Engine as Client, EngineOptions, Target};
use keyfleet::safety::divergence::{Read, agree, each, read_everywhere};
use std::time::Duration;

fn client(port: u16) -> Client {
    Client::new(EngineOptions {
        target: Target::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        user: None,
        password: None,
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(5),
    })
}

#[test]
fn a_quick_read_tells_apart_what_a_full_read_does() {
    let Some((_, kind)) = engine() else {
        skip!("skipped a_quick_read_tells_apart_what_a_full_read_does: no engine");
        return;
    };
    let (a, b) = (Engine::start().unwrap(), Engine::start().unwrap());
    let both = |args: &[&str]| {
        cmd(a.port, args).unwrap();
        cmd(b.port, args).unwrap();
    };
    both(&["SET", "same", "v"]);
    both(&["HSET", "hash", "f", "1", "g", "2"]);
    both(&["SET", "ttl", "v"]);
    cmd(a.port, &["EXPIRE", "ttl", "3600"]).unwrap();
    both(&["SET", "value", "v1"]);
    cmd(b.port, &["SET", "value", "v2"]).unwrap();
    // The same bytes as a string on one node and as a list on the other.
    cmd(a.port, &["SET", "kind", "x"]).unwrap();
    cmd(b.port, &["RPUSH", "kind", "x"]).unwrap();
    cmd(a.port, &["SET", "only-a", "v"]).unwrap();

    // (key, whether its copies agree)
    let expected = [
        ("hash", true),
        ("kind", false),
        ("missing", true),
        ("only-a", false),
        ("same", true),
        ("ttl", false),
        ("value", false),
    ];
    let keys: Vec<String> = expected.iter().map(|(k, _)| (*k).to_owned()).collect();
    let (ca, cb) = (client(a.port), client(b.port));
    let engines = [("a".to_owned(), &ca), ("b".to_owned(), &cb)];
    let keydb = kind == keyfleet::config::EngineKind::Keydb;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let read = |keys: &[(String, Read)]| rt.block_on(read_everywhere(&engines, 0, keys, keydb));
    let quick = read(&each(&keys, Read::Quick)).unwrap();
    let full = read(&each(&keys, Read::Full)).unwrap();
    // Both kinds in one round trip, as the sampler sends them: each key as if alone.
    let mixed_keys: Vec<(String, Read)> = (keys.iter().enumerate())
        .map(|(i, k)| (k.clone(), [Read::Full, Read::Quick][i % 2]))
        .collect();
    let mixed = read(&mixed_keys).unwrap();
    for (i, copies) in mixed.iter().enumerate() {
        let alone = if i % 2 == 0 { &full[i] } else { &quick[i] };
        for (m, a) in copies.iter().zip(alone) {
            assert_eq!(
                (
                    m.exists,
                    &m.kind,
                    &m.digest,
                    m.lastmodified_seconds.is_some()
                ),
                (
                    a.exists,
                    &a.kind,
                    &a.digest,
                    a.lastmodified_seconds.is_some()
                ),
                "{}",
                keys[i]
            );
        }
    }
    for (((key, agrees), q), f) in expected.iter().zip(&quick).zip(&full) {
        assert_eq!(agree(q), *agrees, "{key}, quick: {q:#?}");
        assert_eq!(agree(f), *agrees, "{key}, full: {f:#?}");
        for (q, f) in q.iter().zip(f) {
            assert_eq!(
                (q.exists, q.digest.as_ref(), q.ttl_ms.is_some()),
                (f.exists, f.digest.as_ref(), f.ttl_ms.is_some()),
                "{key} on {}",
                q.node
            );
            // What only the full read has: the type, and (KeyDB) the last write.
            assert_eq!(q.kind, "", "{key}");
            assert_eq!(q.lastmodified_seconds, None, "{key}");
            assert_eq!(f.lastmodified_seconds.is_some(), keydb && f.exists, "{key}");
        }
    }
    let kinds = |i: usize| -> Vec<&str> { full[i].iter().map(|c| c.kind.as_str()).collect() };
    assert_eq!(kinds(0), ["hash", "hash"]);
    assert_eq!(kinds(1), ["string", "list"]);
    assert_eq!(kinds(2), ["none", "none"]);
    assert_eq!(kinds(3), ["string", "none"]);
}
