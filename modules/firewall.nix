# Who may reach the engine and the API from the network: the peers' addresses (and the
# extra sources an operator lists), nobody else. The rules follow the backend NixOS
# uses, networking.firewall.backend: with iptables they go into
# networking.firewall.extraCommands (`iptables -s ADDR`, `ip6tables` for IPv6), which
# NixOS places before the chain's final refuse and flushes on every firewall restart;
# with nftables into networking.firewall.extraInputRules (`ip saddr ADDR tcp dport PORT
# accept`). firewalld is refused by an assertion rather than left silently closed.
#
# Every address must be an IP literal: firewall rules are loaded before the network (and
# name resolution) is up, and NixOS checks the nftables ruleset in the build sandbox,
# where no name resolves.
{ config, lib, ... }:

let
  cfg = config.services.keyfleet;
  fw = config.networking.firewall;
  klib = import ./lib.nix { inherit lib; };

  isIPv6 = lib.hasInfix ":";
  peerAddresses = map (p: p.address) cfg.peers;

  # port -> sources allowed to it
  openings = [
    {
      port = cfg.engine.port;
      sources = lib.unique (peerAddresses ++ cfg.engine.allowedSources);
    }
  ]
  ++ lib.optional (!klib.isLoopback cfg.api.listenAddress) {
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

  notIP = lib.filter (a: !klib.isIPAddress a) peerAddresses;
  notSource = option: lib.filter (a: !klib.isIPOrPrefix a) option;

  manage = cfg.enable && cfg.firewall.enable && fw.enable;
in
{
  options.services.keyfleet.firewall.enable = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = ''
      Open the engine port (and the API port, when the API leaves loopback) to the peers'
      addresses and the `allowedSources`, and to nobody else. Turn it off to write such
      rules yourself, as with firewalld, which keyfleet does not support.
    '';
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = notIP == [ ];
        message = "services.keyfleet.peers: address ${lib.concatStringsSep ", " notIP} is not an IP address; peers' addresses go into firewall rules, which are loaded before names resolve, so give each peer's IPv4 or IPv6 address.";
      }
      {
        assertion = notSource cfg.engine.allowedSources == [ ];
        message = "services.keyfleet.engine.allowedSources: ${lib.concatStringsSep ", " (notSource cfg.engine.allowedSources)} is not an IP address or network (CIDR); firewall rules cannot use host names.";
      }
      {
        assertion = notSource cfg.api.allowedSources == [ ];
        message = "services.keyfleet.api.allowedSources: ${lib.concatStringsSep ", " (notSource cfg.api.allowedSources)} is not an IP address or network (CIDR); firewall rules cannot use host names.";
      }
      {
        assertion = !(manage && fw.backend == "firewalld");
        message = ''networking.firewall.backend = "firewalld" is not supported by services.keyfleet: it cannot open the engine port to the peers only. Use the iptables or nftables backend, or set services.keyfleet.firewall.enable = false and open the engine port (${toString cfg.engine.port}) to the peers yourself.'';
      }
    ];

    networking.firewall.extraCommands = lib.mkIf (manage && fw.backend == "iptables") (
      lib.concatLines (forEachSource iptablesRule)
    );
    networking.firewall.extraInputRules = lib.mkIf (manage && fw.backend == "nftables") (
      lib.concatLines (forEachSource nftablesRule)
    );
  };
}
