//! End-to-end tests: the real `keyfleet` binary against real engine processes
//! (redis-server in CI, KeyDB when KEYFLEET_KEYDB_SERVER is set) on loopback ports
//! picked at run time. One test binary, for link speed.

/// Prints a "skipped ..." line past libtest's output capture, so a skipped test is
/// visible in the run's output and not only when it fails.
macro_rules! skip {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod api_fixture;
mod api_limits;
mod api_rejections;
mod backup;
mod backup_schedule;
mod binary;
mod config_errors;
mod daemon;
mod dev_fleet;
mod fixture;
mod fleet_restore;
mod fleet_restore_refusals;
mod logship;
mod logship_failures;
mod net_fixture;
mod render;
mod restore;
mod s3_fixture;
mod safety;
mod safety_deletes;
mod safety_divergence;
mod safety_fixture;
mod safety_reads;
mod safety_resync;
mod upgrade;
mod upgrade_api;
mod upgrade_backup;
mod upgrade_fixture;
