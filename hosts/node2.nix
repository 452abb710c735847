{
  imports = [ ./common.nix ];

  networking.hostName = "node2";
}
