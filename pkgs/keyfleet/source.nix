# What the keyfleet package is built and tested from, relative to the repository root:
# everything cargo needs, nothing else, so an edit to the Nix files or the docs does not
# rebuild it, and so the tests see only what the repository holds. .ci/run copies
# exactly these paths into an empty directory and runs `cargo test --offline --locked`
# there, as the package's check phase does.
[
  "Cargo.toml"
  "Cargo.lock"
  # Link flags for the binary (packed relocations; see the file).
  "build.rs"
  "src"
  "tests"
  "examples"
  # INFO captures and redis_exporter's output, which the unit tests parse.
  "fixtures"
]
