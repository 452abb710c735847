//! End-to-end tests: the real `keyfleet` binary against real engine processes
//! (redis-server in CI, KeyDB when KEYFLEET_KEYDB_SERVER is set) on loopback ports
//! picked at run time. One test binary, for link speed.

mod config_errors;
mod daemon;
mod dev_fleet;
mod fixture;
mod render;
