//! Maintenance windows: `Sun 02:00-03:00 Asia/Kolkata`, `Sat,Sun 22:00-02:00
//! America/New_York`, `Mon-Fri 01:00-01:30` (UTC), or `always`. A window opens at a wall
//! clock time in an IANA zone (the system's tz database) and stays open for the length
//! its times give, whatever daylight saving does that night: a start that does not exist
//! (the clocks jump over it) opens at the first moment after the jump, a start that
//! happens twice opens the first time. Parsing and arithmetic only.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use std::fmt;

#[derive(Clone, PartialEq)]
pub enum Window {
    /// Any time (`always`; `keyfleet dev`'s default).
    Always,
    Weekly {
        days: Vec<Weekday>,
        start: Time,
        /// Minutes the window lasts (an end before the start means the next day).
        minutes: i64,
        zone: TimeZone,
        zone_name: String,
        text: String,
    },
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Window({self})")
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Always => f.write_str("always"),
            Window::Weekly { text, .. } => f.write_str(text),
        }
    }
}

/// One opening of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    pub start: Zoned,
    pub end: Zoned,
}

const DAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

/// `Sun` or `Sunday`, in any case.
fn day(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    DAYS.iter()
        .find(|(name, _)| s == *name || s == name[..3])
        .map(|(_, d)| *d)
}

fn parse_days(spec: &str, whole: &str) -> Result<Vec<Weekday>, String> {
    let bad = |part: &str| {
        format!(
            "`{whole}`: `{part}` is not a day (Mon, Tue, ... Sun; lists `Sat,Sun`, ranges `Mon-Fri`)"
        )
    };
    let mut days = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a).ok_or_else(|| bad(a))?, day(b).ok_or_else(|| bad(b))?);
                let mut d = a;
                loop {
                    days.push(d);
                    if d == b {
                        break;
                    }
                    d = d.next();
                }
            }
            None => days.push(day(part).ok_or_else(|| bad(part))?),
        }
    }
    days.sort_by_key(|d| d.to_monday_zero_offset());
    days.dedup();
    Ok(days)
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Window, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let usage = "expected \"DAYS HH:MM-HH:MM [ZONE]\" such as \"Sun 02:00-03:00 Asia/Kolkata\", or \"always\"";
        match words.as_slice() {
            ["always"] => Ok(Window::Always),
            [days, times, rest @ ..] if rest.len() <= 1 => {
                let days = parse_days(days, s)?;
                let (a, b) = times
                    .split_once('-')
                    .ok_or_else(|| format!("`{s}`: `{times}` is not HH:MM-HH:MM"))?;
                let time = |t: &str| {
                    Time::strptime("%H:%M", t)
                        .map_err(|_| format!("`{s}`: `{t}` is not a time of day HH:MM"))
                };
                let (start, end) = (time(a)?, time(b)?);
                let of_day = |t: Time| i64::from(t.hour()) * 60 + i64::from(t.minute());
                let mut minutes = of_day(end) - of_day(start);
                if minutes <= 0 {
                    minutes += 24 * 60;
                }
                if start == end {
                    return Err(format!(
                        "`{s}`: the window starts and ends at {a}; give a real length"
                    ));
                }
                let zone_name = rest.first().copied().unwrap_or("UTC");
                let zone = TimeZone::get(zone_name).map_err(|e| {
                    format!(
                        "`{s}`: `{zone_name}` is not a time zone in the system's tz database ({e})"
                    )
                })?;
                Ok(Window::Weekly {
                    days,
                    start,
                    minutes,
                    zone,
                    zone_name: zone_name.to_owned(),
                    text: words.join(" "),
                })
            }
            _ => Err(format!("`{s}`: {usage}")),
        }
    }
}

impl Window {
    /// The opening that contains `now`, else None.
    pub fn open_at(&self, now: Timestamp) -> Option<Opening> {
        match self {
            Window::Always => None,
            Window::Weekly { .. } => {
                // An opening that started up to a day and its length ago may still run.
                let from = now.checked_sub(48.hours()).unwrap_or(now);
                self.openings_from(from)
                    .take_while(|o| o.start.timestamp() <= now)
                    .find(|o| o.end.timestamp() > now)
            }
        }
    }

    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        matches!(self, Window::Always) || self.open_at(now).is_some()
    }

    /// The first opening that starts strictly after `now` (None for `always`).
    pub fn next_after(&self, now: Timestamp) -> Option<Opening> {
        match self {
            Window::Always => None,
            Window::Weekly { .. } => self.openings_from(now).find(|o| o.start.timestamp() > now),
        }
    }

    /// Openings in order, starting on the day `from` falls in (in the window's zone).
    fn openings_from(&self, from: Timestamp) -> impl Iterator<Item = Opening> + '_ {
        let Window::Weekly {
            days,
            start,
            minutes,
            zone,
            ..
        } = self
        else {
            unreachable!("openings of a weekly window only")
        };
        let first = from.to_zoned(zone.clone()).date();
        (0..15 * 7).filter_map(move |i| {
            let date = first.checked_add(i.days()).ok()?;
            if !days.contains(&date.weekday()) {
                return None;
            }
            let start = date.to_datetime(*start).to_zoned(zone.clone()).ok()?;
            let end = start
                .timestamp()
                .checked_add(SignedDuration::from_mins(*minutes))
                .ok()?
                .to_zoned(zone.clone());
            Some(Opening { start, end })
        })
    }
}

/// Of several windows: the opening containing `now`, if any.
pub fn open_now(windows: &[Window], now: Timestamp) -> Option<Option<Opening>> {
    windows.iter().find_map(|w| match w {
        Window::Always => Some(None),
        _ => w.open_at(now).map(Some),
    })
}

/// Of several windows: the next opening after `now`.
pub fn next_opening(windows: &[Window], now: Timestamp) -> Option<Opening> {
    windows
        .iter()
        .filter_map(|w| w.next_after(now))
        .min_by_key(|o| o.start.timestamp())
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
