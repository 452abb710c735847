//! The daemon's clock, as the safety checks read it: the system's wall clock, plus an
//! offset that only tests set (`KEYFLEET_TEST_CLOCK_OFFSET`, e.g. "+250ms" or "-1s"), so
//! that a skew between nodes can be made on one machine. On a real node the daemon and
//! its engine read the same host clock, so the daemon's clock stands for the engine's.

use std::time::{SystemTime, UNIX_EPOCH};

/// The variable a test sets to shift this daemon's clock.
pub const OFFSET_VAR: &str = "KEYFLEET_TEST_CLOCK_OFFSET";

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_us: i64,
}

impl Clock {
    /// The system clock shifted by `offset_us` microseconds.
    pub fn with_offset_us(offset_us: i64) -> Clock {
        Clock { offset_us }
    }

    /// The system clock, shifted as `KEYFLEET_TEST_CLOCK_OFFSET` says; a value that does
    /// not parse is an error naming the variable.
    pub fn from_env() -> Result<Clock, String> {
        match std::env::var(OFFSET_VAR) {
            Err(_) => Ok(Clock::default()),
            Ok(v) if v.trim().is_empty() => Ok(Clock::default()),
            Ok(v) => parse_offset(&v)
                .map(Clock::with_offset_us)
                .ok_or_else(|| format!("{OFFSET_VAR}={v}: not a signed duration like +250ms")),
        }
    }

    pub fn offset_us(&self) -> i64 {
        self.offset_us
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> i64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX) + self.offset_us
    }

    /// Seconds since the epoch.
    pub fn now_unix(&self) -> f64 {
        self.now_us() as f64 / 1e6
    }
}

/// "+250ms", "-1s", "300ms" as microseconds.
fn parse_offset(text: &str) -> Option<i64> {
    let text = text.trim();
    let (sign, rest) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let d = crate::config::parse_duration(rest).ok()?;
    Some(sign * i64::try_from(d.as_micros()).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_with_a_sign() {
        assert_eq!(parse_offset("+250ms"), Some(250_000));
        assert_eq!(parse_offset("-1s"), Some(-1_000_000));
        assert_eq!(parse_offset("300ms"), Some(300_000));
        assert_eq!(parse_offset("soon"), None);
        assert_eq!(parse_offset(""), None);
    }

    #[test]
    fn an_offset_shifts_the_clock() {
        let plain = Clock::default().now_us();
        let ahead = Clock::with_offset_us(2_000_000).now_us();
        assert!(
            (ahead - plain - 2_000_000).abs() < 500_000,
            "{ahead} vs {plain}"
        );
    }
}
