//! The Prometheus text exposition format (version 0.0.4): family headers, samples, label
//! escaping and number formatting, written into one `String`. It knows no metric names.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric family: its name, type and help, declared once.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

impl Family {
    pub const fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: Kind::Gauge,
            help,
        }
    }

    pub const fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: Kind::Counter,
            help,
        }
    }

    pub const fn histogram(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: Kind::Histogram,
            help,
        }
    }
}

/// The text of one scrape. Headers are written lazily, before a family's first sample,
/// so a family without samples leaves no trace.
pub struct Exposition {
    out: String,
    current: &'static str,
}

impl Exposition {
    pub fn with_capacity(capacity: usize) -> Exposition {
        Exposition {
            out: String::with_capacity(capacity),
            current: "",
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn header(&mut self, family: &Family) {
        if self.current != family.name {
            self.current = family.name;
            let _ = write!(
                self.out,
                "# HELP {} {}\n# TYPE {} {}\n",
                family.name,
                family.help,
                family.name,
                family.kind.as_str()
            );
        }
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// A sample whose value is a number.
    pub fn sample(&mut self, family: &Family, labels: &[(&str, &str)], value: f64) {
        self.suffixed(family, "", labels, value);
    }

    /// One histogram: cumulative `(upper bound, count)` buckets (`+Inf` last), sum and
    /// count, as `NAME_bucket{le}`, `NAME_sum` and `NAME_count`.
    pub fn histogram(
        &mut self,
        family: &Family,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        for (bound, n) in buckets {
            let le = if bound.is_infinite() {
                "+Inf".to_owned()
            } else {
                bound.to_string()
            };
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.suffixed(family, "_bucket", &with_le, *n as f64);
        }
        self.suffixed(family, "_sum", labels, sum);
        self.suffixed(family, "_count", labels, count as f64);
    }

    fn suffixed(&mut self, family: &Family, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.header(family);
        self.out.push_str(family.name);
        self.out.push_str(suffix);
        self.labels(labels);
        self.out.push(' ');
        if value.is_nan() {
            self.out.push_str("NaN");
        } else if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }

    /// A sample whose value is the engine's own text, copied without a float round trip
    /// when it is a plain decimal number; `false` (and nothing written) when it is not.
    pub fn sample_text(&mut self, family: &Family, labels: &[(&str, &str)], value: &str) -> bool {
        if !is_plain_number(value) {
            return false;
        }
        self.header(family);
        self.out.push_str(family.name);
        self.labels(labels);
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
        true
    }
}

/// `-12`, `3.27`, `0.000001`: what Prometheus and Rust both read as the same number.
fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Label values escape `\`, `"` and newlines.
fn escape_into(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Family = Family::gauge("x_up", "Whether x is up.");

    #[test]
    fn headers_once_and_escaped_labels() {
        let mut e = Exposition::with_capacity(64);
        e.sample(&UP, &[("a", "q\"b\\s\nn")], 1.0);
        e.sample(&UP, &[("a", "plain")], 0.5);
        assert!(!e.sample_text(&UP, &[], "97.24%"));
        assert!(e.sample_text(&UP, &[], "-1"));
        e.sample(&UP, &[], f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP x_up Whether x is up.\n# TYPE x_up gauge\n\
             x_up{a=\"q\\\"b\\\\s\\nn\"} 1\nx_up{a=\"plain\"} 0.5\nx_up -1\nx_up +Inf\n"
        );
    }

    #[test]
    fn plain_numbers() {
        for ok in ["0", "-1", "3.27", "0.000001", "1795374622"] {
            assert!(is_plain_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "1.", ".5", "1e5", "inf", "NaN", "ok", "1.2.3", "97.24%",
        ] {
            assert!(!is_plain_number(bad), "{bad}");
        }
    }
}
