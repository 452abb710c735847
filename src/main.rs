//! The `keyfleet` command line: parses arguments and hands each subcommand to its module.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keyfleet",
    version,
    about = "Run and watch a KeyDB multi-master fleet"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The per-node management daemon (run by systemd on NixOS).
    Daemon {
        #[arg(long)]
        config: PathBuf,
    },
    /// A local fleet for development: engines and daemons on 127.0.0.1.
    Dev(keyfleet::dev::DevArgs),
    /// The fleet at a glance, from a daemon's API.
    Status(keyfleet::status::StatusArgs),
    /// Log shipping to S3: its state, and flushing it.
    Logs(keyfleet::logs::LogsArgs),
    /// Backups to S3: take one, list them, show one, restore one outside the fleet.
    Backup(keyfleet::backups_cli::BackupArgs),
    /// Compare the whole keyspace across every node and print the keys that differ.
    Diff(keyfleet::diff_cli::DiffArgs),
    /// Repair what the replication-safety checks found: resurrected keys.
    Repair(keyfleet::repair_cli::RepairArgs),
    /// Rollback-able upgrades: status, approvals, confirming and rolling back, staging
    /// a candidate into a dev fleet.
    Upgrade(keyfleet::upgrade::cli::UpgradeArgs),
    /// The privileged half of upgrades (root, oneshot): switches and rolls back
    /// generations as the daemon decides.
    UpgradeAgent(keyfleet::upgrade::agent::AgentArgs),
    /// Render configuration files.
    Render {
        #[command(subcommand)]
        what: RenderWhat,
    },
}

#[derive(Subcommand)]
enum RenderWhat {
    /// The engine (KeyDB or Redis) config for a node.
    KeydbConf {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Daemon { config } => keyfleet::daemon::main(&config),
        Command::Dev(args) => keyfleet::dev::main(args),
        Command::Status(args) => keyfleet::status::main(args),
        Command::Logs(args) => keyfleet::logs::main(args),
        Command::Backup(args) => keyfleet::backups_cli::main(args),
        Command::Repair(args) => keyfleet::repair_cli::main(args),
        Command::Diff(args) => keyfleet::diff_cli::main(args),
        Command::Upgrade(args) => keyfleet::upgrade::cli::main(args),
        Command::UpgradeAgent(args) => keyfleet::upgrade::agent::main(args),
        Command::Render {
            what: RenderWhat::KeydbConf { config },
        } => match keyfleet::config::Config::load(&config) {
            Ok(c) => {
                print!("{}", keyfleet::render::keydb_conf(&c));
                0
            }
            Err(e) => {
                eprintln!("keyfleet: {e}");
                2
            }
        },
    };
    ExitCode::from(code)
}
