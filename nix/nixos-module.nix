# The flake's nixosModules.default: every keyfleet module, with the keyfleet and KeyDB
# packages defaulting to this flake's own builds. It sets no nixpkgs.* option: where
# nixpkgs.pkgs is given (runNixOSTest's nodes, many flakes) those are read-only, and an
# overlay set here would fail the whole evaluation. The overlay stays a separate output
# (overlays.default) for whoever wants pkgs.keyfleet and pkgs.keydb.
self:
{
  config,
  lib,
  pkgs,
  ...
}:

let
  system = pkgs.stdenv.hostPlatform.system;
  packages =
    self.packages.${system}
      or (throw "keyfleet: the flake builds no packages for ${system}; set services.keyfleet.package and services.keyfleet.engine.package");
in
{
  imports = [ ../modules ];

  services.keyfleet.package = lib.mkDefault packages.keyfleet;
  services.keyfleet.engine.package = lib.mkIf (config.services.keyfleet.engine.kind == "keydb") (
    lib.mkDefault packages.keydb
  );
}
