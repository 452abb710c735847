# What every example node shares: the fleet, the secrets, a stand-in for the hardware.
#
# Secrets are paths to files that sops-nix or agenix decrypt at activation into
# /run/secrets (for sops-nix: sops.secrets."keyfleet/engine-password" = { }; and so on).
# Nothing here holds a secret; the modules hand the files to the services with
# LoadCredential=. Each file holds one value made by `openssl rand -base64 32`; the API
# token and the replication password are the same on every node.
{ config, lib, ... }:

let
  # name -> the address the other nodes reach it at
  fleet = {
    node1 = "192.168.1.11";
    node2 = "192.168.1.12";
    node3 = "192.168.1.13";
  };
  # Where Prometheus runs (node1 here); it scrapes every node's API.
  monitoringHost = fleet.node1;

  name = config.services.keyfleet.nodeName;
  address = fleet.${name};
in
{
  services.keyfleet = {
    enable = true;
    # nodeName defaults to networking.hostName, set by each node's file.

    peers = lib.mapAttrsToList (peer: peerAddress: {
      name = peer;
      address = peerAddress;
    }) (removeAttrs fleet [ name ]);

    engine = {
      bind = "${address} 127.0.0.1";
      maxmemory = "4GiB";
      maxmemoryPolicy = "noeviction";
      serverThreads = 2;
      memoryMax = "6G";
      cpuQuota = "200%";
      passwordFile = "/run/secrets/keyfleet/engine-password";
      replication.passwordFile = "/run/secrets/keyfleet/replication-password";
      users.app.passwordFile = "/run/secrets/keyfleet/app-password";
      # The application servers.
      allowedSources = [ "192.168.1.30" ];
    };

    # Patch upgrades of the engine go on their own on Sunday nights, India time, one node
    # at a time; minor and major ones wait for `keyfleet upgrade approve`. A candidate is
    # built on each node from this flake (modules/upgrades.nix).
    upgrades = {
      enable = true;
      windows = [ "Sun 02:00-03:00 Asia/Kolkata" ];
      flake = "github:example/keyfleet-fleet#${name}";
    };

    # The safety checks read the user's keys as an ACL user of their own (EXISTS, DEL).
    safety.reader.passwordFile = "/run/secrets/keyfleet/safety-reader-password";

    api = {
      listenAddress = address;
      tokenFile = "/run/secrets/keyfleet/api-token";
      allowedSources = lib.optional (address != monitoringHost) monitoringHost;
    };

    # Every node ships its engine's and daemon's logs to one bucket, under
    # fleet-a/<node>/. The bucket expires them with a lifecycle rule (modules/logs.nix).
    logs = {
      enable = true;
      s3 = {
        endpoint = "https://s3.eu-west-1.amazonaws.com";
        region = "eu-west-1";
        bucket = "example-keyfleet-logs";
        prefix = "fleet-a";
        pathStyle = false;
        accessKeyIdFile = "/run/secrets/keyfleet/logs-s3-access-key-id";
        secretAccessKeyFile = "/run/secrets/keyfleet/logs-s3-secret-access-key";
      };
      maxLocalBytes = "2GiB";
    };
  };

  # Stand-ins for the real hardware configuration, so that the system builds.
  boot.loader.grub.device = "/dev/sda";
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  networking.useDHCP = false;
  networking.interfaces.eth0.ipv4.addresses = [
    {
      inherit address;
      prefixLength = 24;
    }
  ];
  services.openssh.enable = true;

  system.stateVersion = "25.11";
}
