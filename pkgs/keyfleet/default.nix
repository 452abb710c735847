# The keyfleet program, built from the repository's own Cargo.lock. The source is only
# what cargo needs, so an edit to the Nix files or the docs does not rebuild it.
{
  lib,
  rustPlatform,
  redis,
  keydb,
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
    fileset = lib.fileset.unions [
      (root + "/Cargo.toml")
      (root + "/Cargo.lock")
      (root + "/src")
      (lib.fileset.maybeMissing (root + "/tests"))
      (lib.fileset.maybeMissing (root + "/examples"))
      # INFO captures the unit tests parse.
      (lib.fileset.maybeMissing (root + "/fixtures"))
    ];
  };

  cargoLock.lockFile = root + "/Cargo.lock";

  # The integration tests start real engines on loopback ports: redis-server from PATH,
  # KeyDB from KEYFLEET_KEYDB_SERVER (as `keyfleet dev` finds it).
  nativeCheckInputs = [ redis ];
  preCheck = ''
    export KEYFLEET_KEYDB_SERVER=${lib.getExe' keydb keydb.serverBin}
  '';

  meta = {
    inherit (cargoToml.package) description;
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "keyfleet";
  };
}
