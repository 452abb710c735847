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
