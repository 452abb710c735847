use super::*;

fn meta(engine: &str, version: &str) -> GenerationMeta {
    GenerationMeta {
        release: format!("r-{version}"),
        engine: engine.into(),
        engine_version: version.into(),
        keyfleet_version: None,
    }
}

fn class(from: &str, to: &str) -> Class {
    classify(&meta("keydb", from), &meta("keydb", to)).unwrap()
}

#[test]
fn classification_by_engine_version() {
    assert_eq!(class("6.3.3", "6.3.4"), Class::Patch);
    assert_eq!(class("6.3.4", "6.4.0"), Class::Minor);
    assert_eq!(class("6.3.4", "7.0.0"), Class::Major);
    assert_eq!(class("6.3.4", "6.3.3"), Class::Downgrade);
    assert_eq!(class("6.3.4", "6.2.9"), Class::Downgrade);
    assert_eq!(class("6.3.4", "6.3.4"), Class::EngineUnchanged);
    // Missing parts count as zero; a leading v and a suffix are ignored.
    assert_eq!(class("6.3", "6.3.1"), Class::Patch);
    assert_eq!(class("v6.3.4", "6.3.4-rc1"), Class::EngineUnchanged);
    // Numbers, not strings: 6.10 is newer than 6.9.
    assert_eq!(class("6.9.0", "6.10.0"), Class::Minor);
    // Another engine altogether is a major change.
    assert_eq!(
        classify(&meta("redis", "7.0.15"), &meta("keydb", "6.3.4")).unwrap(),
        Class::Major
    );
    let err = classify(&meta("keydb", "6.3.4"), &meta("keydb", "unknown")).unwrap_err();
    assert!(err.contains("`unknown` is not a version"), "{err}");
}

#[test]
fn the_default_policy() {
    let p = Policy::default();
    let approval = |now| Approval {
        release: "r".into(),
        now,
        at_unix: 0,
    };
    // Patch and engine-unchanged: automatic, inside a window only.
    for c in [Class::Patch, Class::EngineUnchanged] {
        assert_eq!(decide(&p, c, None, true), Verdict::Go);
        assert_eq!(decide(&p, c, None, false), Verdict::WaitWindow);
    }
    // Minor and major: never without a person's yes; then still in a window unless --now.
    for c in [Class::Minor, Class::Major] {
        assert_eq!(decide(&p, c, None, true), Verdict::WaitApproval);
        assert_eq!(
            decide(&p, c, Some(&approval(false)), false),
            Verdict::WaitWindow
        );
        assert_eq!(decide(&p, c, Some(&approval(false)), true), Verdict::Go);
        assert_eq!(decide(&p, c, Some(&approval(true)), false), Verdict::Go);
    }
    // Downgrades: denied, even approved.
    assert!(matches!(
        decide(&p, Class::Downgrade, Some(&approval(true)), true),
        Verdict::Denied(m) if m.contains("downgrade = \"deny\"")
    ));
}

#[test]
fn a_policy_table_overrides_per_class() {
    let p: Policy = toml::from_str("patch = \"approve\"\nmajor = \"deny\"").unwrap();
    assert_eq!(p.action(Class::Patch), Action::Approve);
    assert_eq!(p.action(Class::Minor), Action::Approve);
    assert_eq!(p.action(Class::Major), Action::Deny);
    assert_eq!(decide(&p, Class::Patch, None, true), Verdict::WaitApproval);
    let err = toml::from_str::<Policy>("patch = \"sometimes\"").unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
    let err = toml::from_str::<Policy>("micro = \"auto\"").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}
