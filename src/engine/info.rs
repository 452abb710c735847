//! Parsing the text of `INFO everything` from KeyDB or Redis into an ordered list of
//! (section, key, value) entries, with typed views of the structured lines (`dbN:`,
//! `slaveN:`, `cmdstat_*:`, and KeyDB's numbered `master_N_*` replication blocks).
//! It only reads text: it never talks to the engine and never decides what a value means
//! for the node's health (that is `status`).

use std::ops::Range;

/// Why an INFO reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    #[error("the engine's INFO reply is empty")]
    Empty,
    #[error("the engine's INFO reply has no `key:value` line (starts with {start:?})")]
    NoFields { start: String },
}

/// A parsed INFO reply. The text is kept once and entries are ranges into it, so parsing
/// a reply allocates two vectors, not a string per line (it runs on every poll and scrape).
#[derive(Debug, Clone)]
pub struct Info {
    text: String,
    sections: Vec<Range<usize>>,
    entries: Vec<RawEntry>,
}

#[derive(Debug, Clone)]
struct RawEntry {
    section: usize,
    key: Range<usize>,
    value: Range<usize>,
}

/// One `key:value` line, in reply order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The `# Section` heading above the line, "" before any heading.
    pub section: &'a str,
    pub key: &'a str,
    pub value: &'a str,
}

/// A `dbN:keys=..,expires=..,avg_ttl=..` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStat {
    pub db: u32,
    pub keys: u64,
    pub expires: u64,
    pub avg_ttl_ms: u64,
    /// KeyDB only: keys held in memory when a storage provider is used.
    pub cached_keys: Option<u64>,
}

/// A `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line: a replica connected to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStat<'a> {
    pub index: u32,
    pub ip: &'a str,
    pub port: u16,
    pub state: &'a str,
    pub offset: i64,
    /// Seconds since the replica last acknowledged; absent on very old engines.
    pub lag: Option<i64>,
}

/// A `cmdstat_NAME:calls=..,usec=..` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdStat<'a> {
    pub command: &'a str,
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: Option<u64>,
    pub failed_calls: Option<u64>,
}

/// One master this node replicates from: `master_host`.. (index 0) or `master_N_host`..
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterLink<'a> {
    pub index: u32,
    pub host: &'a str,
    pub port: u16,
    pub link_up: bool,
    /// -1 while the link is down.
    pub last_io_seconds_ago: Option<i64>,
    pub sync_in_progress: bool,
    /// Present only while the link is down; -1 means "never up since the engine started".
    pub link_down_since_seconds: Option<i64>,
    /// The `slave_repl_offset` that follows this master's block (KeyDB repeats it per master).
    pub repl_offset: Option<i64>,
}

impl Info {
    /// Parses an INFO reply; CRLF or LF line ends, unknown lines are skipped.
    pub fn parse(text: impl Into<String>) -> Result<Info, InfoError> {
        let text = text.into();
        if text.trim().is_empty() {
            return Err(InfoError::Empty);
        }
        // Entries before any heading belong to an unnamed section 0.
        let mut sections: Vec<Range<usize>> = Vec::with_capacity(16);
        sections.push(0..0);
        let mut entries = Vec::with_capacity(256);
        let mut start = 0;
        for line in text.split_inclusive('\n') {
            let line_start = start;
            start += line.len();
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(name) = line.strip_prefix('#') {
                let name = name.trim();
                let at = line_start + (line.len() - line.trim_start_matches(['#', ' ']).len());
                sections.push(at..at + name.len());
            } else if let Some(colon) = line.find(':') {
                if colon == 0 {
                    continue;
                }
                entries.push(RawEntry {
                    section: sections.len() - 1,
                    key: line_start..line_start + colon,
                    value: line_start + colon + 1..line_start + line.len(),
                });
            }
        }
        if entries.is_empty() {
            let start: String = text.chars().take(40).collect();
            return Err(InfoError::NoFields { start });
        }
        Ok(Info {
            text,
            sections,
            entries,
        })
    }

