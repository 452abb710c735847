//! Link flags for the `keyfleet` binary.
//!
//! On Linux with glibc, relative relocations are packed (`DT_RELR`, glibc 2.36 or newer):
//! the loader then reads a few KiB of bitmap at start instead of ~150 KiB of `.rela.dyn`
//! entries, which stayed resident for the life of the daemon (BENCHMARKS.md, idle RSS).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
