//! keyfleet: the per-node management daemon of a KeyDB multi-master fleet, its client,
//! the engine-config renderer and a local development fleet. `main.rs` only parses the
//! command line; every concern lives in one module here.

pub mod api;
pub mod backup;
pub mod backups_cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dev;
pub mod diff_cli;
pub mod engine;
pub mod fleet;
pub mod http_client;
pub mod logs;
pub mod logship;
pub mod metrics;
pub mod render;
pub mod repair_cli;
pub mod restore_cli;
pub mod s3;
pub mod safety;
pub mod schedule;
pub mod scratch;
pub mod status;
pub mod upgrade;
