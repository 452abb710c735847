# Pure helpers the keyfleet modules share: the type of every secret-file option, IP
# address checks for what goes into firewall rules, and address formatting. No options,
# no config.
{ lib }:

let
  octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";

  isIPv4 = s: builtins.match "${octet}(\\.${octet}){3}" s != null;

  # nixpkgs' own parser decides what an IPv6 address is; it throws on anything else.
  isIPv6 =
    s:
    lib.hasInfix ":" s
    && builtins.match "[0-9A-Fa-f:]+" s != null
    && (builtins.tryEval (builtins.deepSeq (lib.network.ipv6.fromString s) true)).success;

  isPrefixLength = max: s: builtins.match "[0-9]{1,3}" s != null && lib.toInt s <= max;
in
{
  # A secret is a path to a file read at run time (LoadCredential=), never a store path:
  # a path literal such as ./pw, or a string under /nix/store, would put the secret in
  # the world-readable store. The type refuses both when the option is set.
  secretFile = lib.types.pathWith {
    inStore = false;
    absolute = true;
  };

  # An IPv4 or IPv6 address, as written in a firewall rule: no host name, no prefix.
  isIPAddress = s: isIPv4 s || isIPv6 s;

  # An address or a network in CIDR notation ("192.168.1.0/24", "fd00::/64").
  isIPOrPrefix =
    s:
    let
      parts = lib.splitString "/" s;
      address = lib.head parts;
    in
    if lib.length parts == 1 then
      isIPv4 s || isIPv6 s
    else
      lib.length parts == 2
      && (
        (isIPv4 address && isPrefixLength 32 (lib.last parts))
        || (isIPv6 address && isPrefixLength 128 (lib.last parts))
      );

  # "host:port", with an IPv6 address in brackets.
  hostPort =
    address: port:
    if lib.hasInfix ":" address then "[${address}]:${toString port}" else "${address}:${toString port}";

  isLoopback = address: address == "::1" || address == "localhost" || lib.hasPrefix "127." address;
}
