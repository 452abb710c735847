use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn w(s: &str) -> Window {
    s.parse().unwrap()
}

fn next(window: &str, now: &str) -> (Timestamp, Timestamp) {
    let o = w(window).next_after(ts(now)).unwrap();
    (o.start.timestamp(), o.end.timestamp())
}

#[test]
fn the_seed_users_window_in_kolkata_which_has_no_daylight_saving() {
    let win = w("Sun 02:00-03:00 Asia/Kolkata");
    // Wednesday 2026-12-02: the next Sunday 02:00 IST (UTC+5:30) is Saturday 20:30 UTC.
    assert_eq!(
        next("Sun 02:00-03:00 Asia/Kolkata", "2026-12-02T10:00:00Z"),
        (ts("2026-12-05T20:30:00Z"), ts("2026-12-05T21:30:00Z"))
    );
    assert!(!win.is_open(ts("2026-12-05T20:29:59Z")));
    assert!(win.is_open(ts("2026-12-05T20:30:00Z")));
    assert!(win.is_open(ts("2026-12-05T21:29:59Z")));
    assert!(!win.is_open(ts("2026-12-05T21:30:00Z")));
    // The same offset all year: March and July too.
    assert_eq!(
        next("Sun 02:00-03:00 Asia/Kolkata", "2026-03-02T00:00:00Z").0,
        ts("2026-03-07T20:30:00Z")
    );
    assert_eq!(
        next("Sun 02:00-03:00 Asia/Kolkata", "2026-07-01T00:00:00Z").0,
        ts("2026-07-04T20:30:00Z")
    );
    let open = win.open_at(ts("2026-12-05T21:00:00Z")).unwrap();
    assert_eq!(
        open.start.strftime("%a %H:%M %Z").to_string(),
        "Sun 02:00 IST"
    );
}

#[test]
fn new_york_across_both_changes() {
    let win = "Sun 02:00-03:00 America/New_York";
    // EST (UTC-5) before the change.
    assert_eq!(
        next(win, "2026-02-28T00:00:00Z"),
        (ts("2026-03-01T07:00:00Z"), ts("2026-03-01T08:00:00Z"))
    );
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:00 does not exist, so the window
    // opens at 03:00 EDT (07:00 UTC) and still lasts an hour.
    assert_eq!(
        next(win, "2026-03-07T00:00:00Z"),
        (ts("2026-03-08T07:00:00Z"), ts("2026-03-08T08:00:00Z"))
    );
    // EDT (UTC-4) the week after.
    assert_eq!(
        next(win, "2026-03-09T00:00:00Z").0,
        ts("2026-03-15T06:00:00Z")
    );
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 02:00 then happens once, in EST.
    assert_eq!(
        next(win, "2026-10-26T00:00:00Z").0,
        ts("2026-11-01T07:00:00Z")
    );
    // A window starting in the repeated hour opens the first time (EDT) and lasts its
    // length: 01:30 EDT to 01:30 EST.
    assert_eq!(
        next("Sun 01:30-02:30 America/New_York", "2026-10-26T00:00:00Z"),
        (ts("2026-11-01T05:30:00Z"), ts("2026-11-01T06:30:00Z"))
    );
    assert!(w(win).is_open(ts("2026-03-08T07:30:00Z")));
    assert!(!w(win).is_open(ts("2026-03-08T06:30:00Z")));
}

#[test]
fn london_across_both_changes() {
    let win = "Sun 01:00-02:00 Europe/London";
    assert_eq!(
        next(win, "2026-03-21T00:00:00Z").0,
        ts("2026-03-22T01:00:00Z")
    );
    // 2026-03-29: 01:00 GMT jumps to 02:00 BST: the window opens at 02:00 BST.
    assert_eq!(
        next(win, "2026-03-28T00:00:00Z"),
        (ts("2026-03-29T01:00:00Z"), ts("2026-03-29T02:00:00Z"))
    );
    assert_eq!(
        next(win, "2026-03-30T00:00:00Z").0,
        ts("2026-04-05T00:00:00Z")
    );
    // 2026-10-25: 01:00 happens twice; the first (BST) counts.
    assert_eq!(
        next(win, "2026-10-24T00:00:00Z"),
        (ts("2026-10-25T00:00:00Z"), ts("2026-10-25T01:00:00Z"))
    );
    assert_eq!(
        next(win, "2026-10-26T00:00:00Z").0,
        ts("2026-11-01T01:00:00Z")
    );
}

#[test]
fn several_days_ranges_and_windows_past_midnight() {
    let win = w("Sat,Sun 23:00-01:00");
    assert_eq!(
        win.next_after(ts("2026-12-02T00:00:00Z"))
            .unwrap()
            .start
            .timestamp(),
        ts("2026-12-05T23:00:00Z")
    );
    // Saturday's opening runs into Sunday.
    assert!(win.is_open(ts("2026-12-06T00:30:00Z")));
    assert!(!win.is_open(ts("2026-12-06T01:00:00Z")));
    assert!(win.is_open(ts("2026-12-06T23:30:00Z")));
    // Sunday's runs into Monday.
    assert!(win.is_open(ts("2026-12-07T00:59:00Z")));
    let weekdays = w("Mon-Fri 01:00-01:30");
    assert!(weekdays.is_open(ts("2026-12-04T01:10:00Z"))); // Friday
    assert!(!weekdays.is_open(ts("2026-12-05T01:10:00Z"))); // Saturday
    let wrap = w("fri-mon 12:00-13:00");
    assert!(wrap.is_open(ts("2026-12-07T12:10:00Z"))); // Monday
    assert!(!wrap.is_open(ts("2026-12-08T12:10:00Z"))); // Tuesday
    assert_eq!(w("sunday 02:00-03:00").to_string(), "sunday 02:00-03:00");
}

#[test]
fn always_is_open_and_has_no_next_opening() {
    let a = w("always");
    assert!(a.is_open(ts("2026-12-02T10:00:00Z")));
    assert!(a.next_after(ts("2026-12-02T10:00:00Z")).is_none());
    assert_eq!(open_now(&[a], ts("2026-12-02T10:00:00Z")), Some(None));
}

#[test]
fn the_nearest_of_several_windows() {
    let ws = [
        w("Sun 02:00-03:00 Asia/Kolkata"),
        w("Thu 09:00-10:00 Europe/London"),
    ];
    let o = next_opening(&ws, ts("2026-12-02T10:00:00Z")).unwrap();
    assert_eq!(o.start.timestamp(), ts("2026-12-03T09:00:00Z"));
    assert!(open_now(&ws, ts("2026-12-03T09:30:00Z")).is_some());
    assert!(open_now(&ws, ts("2026-12-03T10:30:00Z")).is_none());
}

#[test]
fn bad_windows_say_what_is_wrong() {
    for (text, expect) in [
        ("sometimes", "expected \"DAYS HH:MM-HH:MM"),
        ("Sun", "expected"),
        ("Sun 02:00", "not HH:MM-HH:MM"),
        ("Sunnyday 02:00-03:00", "`Sunnyday` is not a day"),
        ("Sun 25:00-26:00", "not a time of day"),
        ("Sun 02:00-02:00", "give a real length"),
        ("Sun 02:00-03:00 Mars/Olympus", "not a time zone"),
        ("Sun 02:00-03:00 UTC extra", "expected"),
    ] {
        let err = text.parse::<Window>().unwrap_err();
        assert!(err.contains(expect), "{text}: {err}");
    }
}
