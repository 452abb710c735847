# A keyfleet node for the VM tests: the fleet is every node named in `fleet`, each reached
# at the address the test framework gives it. The keyfleet modules come from the flake's
# nixosModules.default (the `defaults` of every VM test, see flake.nix); test-only
# secrets from ./secrets.nix.
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
  imports = [
    (import ./secrets.nix {
      engine-password = "daemon-secret";
      replication-password = "replication-secret";
      app-password = "app-secret";
      safety-reader-password = "reader-secret";
    })
  ];

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
      passwordFile = "/etc/keyfleet-test/engine-password";
      replication.passwordFile = "/etc/keyfleet-test/replication-password";
      users.app.passwordFile = "/etc/keyfleet-test/app-password";
    };
    safety.reader.passwordFile = "/etc/keyfleet-test/safety-reader-password";
  };

  environment.systemPackages = [
    pkgs.curl
    pkgs.jq
  ];
  virtualisation.memorySize = 1024;
}
