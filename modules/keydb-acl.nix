# The engine's ACL users and replication credential. Secrets never reach the store: an
# ExecStartPre script of the keydb service reads them from LoadCredential= files and
# writes /run/keydb/secrets.conf (0600), which the rendered engine config includes last.
# Passwords are stored there as SHA-256 only, except masterauth, which the engine must
# send to its peers.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.keyfleet;
  ecfg = cfg.engine;

  # The keydb service's RuntimeDirectory (modules/keydb.nix): systemd creates it, owned
  # by keydb, before ExecStartPre runs.
  runtimeDir = "/run/keydb";
  secretsConf = "${runtimeDir}/secrets.conf";

  # Rules every ACL user gets after its own: no Lua (the unpatched Lua CVEs in
  # pkgs/keydb), no HyperLogLog (CVE-2025-32023).
  deniedCategories = [
    "-@scripting"
    "-@hyperloglog"
  ];

  userModule = {
    options = {
      passwordFile = lib.mkOption {
        type = lib.types.path;
        description = ''
          File holding the user's password (letters, digits and `._~+/=-` only, as
          `openssl rand -base64 32` makes). Stored in the engine as its SHA-256 only.
        '';
      };
      rules = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [
          "~*"
          "&*"
          "+@all"
          "-@dangerous"
        ];
        description = ''
          ACL rules of the user. `-@scripting` and `-@hyperloglog` are always appended:
          KeyDB 6.3.4 carries unpatched Lua and HyperLogLog vulnerabilities.
        '';
      };
    };
  };

  # name -> { credential; rules } for every ACL user the secrets file defines.
  aclUsers =
    lib.optionalAttrs (ecfg.passwordFile != null) {
      ${ecfg.user} = {
        credential = "engine-password";
        inherit (ecfg) rules;
      };
    }
    // lib.optionalAttrs (ecfg.replication.passwordFile != null) {
      # Only what a replica sends its master: the handshake and the sync.
      ${ecfg.replication.user} = {
        credential = "replication-password";
        rules = [
          "+ping"
          "+replping"
          "+replconf"
          "+sync"
          "+psync"
        ];
      };
    }
    // lib.mapAttrs (name: user: {
      credential = "user-${name}";
      inherit (user) rules;
    }) ecfg.users;

  credentials =
    lib.optional (ecfg.passwordFile != null) "engine-password:${ecfg.passwordFile}"
    ++ lib.optional (
      ecfg.replication.passwordFile != null
    ) "replication-password:${ecfg.replication.passwordFile}"
    ++ lib.mapAttrsToList (name: user: "user-${name}:${user.passwordFile}") ecfg.users;

  writeSecrets = pkgs.writeShellScript "keydb-write-secrets" ''
    set -euo pipefail
    umask 0077

    # Reads a credential; refuses characters the engine's config parser would split on.
    secret() {
      local value
      value=$(< "$CREDENTIALS_DIRECTORY/$1")
      value=''${value%$'\n'}
      if [[ ! $value =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
        echo "keydb: credential $1 is empty or has characters other than A-Z a-z 0-9 ._~+/=-" >&2
        exit 1
      fi
      printf '%s' "$value"
    }
    hash() {
      secret "$1" | ${lib.getExe' pkgs.coreutils "sha256sum"} | ${lib.getExe' pkgs.coreutils "cut"} -d' ' -f1
    }

    tmp=$(${lib.getExe' pkgs.coreutils "mktemp"} ${runtimeDir}/.secrets.XXXXXX)
    {
      # No unauthenticated client: the default user can do nothing.
      echo "user default reset"
      ${lib.concatStrings (
        lib.mapAttrsToList (name: user: ''
          echo "user ${name} reset on #$(hash ${user.credential}) ${
            lib.concatStringsSep " " (user.rules ++ deniedCategories)
          }"
        '') aclUsers
      )}
      ${lib.optionalString (ecfg.replication.passwordFile != null) ''
        echo "masteruser ${ecfg.replication.user}"
        echo "masterauth $(secret replication-password)"
      ''}
    } > "$tmp"
    ${lib.getExe' pkgs.coreutils "mv"} "$tmp" ${secretsConf}
  '';

in
{
  options.services.keyfleet.engine = {
    user = lib.mkOption {
      type = lib.types.str;
      default = "keyfleet";
      description = "ACL user the daemon authenticates as.";
    };

    passwordFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = ''
        File holding the daemon user's password. Required: the engine admits no
        unauthenticated client.
      '';
      example = "/run/secrets/keyfleet/engine-password";
    };

    rules = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [
        "~*"
        "&*"
        "+@all"
        "-@dangerous"
        "+info"
        "+bgsave"
        "+lastsave"
        "+config|get"
      ];
      description = ''
        ACL rules of the daemon's user (INFO, BGSAVE, SCAN and reads).
        `-@scripting` and `-@hyperloglog` are always appended.
      '';
    };

    replication = {
      user = lib.mkOption {
        type = lib.types.str;
        default = "replication";
        description = "ACL user the peers' engines replicate as (masteruser).";
      };
      passwordFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        description = "File holding the replication user's password; the same on every node.";
        example = "/run/secrets/keyfleet/replication-password";
      };
    };

    users = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule userModule);
      default = { };
      description = "Application ACL users of the engine.";
      example = lib.literalExpression ''
        { app.passwordFile = "/run/secrets/keyfleet/app-password"; }
      '';
    };

  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = ecfg.passwordFile != null;
        message = "services.keyfleet.engine.passwordFile must be set: the engine admits no unauthenticated client.";
      }
      {
        assertion = cfg.peers == [ ] || ecfg.replication.passwordFile != null;
        message = "services.keyfleet.engine.replication.passwordFile must be set when the node has peers.";
      }
      {
        assertion = !(aclUsers ? default);
        message = "services.keyfleet.engine: the ACL user `default` is reserved (it is switched off).";
      }
    ];

    services.keyfleet.settings.engine = {
      inherit (ecfg) user;
      include = secretsConf;
    }
    // lib.optionalAttrs (ecfg.passwordFile != null) {
      password_file = "/run/credentials/keyfleet.service/engine-password";
    };

    systemd.services.keydb.serviceConfig = {
      ExecStartPre = writeSecrets;
      LoadCredential = credentials;
    };
  };
}
