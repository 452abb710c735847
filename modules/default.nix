# Every keyfleet NixOS module. The flake's nixosModules.default also adds the overlay that
# provides pkgs.keyfleet and pkgs.keydb; import this file directly when pkgs has them.
{
  imports = [
    ./keyfleet.nix
    ./keydb.nix
    ./keydb-acl.nix
    ./firewall.nix
    ./monitoring.nix
    ./logs.nix
    ./backups.nix
    ./safety.nix
    ./upgrades.nix
  ];
}
