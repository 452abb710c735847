# A keyfleet node for the VM tests: the fleet is every node named in `fleet`, each reached
# at the address the test framework gives it. Test-only secrets come from the store.
{ fleet }:
name:
{
  config,
  lib,
  nodes,
  pkgs,
  ...
}:
{
  imports = [ ../modules ];

  services.keyfleet = {
    enable = true;
    nodeName = name;
    peers = map (peer: {
      name = peer;
      address = nodes.${peer}.networking.primaryIPAddress;
    }) (lib.remove name fleet);
    engine = {
      bind = "${config.networking.primaryIPAddress} 127.0.0.1";
      maxmemory = "256MiB";
      passwordFile = pkgs.writeText "engine-password" "daemon-secret";
      replication.passwordFile = pkgs.writeText "replication-password" "replication-secret";
      users.app.passwordFile = pkgs.writeText "app-password" "app-secret";
    };
  };

  environment.systemPackages = [
    pkgs.curl
    pkgs.jq
  ];
  virtualisation.memorySize = 1024;
}
