#!/usr/bin/env bash
# Tests the crate as the Nix package's check phase does: exactly the paths
# pkgs/keyfleet/source.nix lists, copied into an empty directory with nothing beside it,
# then `cargo test --offline --locked` there. A test that reads outside the repository
# (a sibling checkout) or outside the source set fails here as it would in `nix build`. CI runs
# it after the README's test command, which has fetched every crate already.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

command -v nix-instantiate > /dev/null || {
  echo "test-source-set: nix-instantiate is needed to read pkgs/keyfleet/source.nix" >&2
  exit 1
}
mapfile -t paths < <(
  nix-instantiate --eval --strict --json pkgs/keyfleet/source.nix 2> /dev/null |
    python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)))'
)
[ "${#paths[@]}" -gt 0 ] || {
  echo "test-source-set: pkgs/keyfleet/source.nix lists nothing" >&2
  exit 1
}

# A fixed place, emptied first, with nothing beside the copy: its parent holds only it.
# Fixed, so that cargo's own change tracking stays right between runs (a build dir
# shared with other source paths would reuse binaries whose CARGO_MANIFEST_DIR points
# elsewhere); its own target directory, for the same reason.
root=$repo/target/source-set
rm -rf "$root"
mkdir -p "$root/keyfleet"
for p in "${paths[@]}"; do
  cp -a --parents "$p" "$root/keyfleet/"
done
echo "test-source-set: ${paths[*]} copied alone into $root/keyfleet"
cd "$root/keyfleet"
CARGO_TARGET_DIR=$repo/target/source-set-build cargo test --offline --locked --all-targets
