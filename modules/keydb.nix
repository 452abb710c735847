# The node's engine: KeyDB in active-replica multi-master mode with every peer (or Redis,
# one primary and replicas). Its config is rendered in Nix from
# services.keyfleet.engine.settings (engine-conf.nix), the same text `keyfleet render
# keydb-conf` writes from the daemon's TOML (scripts/check-nix.sh proves it), so a
# generation holds the exact engine config, a rollback restores it, and the engine
# restarts only when its own config or package changes. ACL users and the replication
# credential are keydb-acl.nix's.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.keyfleet;
  ecfg = cfg.engine;

  engineConfLib = import ./engine-conf.nix { inherit lib; };
  klib = import ./lib.nix { inherit lib; };
  inherit (engineConfLib) quote;

  dataDir = "/var/lib/keydb";
  runtimeDir = "/run/keydb";

  replicaof = p: "${p.address} ${toString p.enginePort}";
  masters =
    if ecfg.kind == "keydb" then cfg.peers else lib.filter (p: p.name == ecfg.primary) cfg.peers;

  # The directives the typed options stand for, as src/render.rs `typed_directives`
  # writes them from the TOML the typed options make. With logs shipped
  # (modules/logs.nix) the engine logs to a file the daemon rotates, else to stdout
  # (the journal).
  typedSettings = {
    inherit (ecfg) bind port databases;
    protected-mode = true;
    daemonize = false;
    logfile = quote (if cfg.logs.enable then klib.engineLogfile else "");
    dir = quote dataDir;
    maxmemory = engineConfLib.parseSize ecfg.maxmemory;
    maxmemory-policy = ecfg.maxmemoryPolicy;
    inherit (ecfg) appendonly;
    save = if ecfg.save == [ ] then quote "" else ecfg.save;
  }
  // lib.optionalAttrs (ecfg.unixSocket != null) {
    unixsocket = quote ecfg.unixSocket;
    unixsocketperm = 660;
  }
  // lib.optionalAttrs (ecfg.kind == "keydb") {
    server-threads = ecfg.serverThreads;
    active-replica = true;
    multi-master = true;
  }
  // lib.optionalAttrs (masters != [ ]) { replicaof = map replicaof masters; }
  # Keyevent notifications of deletes and expiries, which the safety checks record while
  # a link is down (modules/safety.nix).
  // lib.optionalAttrs cfg.safety.enable { notify-keyspace-events = "Egx"; };

  # A notify-keyspace-events setting that lacks what the safety checks need (E, and g and
  # x or A), as src/config/safety.rs `missing_events` finds it.
  events = ecfg.settings.notify-keyspace-events or "Egx";
  eventsMissing = lib.filter (c: !(lib.hasInfix c events || (c != "E" && lib.hasInfix "A" events))) [
    "E"
    "g"
    "x"
  ];

  # Directives engine.settings may not change, and why: the list src/config/validate.rs
  # refuses too (one "name  why" per line).
  reserved = lib.listToAttrs (
    map
      (line: {
        name = lib.head line;
        value = lib.last line;
      })
      (
        lib.filter (m: m != null) (
          map (builtins.match "([a-z-]+)[[:space:]]+(.*)") (
            lib.splitString "\n" (builtins.readFile ../src/config/reserved-directives.txt)
          )
        )
      )
  );
  changedReserved = lib.filter (
    name: ecfg.settings ? ${name} && (typedSettings.${name} or null) != ecfg.settings.${name}
  ) (lib.attrNames reserved);

  # What the daemon's TOML carries as engine.settings: only what differs from the typed
  # options, which the TOML holds already.
  settingsOverrides = lib.filterAttrs (
    name: value: !(typedSettings ? ${name}) || typedSettings.${name} != value
  ) ecfg.settings;

  engineConf = pkgs.writeText "keydb-${cfg.nodeName}.conf" (
    engineConfLib.render {
      inherit (cfg) nodeName;
      inherit (ecfg) settings;
      include = cfg.settings.engine.include or null;
    }
  );
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
      default =
        if ecfg.kind == "redis" then
          pkgs.redis
        else
          pkgs.keydb or (throw ''
            services.keyfleet.engine.package: pkgs has no keydb (nixpkgs dropped it in
            2025). Import the keyfleet flake's nixosModules.default, which defaults to the
            flake's own build, or set this option.
          '');
      defaultText = lib.literalMD "the keyfleet flake's `keydb` (with its `nixosModules.default`), or `pkgs.redis` for kind = \"redis\"";
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

    databases = lib.mkOption {
      type = lib.types.ints.positive;
      default = 16;
      description = "How many databases the engine has; the metrics list each one.";
    };

    settings = lib.mkOption {
      type = lib.types.attrsOf (
        lib.types.oneOf [
          lib.types.bool
          lib.types.int
          lib.types.str
          (lib.types.listOf (lib.types.either lib.types.int lib.types.str))
        ]
      );
      default = { };
      description = ''
        The engine's config directives, as in nixpkgs' redis module: `true`/`false`
        become yes/no, a list one line per element. The typed options above set theirs
        with `mkDefault`, so a value here overrides them, except for the directives the
        daemon depends on (`port`, `bind`, `dir`, `databases`, `replicaof`, ...) and
        secrets (`masterauth`, `requirepass`, `user`), which an assertion refuses.
      '';
      example = lib.literalExpression ''
        {
          hz = 20;
          lazyfree-lazy-eviction = true;
          maxmemory = "3gb";
        }
      '';
    };

    startTimeout = lib.mkOption {
      type = lib.types.str;
      default = "30min";
      description = ''
        systemd `TimeoutStartSec=` of the engine: it is ready only once it has loaded its
        AOF or RDB, which for a large data set takes minutes. Too short, and systemd kills
        it mid-load and starts it again, over and over.
      '';
    };

    stopTimeout = lib.mkOption {
      type = lib.types.str;
      default = "10min";
      description = ''
        systemd `TimeoutStopSec=` of the engine: on stop it writes its RDB when snapshots
        are configured; killing it mid-write loses what changed since the last one.
      '';
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
      description = "The engine config rendered from {option}`services.keyfleet.engine.settings`.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = ecfg.kind == "keydb" || cfg.peers == [ ] || ecfg.primary != null;
        message = ''services.keyfleet.engine.kind = "redis" with peers needs services.keyfleet.engine.primary.'';
      }
      {
        assertion = !cfg.safety.enable || eventsMissing == [ ];
        message = "services.keyfleet.engine.settings.notify-keyspace-events `${events}` lacks `${lib.concatStrings eventsMissing}`: the safety checks track deleted and expired keys by keyevent notifications (E, g, x); add them, or set services.keyfleet.safety.enable = false.";
      }
    ]
    ++ map (name: {
      assertion = false;
      message = "services.keyfleet.engine.settings.${name} cannot be set: ${reserved.${name}}.";
    }) changedReserved;

    services.keyfleet.engine.settings = lib.mapAttrs (_: lib.mkDefault) typedSettings;

    services.keyfleet.settings.engine = {
      inherit (ecfg)
        kind
        bind
        port
        maxmemory
        appendonly
        save
        ;
      inherit (ecfg) databases;
      data_dir = dataDir;
      maxmemory_policy = ecfg.maxmemoryPolicy;
      server_threads = ecfg.serverThreads;
      connect_timeout = ecfg.connectTimeout;
      command_timeout = ecfg.commandTimeout;
    }
    // lib.optionalAttrs (ecfg.unixSocket != null) { unix_socket = ecfg.unixSocket; }
    // lib.optionalAttrs (ecfg.primary != null) { inherit (ecfg) primary; }
    // lib.optionalAttrs (settingsOverrides != { }) { settings = settingsOverrides; };

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
        ExecStart = "${
          lib.getExe' ecfg.package (ecfg.package.serverBin or "keydb-server")
        } ${engineConf} --supervised systemd";
        # Also covers a bind address that is not up yet at boot.
        Restart = "on-failure";
        RestartSec = "2s";
        TimeoutStartSec = ecfg.startTimeout;
        TimeoutStopSec = ecfg.stopTimeout;
        User = "keydb";
        Group = "keydb";
        RuntimeDirectory = "keydb";
        RuntimeDirectoryMode = "0750";
        StateDirectory = "keydb";
        StateDirectoryMode = lib.mkDefault "0700";
        # modules/logs.nix makes it 0027: the daemon reads the engine's log through the group.
        UMask = lib.mkDefault "0077";
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
