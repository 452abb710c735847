# The S3 store of the VM tests: garage on a host of its own, its S3 API on port 3900 for
# region REGION. garage makes layouts, buckets and keys at run time, so each test script
# does (`garage layout assign`, `garage bucket create`, `garage key create`); `mc` and
# `zstd` are there to look at what arrived.
{ region }:
{ pkgs, ... }:
{
  # garage's RPC secret, a test-only fixture (./secrets.nix): the garage module reads it
  # from environmentFile, in the service and in its `garage` CLI alike.
  imports = [
    (import ./secrets.nix {
      garage-environment = "GARAGE_RPC_SECRET=0501707434caded63fda1a4289a4262d63b71995727341ad85b98cbdb7e13ab3";
    })
  ];
  services.garage = {
    enable = true;
    package = pkgs.garage_2;
    environmentFile = "/etc/keyfleet-test/garage-environment";
    settings = {
      replication_factor = 1;
      rpc_bind_addr = "127.0.0.1:3901";
      rpc_public_addr = "127.0.0.1:3901";
      s3_api = {
        s3_region = region;
        api_bind_addr = "[::]:3900";
      };
    };
  };
  networking.firewall.allowedTCPPorts = [ 3900 ];
  environment.systemPackages = [
    pkgs.minio-client
    pkgs.zstd
  ];
  # garage wants a gigabyte of free disk.
  virtualisation.diskSize = 2048;
}
