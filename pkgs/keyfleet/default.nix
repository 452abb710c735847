# The keyfleet program, built from the repository's own Cargo.lock. The source is only
# what cargo needs (./source.nix lists it). The flake calls this with pkgsStatic's
# callPackage, so rustPlatform and stdenv are the static musl ones; redis, keydb and
# tzdata are passed in as plain build-machine packages, for the tests only.
{
  lib,
  stdenv,
  rustPlatform,
  redis,
  keydb,
  tzdata,
}:

let
  root = ../..;
  cargoToml = lib.importTOML (root + "/Cargo.toml");
in
rustPlatform.buildRustPackage {
  pname = "keyfleet";
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions (map (path: root + "/${path}") (import ./source.nix));
  };

  cargoLock.lockFile = root + "/Cargo.lock";

  # The integration tests start real engines on loopback ports: redis-server from PATH,
  # KeyDB from KEYFLEET_KEYDB_SERVER (as `keyfleet dev` finds it). The schedule tests
  # read time zones from the tz database, which the build sandbox has only through TZDIR
  # (a NixOS host has /etc/zoneinfo, where the daemon finds it).
  nativeCheckInputs = [ redis ];
  preCheck = ''
    export KEYFLEET_KEYDB_SERVER=${lib.getExe' keydb keydb.serverBin}
    export TZDIR=${tzdata}/share/zoneinfo
  '';

  # In a static package set the binary must come out static (no PT_INTERP, no DT_NEEDED):
  # fail here rather than ship a binary that needs a loader. tests/integration/binary.rs
  # checks DT_RELR only for glibc (target_env = "gnu").
  postInstall = lib.optionalString stdenv.hostPlatform.isStatic ''
    # Captured first: under pipefail, `readelf | grep -q` can lose readelf's status.
    headers=$($READELF -lW -dW $out/bin/keyfleet)
    if grep -qE 'program interpreter|\(NEEDED\)' <<<"$headers"; then
      echo "keyfleet: $out/bin/keyfleet is not statically linked" >&2
      echo "$headers" >&2
      exit 1
    fi
  '';

  meta = {
    inherit (cargoToml.package) description;
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "keyfleet";
  };
}
