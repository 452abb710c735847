# Pure helpers the keyfleet modules share: the types of every secret-file option and of
# ACL user names, the size and duration types of the daemon's TOML, IP address checks
# for what goes into firewall rules, address formatting, and the assertions on an S3
# store. No options, no config.
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

  # What src/config/units.rs accepts, as regular expressions (case as there: size units
  # in any case, duration units in lower case).
  sizePattern = "[[:space:]]*[0-9]+[[:space:]]*([kKmMgG]([bB]|[iI][bB])?|[tT][iI][bB]|[bB])?[[:space:]]*";
  durationPattern = "[[:space:]]*([0-9]+)(\\.[0-9]+)?[[:space:]]*(ms|s|m|min|h|d)?[[:space:]]*";

  logsDir = "/var/log/keydb";
in
{
  # The directory of the engine's log and the daemon's access.log and daemon.log
  # (modules/logs.nix): the engine service's LogsDirectory=.
  inherit logsDir;
  # The engine's `logfile` with logs shipped, as src/config `engine_logfile` makes it
  # from `logs.dir`.
  engineLogfile = "${logsDir}/engine.log";

  # A size as the daemon's TOML takes it: "64MiB", "1GiB", "512kb" or bytes.
  size = lib.types.either lib.types.ints.unsigned (
    lib.types.strMatching sizePattern
    // {
      description = ''size ("64MiB", "1GiB", "512kb")'';
    }
  );

  # The checks src/config/logs.rs makes of an S3 store (`S3Config::problem`), for the
  # store options under `opt` (the log store's, or backups' own).
  storeChecks = opt: s3: [
    {
      assertion = builtins.match "https?://[^/[:space:]]+/*" s3.endpoint != null;
      message = "${opt}.endpoint `${s3.endpoint}` must be scheme://host[:port] (http or https), without a path: the bucket goes into the path (pathStyle) or the host name.";
    }
    {
      assertion = builtins.match "[A-Za-z0-9-]+" s3.region != null;
      message = "${opt}.region `${s3.region}` is not a region name (letters, digits and `-`).";
    }
    {
      assertion = builtins.match "[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]" s3.bucket != null;
      message = "${opt}.bucket `${s3.bucket}` is not an S3 bucket name: 3 to 63 of a-z, 0-9, `-` and `.`, starting and ending with a letter or digit.";
    }
    {
      assertion =
        s3.prefix == ""
        || (
          builtins.match "[^/](.*[^/])?" s3.prefix != null
          && !lib.hasInfix "//" s3.prefix
          && builtins.match ".*[[:cntrl:]].*" s3.prefix == null
        );
      message = "${opt}.prefix `${s3.prefix}` must not start or end with `/` nor hold `//` (write \"fleet-a\", not \"/fleet-a/\").";
    }
  ];

  # A duration as the daemon's TOML takes it (src/config/units.rs): "500ms", "2s", "1m",
  # "1h", "30d" or seconds.
  duration = lib.types.either lib.types.ints.unsigned (
    lib.types.strMatching durationPattern
    // {
      description = ''duration ("500ms", "2s", "1m", "1h", "30d")'';
    }
  );

  # Seconds (a float) of a value of the duration type above.
  seconds =
    d:
    if builtins.isInt d then
      d
    else
      let
        m = builtins.match durationPattern d;
        factor =
          {
            ms = 1.0e-3;
            s = 1;
            m = 60;
            min = 60;
            h = 3600;
            d = 86400;
          }
          .${if lib.elemAt m 2 == null then "s" else lib.elemAt m 2};
      in
      (
        lib.toIntBase10 (lib.head m)
        + (if lib.elemAt m 1 == null then 0 else builtins.fromJSON "0${lib.elemAt m 1}")
      )
      * factor;

  # A secret is a path to a file read at run time (LoadCredential=), never a store path:
  # a path literal such as ./pw, or a string under /nix/store, would put the secret in
  # the world-readable store. The type refuses both when the option is set.
  secretFile = lib.types.pathWith {
    inStore = false;
    absolute = true;
  };

  # The name of an ACL user of the engine (modules/keydb-write-secrets.sh checks the same).
  aclUserName = lib.types.strMatching "[A-Za-z0-9._-]+";

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
