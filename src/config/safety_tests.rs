//! The `[safety]` table: defaults, the atomic-writes order, and each refusal.

use super::*;

#[test]
fn safety_takes_defaults_and_an_order_of_every_node() {
    let c = parse(EXAMPLE).unwrap();
    assert!(c.safety.enabled);
    assert_eq!(c.safety.canary_interval, Duration::from_secs(1));
    assert_eq!(c.safety.skew_threshold, Duration::from_millis(50));
    assert_eq!(
        c.safety.atomic_order(&c.node_names()),
        ["node1", "node2", "node3"]
    );
    let peers =
        "[[peers]]\nname = \"n2\"\naddress = \"127.0.0.1\"\nengine_port = 7001\napi_port = 7101\n";
    let c = parse(&minimal(&format!(
        "[safety]\natomic_writes_order = [\"n2\", \"n1\"]\n{peers}"
    )))
    .unwrap();
    assert_eq!(c.safety.atomic_order(&c.node_names()), ["n2", "n1"]);
    assert!(parse(&minimal("[safety]\nenabled = false\n")).is_ok());
}

#[test]
fn bad_safety_settings_are_named() {
    let peers =
        "[[peers]]\nname = \"n2\"\naddress = \"127.0.0.1\"\nengine_port = 7001\napi_port = 7101\n";
    for (line, key, says) in [
        (
            "canary_interval = \"10ms\"",
            "safety.canary_interval",
            "between 100ms and 60s",
        ),
        (
            "lag_threshold = \"1s\"",
            "safety.lag_threshold",
            "longer than canary_interval",
        ),
        (
            "skew_interval = \"500ms\"",
            "safety.skew_interval",
            "at least 1s",
        ),
        (
            "skew_samples = 0",
            "safety.skew_samples",
            "between 1 and 50",
        ),
        (
            "skew_threshold = \"0s\"",
            "safety.skew_threshold",
            "at least 1ms",
        ),
        (
            "skew_threshold = \"soon\"",
            "skew_threshold",
            "not a duration",
        ),
        (
            "atomic_writes_order = [\"n1\", \"n9\"]",
            "safety.atomic_writes_order[1]",
            "`n9` is not a node",
        ),
        (
            "atomic_writes_order = [\"n1\", \"n1\"]",
            "safety.atomic_writes_order[1]",
            "listed twice",
        ),
        (
            "atomic_writes_order = [\"n1\"]",
            "safety.atomic_writes_order",
            "not `n2`",
        ),
        ("canary = true", "canary", "unknown field"),
        (
            "divergence_rate = 20000",
            "safety.divergence_rate",
            "at most 10000",
        ),
        ("deletes_max = 10", "safety.deletes_max", "between 100 and"),
        (
            "reader_user = \"keyfleet-safety\"",
            "safety.reader_user",
            "go together",
        ),
    ] {
        let e = error_of(&minimal(&format!("[safety]\n{line}\n{peers}")));
        assert!(e.contains(key) && e.contains(says), "{line}: {e}");
    }
}
