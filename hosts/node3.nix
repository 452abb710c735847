{
  imports = [ ./common.nix ];

  networking.hostName = "node3";
}
