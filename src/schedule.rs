//! Recurring times: `every 6h` (slots aligned to the Unix epoch, so every node of a
//! fleet computes the same ones without talking) or `daily 02:30 Asia/Kolkata` (a wall
//! clock time in an IANA zone from the system's tz database, right across daylight-saving
//! changes). Parsing and arithmetic only; who acts on a slot is the caller's business.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use std::fmt;
use std::time::Duration;

#[derive(Clone, PartialEq)]
pub enum Schedule {
    Every(Duration),
    Daily {
        at: Time,
        zone: TimeZone,
        /// The name the user gave, for messages and the API.
        zone_name: String,
    },
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", crate::config::units::show_duration(*d)),
            Schedule::Daily { at, zone_name, .. } => {
                write!(f, "daily {} {zone_name}", at.strftime("%H:%M"))
            }
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    /// `every DURATION` (at least ten seconds) or `daily HH:MM [ZONE]` (UTC when no zone).
    fn from_str(s: &str) -> Result<Schedule, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let usage = "expected \"every 6h\" or \"daily 02:30 Europe/Berlin\"";
        match words.as_slice() {
            ["every", d] => {
                let d = crate::config::units::parse_duration(d)?;
                if d < Duration::from_secs(10) {
                    return Err(format!("`{s}`: the period must be at least 10s"));
                }
                Ok(Schedule::Every(d))
            }
            ["daily", at, rest @ ..] if rest.len() <= 1 => {
                let at: Time = Time::strptime("%H:%M", at)
                    .map_err(|_| format!("`{s}`: `{at}` is not a time of day HH:MM"))?;
                let zone_name = rest.first().copied().unwrap_or("UTC");
                let zone = TimeZone::get(zone_name).map_err(|e| {
                    format!(
                        "`{s}`: `{zone_name}` is not a time zone in the system's tz database ({e})"
                    )
                })?;
                Ok(Schedule::Daily {
                    at,
                    zone,
                    zone_name: zone_name.to_owned(),
                })
            }
            _ => Err(format!("`{s}`: {usage}")),
        }
    }
}

impl Schedule {
    /// The first slot strictly after `now`.
    pub fn next_after(&self, now: Timestamp) -> Timestamp {
        match self {
            Schedule::Every(period) => {
                let p = period.as_secs().max(1) as i64;
                let next = (now.as_second().div_euclid(p) + 1) * p;
                Timestamp::from_second(next).unwrap_or(Timestamp::MAX)
            }
            Schedule::Daily { at, zone, .. } => {
                let today = now.to_zoned(zone.clone()).date();
                // A time skipped by a daylight-saving jump runs at the first moment after
                // it; a time that happens twice runs the first time (jiff's "compatible").
                [today, today.saturating_add(1.day())]
                    .into_iter()
                    .filter_map(|day| day.to_datetime(*at).to_zoned(zone.clone()).ok())
                    .map(|z| z.timestamp())
                    .find(|t| *t > now)
                    .unwrap_or(Timestamp::MAX)
            }
        }
    }

    /// The slot at or before `now` (the one a run starting now belongs to).
    pub fn current_slot(&self, now: Timestamp) -> Timestamp {
        match self {
            Schedule::Every(period) => {
                let p = period.as_secs().max(1) as i64;
                Timestamp::from_second(now.as_second().div_euclid(p) * p).unwrap_or(now)
            }
            Schedule::Daily { .. } => {
                let yesterday = now.checked_sub(25.hours()).unwrap_or(now);
                let mut slot = self.next_after(yesterday);
                loop {
                    let next = self.next_after(slot);
                    if next > now {
                        return slot;
                    }
                    slot = next;
                }
            }
        }
    }

    /// The nominal time between two slots (for the "no backup for too long" alert).
    pub fn period(&self) -> Duration {
        match self {
            Schedule::Every(d) => *d,
            Schedule::Daily { .. } => Duration::from_secs(86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_is_aligned_to_the_epoch_so_nodes_agree() {
        let s: Schedule = "every 6h".parse().unwrap();
        assert_eq!(
            s.next_after(ts("2026-11-23T05:59:59Z")),
            ts("2026-11-23T06:00:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-11-23T06:00:00Z")),
            ts("2026-11-23T12:00:00Z")
        );
        assert_eq!(
            s.current_slot(ts("2026-11-23T11:00:00Z")),
            ts("2026-11-23T06:00:00Z")
        );
        assert_eq!(s.period(), Duration::from_secs(6 * 3600));
        assert_eq!(s.to_string(), "every 6h");
    }

    #[test]
    fn daily_follows_the_zone_across_daylight_saving() {
        let s: Schedule = "daily 02:30 Europe/Berlin".parse().unwrap();
        // CET (UTC+1) in winter.
        assert_eq!(
            s.next_after(ts("2026-11-23T00:00:00Z")),
            ts("2026-11-23T01:30:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-11-23T01:30:00Z")),
            ts("2026-11-24T01:30:00Z")
        );
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist and runs at
        // 03:30 CEST, which is 01:30 UTC; the day after, 02:30 CEST is 00:30 UTC.
        assert_eq!(
            s.next_after(ts("2026-03-29T00:00:00Z")),
            ts("2026-03-29T01:30:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-03-29T01:30:00Z")),
            ts("2026-03-30T00:30:00Z")
        );
        // 2026-10-25: 02:30 happens twice (CEST, then CET); it runs once, the first time.
        assert_eq!(
            s.next_after(ts("2026-10-24T23:00:00Z")),
            ts("2026-10-25T00:30:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-10-25T00:30:00Z")),
            ts("2026-10-26T01:30:00Z")
        );
        assert_eq!(
            s.current_slot(ts("2026-10-25T12:00:00Z")),
            ts("2026-10-25T00:30:00Z")
        );
        assert_eq!(
            s.current_slot(ts("2026-10-25T00:29:59Z")),
            ts("2026-10-24T00:30:00Z")
        );
        assert_eq!(s.to_string(), "daily 02:30 Europe/Berlin");
    }

    #[test]
    fn the_seed_users_zone() {
        let s: Schedule = "daily 02:00 Asia/Kolkata".parse().unwrap();
        assert_eq!(
            s.next_after(ts("2026-11-22T00:00:00Z")),
            ts("2026-11-22T20:30:00Z")
        );
        let utc: Schedule = "daily 02:00".parse().unwrap();
        assert_eq!(
            utc.next_after(ts("2026-11-22T00:00:00Z")),
            ts("2026-11-22T02:00:00Z")
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, expect) in [
            ("hourly", "expected \"every 6h\""),
            ("every", "expected"),
            ("every 5s", "at least 10s"),
            ("every 6x", "unknown duration unit"),
            ("daily 25:00", "not a time of day"),
            ("daily 2:30pm", "not a time of day"),
            ("daily 02:30 Mars/Olympus", "not a time zone"),
            ("daily 02:30 UTC extra", "expected"),
        ] {
            let err = text.parse::<Schedule>().unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
