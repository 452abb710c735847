//! Generations for a directory of generations (`keyfleet dev` and the tests): the first
//! one `dev` starts from, and candidates staged into a running dev fleet
//! (`keyfleet upgrade stage PATH --dir DIR`, `keyfleet dev --upgrade-to PATH`). A
//! generation is an engine binary (a symlink), the engine config rendered from the
//! node's keyfleet.toml (plus any extra lines, e.g. to make a candidate the engine
//! rejects), and a generation.json saying what it carries.

use super::generations::Dir;
use super::policy::GenerationMeta;
use crate::config::Config;
use std::path::{Path, PathBuf};

/// What to stage.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    pub engine: PathBuf,
    /// The fleet-wide release name; default `ENGINE_VERSION-STAMP`.
    pub release: Option<String>,
    /// Lines appended to every node's rendered engine config.
    pub extra_conf: Vec<String>,
    /// The version to record when `ENGINE --version` cannot tell.
    pub engine_version: Option<String>,
}

/// `keydb-server --version` → ("keydb", "6.3.4").
pub fn engine_version(bin: &Path) -> Result<(String, String), String> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .ok_or_else(|| {
            format!(
                "{} --version printed no version (`{}`); give --engine-version",
                bin.display(),
                text.trim()
            )
        })?;
    let engine = if text.starts_with("KeyDB") {
        "keydb"
    } else {
        "redis"
    };
    Ok((engine.to_owned(), version.to_owned()))
}

/// Writes one generation's files into `dir` (created; replaced if it exists).
pub fn write_generation(
    dir: &Path,
    engine: &Path,
    conf: &str,
    meta: &GenerationMeta,
) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(err)?;
    let engine = std::fs::canonicalize(engine).map_err(|e| format!("{}: {e}", engine.display()))?;
    std::os::unix::fs::symlink(&engine, dir.join("engine")).map_err(err)?;
    std::fs::write(dir.join("engine.conf"), conf).map_err(err)?;
    let json = serde_json::to_string_pretty(meta).expect("json") + "\n";
    std::fs::write(dir.join("generation.json"), json).map_err(err)
}

/// The meta of a generation running `engine` (its kind and version from `--version`
/// unless `version` is given).
pub fn meta_for(
    engine: &Path,
    release: &str,
    version: Option<&str>,
    configured: crate::config::EngineKind,
) -> Result<GenerationMeta, String> {
    let (kind, v) = match version {
        Some(v) => (configured.as_str().to_owned(), v.to_owned()),
        None => engine_version(engine)?,
    };
    Ok(GenerationMeta {
        release: release.to_owned(),
        engine: kind,
        engine_version: v,
        keyfleet_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    })
}

/// `dev`'s first generation of a node: gen-1, current.
pub fn initial(root: &Path, config: &Config, engine: &Path) -> Result<GenerationMeta, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let meta = meta_for(engine, "initial", None, config.engine.kind)?;
    let dir = Dir::new(root);
    for stale in ["current", "candidate", "running.json"] {
        let _ = std::fs::remove_file(root.join(stale));
    }
    for n in dir.numbers()? {
        let _ = std::fs::remove_dir_all(root.join(format!("gen-{n}")));
    }
    let _ = std::fs::remove_dir_all(root.join("staged"));
    write_generation(
        &root.join("gen-1"),
        engine,
        &crate::render::keydb_conf(config),
        &meta,
    )?;
    dir.set_link("current", "gen-1")?;
    Ok(meta)
}

fn default_release(version: &str) -> String {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    format!("{version}-{stamp}")
}

/// Stages `c` for one node whose generations live in `root`; returns the release.
pub fn stage_node(
    root: &Path,
    config: &Config,
    c: &Candidate,
    release: &str,
) -> Result<(), String> {
    let meta = meta_for(
        &c.engine,
        release,
        c.engine_version.as_deref(),
        config.engine.kind,
    )?;
    let mut conf = crate::render::keydb_conf(config);
    for line in &c.extra_conf {
        conf.push_str(line);
        conf.push('\n');
    }
    let rel = format!("staged/{release}");
    write_generation(&root.join(&rel), &c.engine, &conf, &meta)?;
    Dir::new(root).set_link("candidate", &rel)
}

/// Stages `c` on every node of the dev fleet in `dir`; returns the release.
pub fn stage_fleet(dir: &Path, c: &Candidate) -> Result<String, String> {
    let file = dir.join("fleet.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "{}: {e}: no `keyfleet dev --dir {}` is running",
            file.display(),
            dir.display()
        )
    })?;
    let fleet: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let names: Vec<String> = fleet["nodes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|n| n["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(format!("{}: lists no node", file.display()));
    }
    let version = match &c.engine_version {
        Some(v) => v.clone(),
        None => engine_version(&c.engine)?.1,
    };
    let release = c
        .release
        .clone()
        .unwrap_or_else(|| default_release(&version));
    for name in &names {
        let config_path = dir.join(name).join("keyfleet.toml");
        let config = Config::load(&config_path).map_err(|e| e.to_string())?;
        let root = config
            .upgrades
            .as_ref()
            .and_then(|u| u.generations_dir.clone())
            .ok_or_else(|| format!("{}: no [upgrades] generations_dir", config_path.display()))?;
        stage_node(&root, &config, c, &release)?;
    }
    Ok(release)
}
