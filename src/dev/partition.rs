//! `keyfleet dev partition NODE... --dir DIR` cuts both proxies of every link of NODE (a
//! network partition); with `--replication-only` only the replication proxies, so the
//! daemons still read every engine and can watch the nodes drift apart (a replication
//! outage, as a broken replication user or a resync loop would make). It writes
//! `DIR/partition.json` (the nodes cut off, the kind, a generation number); the running
//! `dev` applies it and writes the generation back to `DIR/partition-applied.json`, which
//! the command waits for.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `partition.json` says: the nodes cut off from every other, whether only their
/// replication is cut, and a generation that `partition-applied.json` echoes once applied.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    pub generation: u64,
    pub cut: BTreeSet<String>,
    #[serde(default)]
    pub replication_only: bool,
}

impl Partition {
    /// The nodes cut off, as a list for people.
    pub(super) fn names(&self) -> String {
        self.cut.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

pub(super) fn request_path(dir: &Path) -> PathBuf {
    dir.join("partition.json")
}

pub(super) fn applied_path(dir: &Path) -> PathBuf {
    dir.join("partition-applied.json")
}

pub(super) fn read_partition(path: &Path) -> Option<Partition> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

pub(super) fn write_atomically(path: &Path, p: &Partition) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(p).expect("json") + "\n";
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `keyfleet dev partition NODE...` and `keyfleet dev heal`: the exit status.
pub fn act(action: &super::DevAction) -> u8 {
    let (dir, nodes, heal, replication_only) = match action {
        super::DevAction::Partition {
            nodes,
            dir,
            replication_only,
        } => (dir, nodes.as_slice(), false, *replication_only),
        super::DevAction::Heal { dir } => (dir, &[][..], true, false),
    };
    match request(dir, nodes, heal, replication_only) {
        Ok(p) if p.cut.is_empty() => {
            println!(
                "healed: every engine link of the fleet in {} restored",
                dir.display()
            );
            0
        }
        Ok(p) => {
            println!(
                "cut off from the other engines{}: {} (heal with `keyfleet dev heal --dir {}`)",
                if p.replication_only {
                    " (replication only)"
                } else {
                    ""
                },
                p.names(),
                super::shell_word(&dir.display().to_string())
            );
            0
        }
        Err(e) => {
            eprintln!("keyfleet dev: {e}");
            1
        }
    }
}

/// `keyfleet dev partition` / `heal`: asks the running `dev` in `dir` to cut off `nodes`
/// (added to those already cut; `replication_only`: cut only their replication) or, with
/// `heal`, to restore every link; waits up to 5 s for it to apply.
pub fn request(
    dir: &Path,
    nodes: &[String],
    heal: bool,
    replication_only: bool,
) -> Result<Partition, String> {
    let fleet: serde_json::Value = std::fs::read_to_string(dir.join("fleet.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            format!(
                "no running fleet in {}: start one with `keyfleet dev --partitionable --dir {}`",
                dir.display(),
                dir.display()
            )
        })?;
    if fleet["partitionable"] != true {
        return Err(format!(
            "the fleet in {} was started without --partitionable: its engines are linked \
             directly; restart it with `keyfleet dev --partitionable`",
            dir.display()
        ));
    }
    let names: Vec<&str> = fleet["nodes"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["name"].as_str()).collect())
        .unwrap_or_default();
    if let Some(unknown) = nodes.iter().find(|n| !names.contains(&n.as_str())) {
        return Err(format!(
            "`{unknown}` is not a node of this fleet ({})",
            names.join(", ")
        ));
    }
    let current = read_partition(&request_path(dir)).unwrap_or_default();
    if !heal && !current.cut.is_empty() && current.replication_only != replication_only {
        return Err(format!(
            "{} already cut off {}: heal first (`keyfleet dev heal --dir {}`)",
            current.names(),
            if current.replication_only {
                "with --replication-only"
            } else {
                "entirely"
            },
            dir.display()
        ));
    }
    let mut next = Partition {
        generation: current.generation + 1,
        cut: if heal { BTreeSet::new() } else { current.cut },
        replication_only: !heal && replication_only,
    };
    next.cut.extend(nodes.iter().cloned());
    write_atomically(&request_path(dir), &next)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if read_partition(&applied_path(dir)).is_some_and(|a| a.generation >= next.generation) {
            return Ok(next);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the fleet in {} did not apply the change within 5 s: is its `keyfleet dev` still running?",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_file_without_the_kind_cuts_everything() {
        // The file an earlier keyfleet wrote has no `replication_only`.
        let p: Partition = serde_json::from_str(r#"{"generation": 3, "cut": ["n1"]}"#).unwrap();
        assert!(!p.replication_only);
    }
}
