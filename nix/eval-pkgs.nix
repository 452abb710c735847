# Stand-ins for nix/eval-modules.nix: a `pkgs` of derivation-like attribute sets with
# what keyfleet's NixOS modules read of nixpkgs, and the flake's packages as far as
# nix/nixos-module.nix reads them. No nixpkgs is needed.
{ lib }:

let
  inherit (lib) types;

  # A derivation stand-in whose store path, like a real one's, changes with its inputs
  # (here: its name and attributes), so a check can tell whether a unit's command changed.
  drv =
    name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/${
        builtins.substring 0 32 (
          builtins.hashString "sha256" (builtins.toJSON ({ inherit name; } // extra))
        )
      }-${name}";
      meta = { };
    }
    // extra;

  # Like pkgs.formats.json's value type, which pkgs.formats.toml uses.
  tomlValue = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
      types.path
      (types.attrsOf tomlValue)
      (types.listOf tomlValue)
    ]
  );

  pkgs = {
    formats.toml = _: {
      type = types.attrsOf tomlValue;
      generate = name: value: drv name { inherit value; };
    };
    writeText = name: text: drv name { inherit text; };
    writeShellScript = name: text: drv name { inherit text; };
    stdenv.hostPlatform.system = "x86_64-linux";
    redis = drv "redis-8.2.1" {
      pname = "redis";
      version = "8.2.1";
      serverBin = "redis-server";
      meta.mainProgram = "redis-cli";
    };
    coreutils = drv "coreutils-9.7" { pname = "coreutils"; };
    curl = drv "curl" { };
    jq = drv "jq" { };
    garage_2 = drv "garage-2.1.0" {
      pname = "garage";
      meta.mainProgram = "garage";
    };
    minio-client = drv "minio-client" { };
    zstd = drv "zstd" { };
    gitMinimal = drv "git-minimal" { };
  };

  # The flake, as far as nix/nixos-module.nix reads it.
  self.packages.x86_64-linux = {
    keyfleet = drv "keyfleet-0.1.0" {
      pname = "keyfleet";
      version = "0.1.0";
      meta.mainProgram = "keyfleet";
    };
    keydb = drv "keydb-6.3.4" {
      pname = "keydb";
      version = "6.3.4";
      serverBin = "keydb-server";
      meta.mainProgram = "keydb-cli";
    };
  };

in
{
  inherit pkgs self;
}
