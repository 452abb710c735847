{
  imports = [ ./common.nix ];

  networking.hostName = "node1";

  # Prometheus for the whole fleet, with keyfleet's alert rules.
  services.keyfleet.monitoring.enable = true;
}
