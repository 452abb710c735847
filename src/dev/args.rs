//! `keyfleet dev`'s command line: the fleet's options and the actions on a running one.

use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevArgs {
    #[command(subcommand)]
    pub action: Option<DevAction>,
    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// Where node configs, data and logs go; fleet.json is written here. One `dev` per
    /// directory: a directory in use is refused.
    #[arg(long, default_value = crate::client::DEFAULT_DEV_DIR)]
    pub dir: PathBuf,
    /// Engine ports are P, P+1, ...; API ports are P+100, P+101, ...
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// How long to wait for every node to become ready.
    #[arg(long, default_value = "60s", value_parser = crate::config::parse_duration)]
    pub ready_timeout: Duration,
    /// Ship the fleet's logs to this S3-compatible store (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) [default: an s3s-fs started here, when
    /// s3s-fs is on PATH]
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The bucket logs go to; created when missing.
    #[arg(long, value_name = "NAME", default_value = "keyfleet-dev")]
    pub s3_bucket: String,
    /// Do not ship logs at all.
    #[arg(long, conflicts_with = "s3_endpoint")]
    pub no_s3: bool,
    /// Put TCP proxies on every engine link (one for replication, one for the daemons'
    /// reads), so that `keyfleet dev partition` can cut links for real and `keyfleet dev
    /// heal` restore them.
    #[arg(long)]
    pub partitionable: bool,
    /// Once ready, stage this engine binary as an upgrade candidate (e.g. KeyDB 6.3.4
    /// on a 6.3.3 fleet) and let the fleet roll it out; watch `keyfleet upgrade status`.
    #[arg(long, value_name = "PATH")]
    pub upgrade_to: Option<PathBuf>,
    /// A maintenance window for the fleet's upgrades (repeatable), e.g.
    /// "Sun 02:00-03:00 Asia/Kolkata" [default: always open]
    #[arg(long, value_name = "SPEC", value_parser = parse_window)]
    pub window: Vec<String>,
    /// How long a new generation has to prove healthy before it is rolled back.
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub gate_timeout: Duration,
}

fn parse_window(s: &str) -> Result<String, String> {
    s.parse::<crate::upgrade::window::Window>()?;
    Ok(s.to_owned())
}

/// What to do to a running partitionable dev fleet.
#[derive(clap::Subcommand, Debug)]
pub enum DevAction {
    /// Cuts every engine link of each NODE (reset, and refused until healed): its
    /// replication and the daemons' reads of its engine. The daemons' APIs stay
    /// reachable.
    Partition {
        /// The nodes to cut off, e.g. node3.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Cut only the replication links: the daemons still read every engine, so the
        /// divergence sampler and `keyfleet diff` see the nodes drift apart.
        #[arg(long)]
        replication_only: bool,
        /// The running fleet's directory.
        #[arg(long, default_value = crate::client::DEFAULT_DEV_DIR)]
        dir: PathBuf,
    },
    /// Restores every engine link.
    Heal {
        /// The running fleet's directory.
        #[arg(long, default_value = crate::client::DEFAULT_DEV_DIR)]
        dir: PathBuf,
    },
}
