# Who may reach the engine and the API from the network: the peers' addresses (and the
# extra sources an operator lists), nobody else. With the default iptables firewall the
# rules go into networking.firewall.extraCommands (`iptables -s ADDR`, `ip6tables` for
# IPv6 addresses), which NixOS places before the chain's final refuse and flushes on every
# firewall restart; with networking.nftables.enable they go into
# networking.firewall.extraInputRules (`ip saddr ADDR tcp dport PORT accept`).
{ config, lib, ... }:

let
  cfg = config.services.keyfleet;

  isIPv6 = lib.hasInfix ":";
  isLoopback = address: address == "::1" || address == "localhost" || lib.hasPrefix "127." address;

  peerAddresses = map (p: p.address) cfg.peers;

  # port -> sources allowed to it
  openings = [
    {
      port = cfg.engine.port;
      sources = lib.unique (peerAddresses ++ cfg.engine.allowedSources);
    }
  ]
  ++ lib.optional (!isLoopback cfg.api.listenAddress) {
    inherit (cfg.api) port;
    sources = lib.unique (peerAddresses ++ cfg.api.allowedSources);
  };

  forEachSource = f: lib.concatMap (o: map (f o.port) o.sources) openings;

  iptablesRule =
    port: source:
    "${
      if isIPv6 source then "ip6tables" else "iptables"
    } -w -A nixos-fw -p tcp -s ${source} --dport ${toString port} -j nixos-fw-accept";

  nftablesRule =
    port: source:
    "${if isIPv6 source then "ip6" else "ip"} saddr ${source} tcp dport ${toString port} accept";
in
{
  config = lib.mkIf cfg.enable {
    networking.firewall.extraCommands = lib.mkIf (!config.networking.nftables.enable) (
      lib.concatLines (forEachSource iptablesRule)
    );
    networking.firewall.extraInputRules = lib.mkIf config.networking.nftables.enable (
      lib.concatLines (forEachSource nftablesRule)
    );
  };
}
