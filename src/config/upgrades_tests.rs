//! The `[upgrades]` table: defaults, windows and policy as given, and each refusal.

use super::*;
use crate::upgrade::policy::{Action, Class};

const PEERS: &str =
    "[[peers]]\nname = \"n2\"\naddress = \"127.0.0.1\"\nengine_port = 7001\napi_port = 7101\n";

#[test]
fn upgrades_take_defaults_and_the_seed_users_window() {
    assert!(parse(&minimal("")).unwrap().upgrades.is_none());
    let c = parse(&minimal(&format!(
        "[upgrades]\nwindows = [\"Sun 02:00-03:00 Asia/Kolkata\"]\n\
         [upgrades.policy]\nminor = \"deny\"\n{PEERS}"
    )))
    .unwrap();
    let u = c.upgrades.clone().unwrap();
    assert_eq!(u.windows.len(), 1);
    assert_eq!(u.windows[0].to_string(), "Sun 02:00-03:00 Asia/Kolkata");
    assert_eq!(u.gate_timeout, Duration::from_secs(60));
    assert_eq!(u.policy.action(Class::Patch), Action::Auto);
    assert_eq!(u.policy.action(Class::Minor), Action::Deny);
    assert_eq!(u.policy.action(Class::Major), Action::Approve);
    assert_eq!(u.policy.action(Class::Downgrade), Action::Deny);
    assert_eq!(u.generations, GenerationsKind::Nixos);
    assert_eq!(u.node_order(&c.node_names()), ["n1", "n2"]);
}

#[test]
fn bad_upgrade_settings_are_named() {
    for (table, key, says) in [
        ("windows = [\"Sun 02:00\"]", "windows", "not HH:MM-HH:MM"),
        (
            "windows = [\"Sun 02:00-03:00 Mars/Base\"]",
            "windows",
            "not a time zone",
        ),
        (
            "gate_timeout = \"1s\"",
            "upgrades.gate_timeout",
            "between 5s and 1h",
        ),
        (
            "gate_settle = \"2m\"",
            "upgrades.gate_settle",
            "shorter than gate_timeout",
        ),
        (
            "lease_ttl = \"30s\"",
            "upgrades.lease_ttl",
            "longer than gate_timeout",
        ),
        (
            "generations = \"dir\"",
            "upgrades.generations_dir",
            "needs generations_dir",
        ),
        (
            "generations_dir = \"/tmp/g\"",
            "upgrades.generations_dir",
            "only with generations = \"dir\"",
        ),
        ("generations = \"docker\"", "generations", "unknown variant"),
        ("flake = \"a b\"", "upgrades.flake", "not a flake reference"),
        (
            "order = [\"n1\", \"n9\"]",
            "upgrades.order[1]",
            "not a node of this fleet",
        ),
        (
            "order = [\"n1\", \"n1\"]",
            "upgrades.order[1]",
            "listed twice",
        ),
        ("order = [\"n2\"]", "upgrades.order", "but not `n1`"),
        ("policy = { patch = \"maybe\" }", "patch", "unknown variant"),
        ("surprise = 1", "surprise", "unknown field"),
    ] {
        let err = error_of(&minimal(&format!("[upgrades]\n{table}\n{PEERS}")));
        assert!(err.contains(key), "{table}: {err}");
        assert!(err.contains(says), "{table}: {err}");
    }
}