    /// The reply as the engine sent it.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn entry(&self, raw: &RawEntry) -> Entry<'_> {
        Entry {
            section: &self.text[self.sections[raw.section].clone()],
            key: &self.text[raw.key.clone()],
            value: &self.text[raw.value.clone()],
        }
    }

    /// Every entry in reply order, repeated keys included.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.entries.iter().map(|raw| self.entry(raw))
    }

    /// Entries of one section (`"Replication"`, case-insensitive).
    pub fn section<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Entry<'a>> + 'a {
        self.entries()
            .filter(move |e| e.section.eq_ignore_ascii_case(name))
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        let raw = self
            .entries
            .iter()
            .find(|raw| &self.text[raw.key.clone()] == key)?;
        Some(&self.text[raw.value.clone()])
    }

    /// Every value of `key`, in reply order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |raw| &self.text[raw.key.clone()] == key)
            .map(|raw| &self.text[raw.value.clone()])
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.trim().parse().ok()
    }

    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.trim().parse().ok()
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.trim().parse().ok()
    }

    /// The `dbN:` keyspace lines.
    pub fn dbs(&self) -> impl Iterator<Item = DbStat> + '_ {
        self.entries().filter_map(|e| {
            let db = e.key.strip_prefix("db")?.parse().ok()?;
            let mut stat = DbStat {
                db,
                keys: 0,
                expires: 0,
                avg_ttl_ms: 0,
                cached_keys: None,
            };
            for (k, v) in fields(e.value) {
                match k {
                    "keys" => stat.keys = v.parse().ok()?,
                    "expires" => stat.expires = v.parse().ok()?,
                    "avg_ttl" => stat.avg_ttl_ms = v.parse().ok()?,
                    "cached_keys" => stat.cached_keys = v.parse().ok(),
                    _ => {}
                }
            }
            Some(stat)
        })
    }

    /// The `slaveN:` lines: replicas connected to this node.
    pub fn replicas(&self) -> impl Iterator<Item = ReplicaStat<'_>> {
        self.entries().filter_map(|e| {
            let index = e.key.strip_prefix("slave")?.parse().ok()?;
            let (mut ip, mut port, mut state, mut offset, mut lag) = (None, None, "", 0, None);
            for (k, v) in fields(e.value) {
                match k {
                    "ip" => ip = Some(v),
                    "port" => port = v.parse().ok(),
                    "state" => state = v,
                    "offset" => offset = v.parse().unwrap_or(0),
                    "lag" => lag = v.parse().ok(),
                    _ => {}
                }
            }
            Some(ReplicaStat {
                index,
                ip: ip?,
                port: port?,
                state,
                offset,
                lag,
            })
        })
    }

    /// The `cmdstat_NAME:` lines.
    pub fn cmdstats(&self) -> impl Iterator<Item = CmdStat<'_>> {
        self.entries().filter_map(|e| {
            let command = e.key.strip_prefix("cmdstat_")?;
            let mut stat = CmdStat {
                command,
                calls: 0,
                usec: 0,
                rejected_calls: None,
                failed_calls: None,
            };
            for (k, v) in fields(e.value) {
                match k {
                    "calls" => stat.calls = v.parse().ok()?,
                    "usec" => stat.usec = v.parse().ok()?,
                    "rejected_calls" => stat.rejected_calls = v.parse().ok(),
                    "failed_calls" => stat.failed_calls = v.parse().ok(),
                    _ => {}
                }
            }
            Some(stat)
        })
    }

    /// The masters this node replicates from, ordered by index. Redis has at most one
    /// (`master_host`); KeyDB active replicas number the rest `master_1_host`, ...
    pub fn masters(&self) -> Vec<MasterLink<'_>> {
        let mut links: Vec<MasterLink<'_>> = Vec::new();
        // KeyDB prints `slave_repl_offset` after each master's block without a number, so
        // it belongs to the master whose fields came last.
        let mut last: Option<u32> = None;
        for e in self.entries() {
            if e.key == "slave_repl_offset" {
                if let Some(link) = last.and_then(|i| links.iter_mut().find(|l| l.index == i)) {
                    link.repl_offset = e.value.parse().ok();
                }
                continue;
            }
            let Some((index, field)) = master_field(e.key) else {
                continue;
            };
            last = Some(index);
            let link = match links.iter().position(|l| l.index == index) {
                Some(at) => &mut links[at],
                None => {
                    links.push(MasterLink {
                        index,
                        host: "",
                        port: 0,
                        link_up: false,
                        last_io_seconds_ago: None,
                        sync_in_progress: false,
                        link_down_since_seconds: None,
                        repl_offset: None,
                    });
                    links.last_mut().expect("just pushed")
                }
            };
            match field {
                "host" => link.host = e.value,
                "port" => link.port = e.value.parse().unwrap_or(0),
                "link_status" => link.link_up = e.value == "up",
                "last_io_seconds_ago" => link.last_io_seconds_ago = e.value.parse().ok(),
                "sync_in_progress" => link.sync_in_progress = e.value == "1",
                "link_down_since_seconds" => link.link_down_since_seconds = e.value.parse().ok(),
                _ => {}
            }
        }
        links.retain(|l| !l.host.is_empty());
        links.sort_by_key(|l| l.index);
        links
    }
}

/// The per-master fields: `master_host` is (0, "host"), `master_2_port` is (2, "port").
/// Other `master_*` keys (`master_replid`, `master_global_link_status`, ...) are not.
fn master_field(key: &str) -> Option<(u32, &str)> {
    const FIELDS: [&str; 6] = [
        "host",
        "port",
        "link_status",
        "last_io_seconds_ago",
        "sync_in_progress",
        "link_down_since_seconds",
    ];
    let rest = key.strip_prefix("master_")?;
    let (index, field) = match rest.split_once('_') {
        Some((n, field)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (n.parse().ok()?, field)
        }
        _ => (0, rest),
    };
    FIELDS.contains(&field).then_some((index, field))
}

/// The `k=v,k=v` pairs of a structured value.
fn fields(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(',').filter_map(|kv| kv.split_once('='))
}

#[cfg(test)]
#[path = "info_tests.rs"]
mod tests;
