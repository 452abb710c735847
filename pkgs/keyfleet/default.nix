# The keyfleet program, built from the repository's own Cargo.lock. The source is only
# what cargo needs (./source.nix lists it).
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
    fileset = lib.fileset.unions (map (path: root + "/${path}") (import ./source.nix));
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
