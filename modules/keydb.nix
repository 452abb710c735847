# The node's engine: KeyDB in active-replica multi-master mode with every peer (or Redis,
# one primary and replicas). Its config is rendered at build time by
# `keyfleet render keydb-conf` from the daemon's TOML, so a generation holds the exact
# engine config and a rollback restores it. Secrets (ACL users, the replication
# credential) never reach the store: an ExecStartPre script writes them from
# LoadCredential= files into /run/keydb/secrets.conf, which the rendered config includes
# last.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.keyfleet;
  ecfg = cfg.engine;

  runtimeDir = "/run/keydb";
  secretsConf = "${runtimeDir}/secrets.conf";
  dataDir = "/var/lib/keydb";

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

  engineConf = pkgs.runCommand "keydb-${cfg.nodeName}.conf" { } ''
    ${lib.getExe cfg.package} render keydb-conf --config ${cfg.configFile} > $out
  '';
in
{
  options.services.keyfleet.engine = {
    kind = lib.mkOption {
      type = lib.types.enum [
        "keydb"
        "redis"
      ];
      default = "keydb";
      description = ''
        `keydb`: active-replica multi-master with every peer. `redis`: the node named by
        {option}`services.keyfleet.engine.primary` is the primary, the others its replicas.
      '';
    };

    package = lib.mkOption {
      type = lib.types.package;
      default = if ecfg.kind == "keydb" then pkgs.keydb else pkgs.redis;
      defaultText = lib.literalExpression ''if kind == "keydb" then pkgs.keydb else pkgs.redis'';
      description = "The engine; its `passthru.serverBin` names the server binary.";
    };

    bind = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1";
      description = ''
        Addresses the engine listens on, separated by spaces. Peers must reach one of them:
        put the address they know this node by first (the daemon dials the first one when
        {option}`services.keyfleet.engine.unixSocket` is null).
      '';
      example = "192.168.1.11 127.0.0.1";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 6379;
      description = "The engine's TCP port.";
    };

    unixSocket = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "${runtimeDir}/keydb.sock";
      description = "Unix socket the engine also listens on (mode 0660, group keydb) and the daemon uses.";
    };

    maxmemory = lib.mkOption {
      type = lib.types.either lib.types.str lib.types.ints.unsigned;
      default = 0;
      description = ''Memory cap for the data set ("4GiB" or bytes); 0 means unlimited.'';
      example = "4GiB";
    };

    maxmemoryPolicy = lib.mkOption {
      type = lib.types.str;
      default = "noeviction";
      description = "What the engine does at maxmemory.";
    };

    appendonly = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Append-only file persistence.";
    };

    save = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [
        "900 1"
        "300 10"
      ];
      description = ''RDB snapshot rules, each "seconds changes"; `[ ]` turns snapshots off.'';
    };

    serverThreads = lib.mkOption {
      type = lib.types.ints.positive;
      default = 2;
      description = "KeyDB worker threads.";
    };

    primary = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''With kind = "redis": the node every other node replicates from.'';
    };

    connectTimeout = lib.mkOption {
      type = lib.types.str;
      default = "1s";
      description = "The daemon gives up connecting to the engine after this long.";
    };

    commandTimeout = lib.mkOption {
      type = lib.types.str;
      default = "2s";
      description = "The daemon gives up on one engine command after this long.";
    };

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

    allowedSources = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Addresses besides the peers' (application hosts) allowed through the firewall to the engine port.";
    };

    memoryMax = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        systemd MemoryMax= of the engine. Leave room above maxmemory for the replication
        buffers and the copy-on-write of a background save.
      '';
      example = "6G";
    };

    cpuQuota = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "systemd CPUQuota= of the engine.";
      example = "200%";
    };

    configFile = lib.mkOption {
      type = lib.types.path;
      readOnly = true;
      description = "The engine config rendered at build time by `keyfleet render keydb-conf`.";
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
        assertion = ecfg.kind == "keydb" || cfg.peers == [ ] || ecfg.primary != null;
        message = ''services.keyfleet.engine.kind = "redis" with peers needs services.keyfleet.engine.primary.'';
      }
      {
        assertion = !(aclUsers ? default);
        message = "services.keyfleet.engine: the ACL user `default` is reserved (it is switched off).";
      }
    ];

    services.keyfleet.settings.engine = {
      inherit (ecfg)
        kind
        bind
        port
        maxmemory
        appendonly
        save
        user
        ;
      data_dir = dataDir;
      maxmemory_policy = ecfg.maxmemoryPolicy;
      server_threads = ecfg.serverThreads;
      connect_timeout = ecfg.connectTimeout;
      command_timeout = ecfg.commandTimeout;
      include = secretsConf;
    }
    // lib.optionalAttrs (ecfg.unixSocket != null) { unix_socket = ecfg.unixSocket; }
    // lib.optionalAttrs (ecfg.passwordFile != null) {
      password_file = "/run/credentials/keyfleet.service/engine-password";
    }
    // lib.optionalAttrs (ecfg.primary != null) { inherit (ecfg) primary; };

    services.keyfleet.engine.configFile = engineConf;

    environment.etc."keyfleet/keydb.conf".source = engineConf;
    environment.etc."keyfleet/keyfleet.toml".source = cfg.configFile;
    environment.systemPackages = [ ecfg.package ];

    # As nixpkgs' redis module: a background save forks, and must not fail for want of
    # overcommit.
    boot.kernel.sysctl."vm.overcommit_memory" = lib.mkDefault "1";

    users.users.keydb = {
      description = "KeyDB engine of keyfleet";
      isSystemUser = true;
      group = "keydb";
    };
    users.groups.keydb = { };

    systemd.services.keydb = {
      description = "KeyDB engine (keyfleet node ${cfg.nodeName})";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];

      # Sandboxing as nixpkgs' redis module does it (modules/sandbox.nix), and what
      # differs for this service.
      serviceConfig = import ./sandbox.nix // {
        Type = "notify";
        ExecStartPre = writeSecrets;
        ExecStart = "${
          lib.getExe' ecfg.package (ecfg.package.serverBin or "keydb-server")
        } ${engineConf} --supervised systemd";
        # Also covers a bind address that is not up yet at boot.
        Restart = "on-failure";
        RestartSec = "2s";
        User = "keydb";
        Group = "keydb";
        LoadCredential = credentials;
        RuntimeDirectory = "keydb";
        RuntimeDirectoryMode = "0750";
        StateDirectory = "keydb";
        StateDirectoryMode = "0700";
        UMask = "0077";
        LimitNOFILE = 10032;
        MemoryMax = lib.mkIf (ecfg.memoryMax != null) ecfg.memoryMax;
        CPUQuota = lib.mkIf (ecfg.cpuQuota != null) ecfg.cpuQuota;

        PrivateUsers = true;
        # KeyDB needs writable-and-executable memory, which MemoryDenyWriteExecute
        # forbids: on x86_64 its spinlock (src/fastlock_x64.asm) carries no
        # .note.GNU-stack section, so the linker marks keydb-server as needing an
        # executable stack, and glibc then maps every thread stack PROT_EXEC, which
        # the seccomp filter behind MemoryDenyWriteExecute refuses; the server dies at
        # its first thread. nixpkgs' redis module turns it off for keydb likewise.
        MemoryDenyWriteExecute = false;
        SystemCallFilter = "~@cpu-emulation @debug @keyring @memlock @mount @obsolete @privileged @resources @setuid";
      };
    };
  };
}
