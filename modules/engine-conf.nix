# The engine's config text, rendered in Nix from services.keyfleet.engine.settings: the
# same text `keyfleet render keydb-conf` writes from the daemon's TOML (src/render.rs),
# which scripts/check-nix.sh proves for every example host and VM test node. Rendering it
# here, and not by running keyfleet at build time, makes the engine's unit depend on its
# own config and package only: a keyfleet upgrade or a daemon-only setting does not
# restart every engine of the fleet.
#
# The rules, shared with src/render.rs: two comment lines; every directive in name order
# (KeyDB needs `active-replica` and `multi-master` before `replicaof`, which name order
# gives); `true`/`false` as yes/no, a number as written, a string as written, a list as
# one line per element; then `include` last, so that the run-time secrets file wins.
{ lib }:

rec {
  # A value quoted for the engine's config parser when it is empty or holds a space, a
  # quote or a backslash (as `quote` in src/render.rs).
  quote =
    s:
    if s != "" && builtins.match ".*[[:space:]\"'\\\\].*" s == null then
      s
    else
      "\"${lib.escape [ "\\" "\"" ] s}\"";

  # Bytes from "4GiB", "512kb", "64MiB" or a number, as parse_size in
  # src/config/units.rs reads them (kb, mb, gb are powers of 1000; KiB, MiB, GiB, TiB of
  # 1024; case does not matter).
  parseSize =
    size:
    if builtins.isInt size then
      size
    else
      let
        m = builtins.match "[[:space:]]*([0-9]+)[[:space:]]*([A-Za-z]*)[[:space:]]*" size;
        unit = lib.toLower (lib.elemAt m 1);
        factors = {
          "" = 1;
          b = 1;
          k = 1000;
          kb = 1000;
          kib = 1024;
          m = 1000 * 1000;
          mb = 1000 * 1000;
          mib = 1024 * 1024;
          g = 1000 * 1000 * 1000;
          gb = 1000 * 1000 * 1000;
          gib = 1024 * 1024 * 1024;
          tib = 1024 * 1024 * 1024 * 1024;
        };
      in
      if m == null || !(factors ? ${unit}) then
        throw "keyfleet: `${size}` is not a size (expected e.g. \"64MiB\", \"4GiB\" or bytes)"
      else
        lib.toInt (lib.head m) * factors.${unit};

  valueString =
    v:
    if v == true then
      "yes"
    else if v == false then
      "no"
    else
      toString v;

  render =
    {
      nodeName,
      settings,
      include ? null,
    }:
    lib.concatStrings (
      [
        "# Engine config of keyfleet node ${nodeName}, rendered from its keyfleet config.\n"
        "# Do not edit: change the keyfleet config (or services.keyfleet) instead.\n"
      ]
      ++ lib.concatMap (name: map (v: "${name} ${valueString v}\n") (lib.toList settings.${name})) (
        lib.attrNames settings
      )
      ++ lib.optional (include != null) "include ${quote include}\n"
    );
}
