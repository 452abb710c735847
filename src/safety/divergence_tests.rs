//! When copies agree: value, existence, and TTL within its tolerance.
use super::*;

fn copy(node: &str, exists: bool, ttl: Option<i64>, digest: &str) -> Copy {
    Copy {
        node: node.into(),
        exists,
        kind: if exists { "string" } else { "none" }.into(),
        ttl_ms: ttl,
        digest: exists.then(|| digest.into()),
        lastmodified_seconds: None,
    }
}

#[test]
fn copies_agree_on_value_existence_and_ttl_within_tolerance() {
    let a = copy("n1", true, None, "aa");
    assert!(agree(&[a.clone(), copy("n2", true, None, "aa")]));
    assert!(!agree(&[a.clone(), copy("n2", true, None, "bb")]));
    assert!(!agree(&[a.clone(), copy("n2", false, None, "")]));
    assert!(!agree(&[a, copy("n2", true, Some(60_000), "aa")]));
    // A TTL read a moment apart is the same TTL; a very different one is not.
    let t = |ms| copy("n", true, Some(ms), "aa");
    assert!(agree(&[t(600_000), t(599_200)]));
    assert!(agree(&[t(1_000), t(2_500)]));
    assert!(!agree(&[t(600_000), t(300_000)]));
    assert!(agree(&[]));
}

#[test]
fn rounds_are_one_lag_threshold_apart_and_read_that_many_seconds_of_keys() {
    assert_eq!(round_every(Duration::from_secs(5)), Duration::from_secs(5));
    // A threshold under a second still gives one-second rounds.
    assert_eq!(
        round_every(Duration::from_millis(300)),
        Duration::from_secs(1)
    );
    // 20 keys a second in 5 s rounds: 100 keys, up to 5 SCAN steps, 100 re-reads.
    assert_eq!(round_size(20, Duration::from_secs(5)), (100, 5, 100));
    assert_eq!(round_size(20, Duration::from_secs(1)), (20, 1, 20));
    // Fractions round up: never a round that reads nothing.
    assert_eq!(round_size(1, Duration::from_millis(1500)), (2, 2, 30));
}
