//! The deleted keys' set: bounds, settling, rewrites, channels and its file.
use super::*;

fn t(key: &str) -> Tracked {
    Tracked {
        db: 0,
        key: key.into(),
        event: "del".into(),
        at_unix: 1.0,
        links_down: vec!["node3".into()],
    }
}

#[test]
fn the_set_is_bounded_and_counts_what_it_drops() {
    let mut tr = Tracker::default();
    assert!(tr.record(t("a"), 2));
    assert!(tr.record(t("b"), 2));
    assert!(tr.record(t("a"), 2), "the same key again takes no room");
    assert!(!tr.record(t("c"), 2));
    assert_eq!(tr.tracked.len(), 2);
    assert_eq!(tr.untracked, 1);
}

#[test]
fn settling_moves_existing_keys_to_resurrected_and_forgets_the_rest() {
    let mut tr = Tracker::default();
    for k in ["a", "b", "c"] {
        tr.record(t(k), 10);
    }
    let batch = tr.tracked.clone();
    let back = tr.settle(&batch, &[true, false, true], 9.0);
    assert_eq!(back.len(), 2);
    assert!(tr.tracked.is_empty());
    assert_eq!(tr.resurrected_total, 2);
    assert_eq!(tr.stayed_deleted_total, 1);
    let keys: Vec<_> = tr
        .resurrected
        .iter()
        .map(|r| r.deleted.key.as_str())
        .collect();
    assert_eq!(keys, ["a", "c"]);
    assert_eq!(tr.resurrected[0].found_at_unix, 9.0);
}

#[test]
fn keys_written_again_on_this_side_leave_the_set_and_the_index() {
    let mut tr = Tracker::default();
    for k in ["a", "b"] {
        tr.record(t(k), 10);
    }
    let batch = tr.tracked.clone();
    tr.rewritten(&batch, &[true, false]);
    assert_eq!(tr.rewritten_here_total, 1);
    let keys: Vec<_> = tr.tracked.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["b"]);
    assert!(tr.record(t("b"), 1), "b is still indexed, at its new place");
    assert!(tr.record(t("a"), 2));
    assert_eq!(tr.tracked.len(), 2);
}

#[test]
fn keyevent_channels_name_the_db_and_event() {
    assert_eq!(parse_channel(b"__keyevent@0__:del"), Some((0, "del")));
    assert_eq!(
        parse_channel(b"__keyevent@12__:expired"),
        Some((12, "expired"))
    );
    assert_eq!(parse_channel(b"__keyevent@0__:set"), None);
    assert_eq!(parse_channel(b"__keyspace@0__:del"), None);
}

#[test]
fn a_corrupt_file_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("safety-deletes.json"), "{not json").unwrap();
    let d = Deletes::load(dir.path(), 10);
    assert!(
        d.load_error.as_deref().unwrap().contains("corrupt"),
        "{:?}",
        d.load_error
    );
    assert!(dir.path().join("safety-deletes.json.corrupt").exists());
    let mut d = Deletes::load(dir.path(), 10);
    assert!(d.load_error.is_none());
    d.tracker.record(t("k"), 10);
    d.dirty = true;
    let (tracker, path) = d.take_dirty().unwrap();
    crate::logship::journal::save_json(&tracker, &path).unwrap();
    assert!(d.take_dirty().is_none());
    let again = Deletes::load(dir.path(), 10);
    assert_eq!(again.tracker.tracked, vec![t("k")]);
}
