# services.keyfleet: the node's identity, its peers, the daemon's API, and the daemon's
# systemd service. The options become the daemon's TOML (examples/keyfleet.toml is the
# schema) through pkgs.formats.toml; modules/keydb.nix renders the engine's config from
# the same file, so the daemon and the engine never disagree.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.keyfleet;
  settingsFormat = pkgs.formats.toml { };
  klib = import ./lib.nix { inherit lib; };

  # systemd puts each LoadCredential= file here; the daemon reads them from
  # $CREDENTIALS_DIRECTORY, which is this directory.
  credentialsDir = "/run/credentials/keyfleet.service";

  # The daemon's journals and histories (StateDirectory=).
  stateDir = "/var/lib/keyfleet";

  peerNames = map (p: p.name) cfg.peers;

  peerModule = {
    options = {
      name = lib.mkOption {
        type = lib.types.strMatching "[A-Za-z0-9._-]{1,63}";
        description = "The peer's node name (its `services.keyfleet.nodeName`).";
        example = "node2";
      };
      address = lib.mkOption {
        type = lib.types.str;
        description = ''
          IP address (v4 or v6) where the peer's engine and API listen. Not a host name:
          it goes into firewall rules, which are loaded before names resolve.
        '';
        example = "192.168.1.12";
      };
      enginePort = lib.mkOption {
        type = lib.types.port;
        default = 6379;
        description = "The peer's engine port.";
      };
      apiPort = lib.mkOption {
        type = lib.types.port;
        default = 9850;
        description = "The peer's keyfleet API port.";
      };
    };
  };
in
{
  options.services.keyfleet = {
    enable = lib.mkEnableOption "the keyfleet node daemon and its KeyDB engine";

    package = lib.mkPackageOption pkgs "keyfleet" { };

    nodeName = lib.mkOption {
      type = lib.types.strMatching "[A-Za-z0-9._-]{1,63}";
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "This node's name: unique in the fleet, and how peers and metrics refer to it.";
    };

    peers = lib.mkOption {
      type = lib.types.listOf (lib.types.submodule peerModule);
      default = [ ];
      description = "Every other node of the fleet; this node is not listed.";
      example = lib.literalExpression ''
        [
          { name = "node2"; address = "192.168.1.12"; }
          { name = "node3"; address = "192.168.1.13"; }
        ]
      '';
    };

    api = {
      listenAddress = lib.mkOption {
        type = lib.types.str;
        default = "127.0.0.1";
        description = ''
          Address the daemon's HTTP API listens on. Anything but loopback requires
          {option}`services.keyfleet.api.tokenFile`.
        '';
      };
      port = lib.mkOption {
        type = lib.types.port;
        default = 9850;
        description = "Port of the daemon's HTTP API (and of /metrics).";
      };
      tokenFile = lib.mkOption {
        type = lib.types.nullOr klib.secretFile;
        default = null;
        description = ''
          File holding the bearer token the API requires and sends to peers; the same
          token on every node. Handed to the daemon with `LoadCredential=`, never copied
          into the Nix store.
        '';
        example = "/run/secrets/keyfleet-api-token";
      };
      maxConnections = lib.mkOption {
        type = lib.types.ints.between 8 65536;
        default = 512;
        description = ''
          Open API connections at most. At the cap a new connection closes the one idle
          longest, or is refused at once with 503 when none is idle. The unit's
          `LimitNOFILE=` is set to this plus 1024, for the engine, peer and S3
          connections and the log files, so the daemon never runs out of descriptors
          before it reaches the cap.
        '';
      };
      headerTimeout = lib.mkOption {
        type = lib.types.str;
        default = "10s";
        description = ''
          A client must send a whole request (head and body) within this long of
          connecting, of its previous answer, or of the request's first byte.
        '';
      };
      idleTimeout = lib.mkOption {
        type = lib.types.str;
        default = "60s";
        description = "A kept-alive API connection that sends nothing is closed after this long.";
      };
      limits = lib.mkOption {
        type = lib.types.submodule {
          options = {
            cheap = lib.mkOption {
              type = lib.types.ints.positive;
              default = 64;
              description = "Concurrent health, readiness and node-status requests.";
            };
            fanout = lib.mkOption {
              type = lib.types.ints.positive;
              default = 16;
              description = "Concurrent requests that ask every peer (the fleet view).";
            };
            heavy = lib.mkOption {
              type = lib.types.ints.positive;
              default = 8;
              description = "Concurrent metrics, logs, backup, restore, safety-job and upgrade requests.";
            };
          };
        };
        default = { };
        description = "Requests of each class answered at once; past a limit the API answers 503 `overloaded` with `Retry-After`.";
      };
      allowedSources = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        description = ''
          Addresses besides the peers' allowed through the firewall to the API port, such
          as the Prometheus host. Nothing is opened while the API listens on loopback.
        '';
        example = [ "192.168.1.20" ];
      };
    };

    fleet = {
      pollInterval = lib.mkOption {
        type = lib.types.str;
        default = "1s";
        description = "How often the daemon reads the local engine's INFO.";
      };
      peerTimeout = lib.mkOption {
        type = lib.types.str;
        default = "1s";
        description = "How long /api/v1/fleet waits for one peer's daemon before listing it down.";
      };
    };

    watchdogSec = lib.mkOption {
      type = lib.types.str;
      default = "30s";
      description = ''
        systemd restarts the daemon when it has not sent `WATCHDOG=1` for this long.
      '';
    };

    settings = lib.mkOption {
      type = lib.types.submodule { freeformType = settingsFormat.type; };
      default = { };
      description = ''
        The daemon's configuration, written as TOML (see `examples/keyfleet.toml`). The
        typed options above fill it in; set keys here only for what they do not cover.
      '';
    };

    configFile = lib.mkOption {
      type = lib.types.path;
      readOnly = true;
      description = "The generated TOML file the daemon and the engine renderer read.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = klib.isLoopback cfg.api.listenAddress || cfg.api.tokenFile != null;
        message = "services.keyfleet.api.listenAddress ${cfg.api.listenAddress} is not loopback, so services.keyfleet.api.tokenFile must be set.";
      }
      {
        assertion = !(lib.elem cfg.nodeName peerNames);
        message = "services.keyfleet.peers lists ${cfg.nodeName}, this node itself; a node is not its own peer.";
      }
      {
        assertion = lib.length (lib.unique peerNames) == lib.length peerNames;
        message = "services.keyfleet.peers: every peer name must be unique (got ${lib.concatStringsSep ", " peerNames}).";
      }
    ];

    services.keyfleet.settings = {
      node_name = cfg.nodeName;
      state_dir = stateDir;
      api = {
        listen = klib.hostPort cfg.api.listenAddress cfg.api.port;
        max_connections = cfg.api.maxConnections;
        header_timeout = cfg.api.headerTimeout;
        idle_timeout = cfg.api.idleTimeout;
        limits = { inherit (cfg.api.limits) cheap fanout heavy; };
      }
      // lib.optionalAttrs (cfg.api.tokenFile != null) {
        token_file = "${credentialsDir}/api-token";
      };
      fleet = {
        poll_interval = cfg.fleet.pollInterval;
        peer_timeout = cfg.fleet.peerTimeout;
      };
      peers = map (p: {
        inherit (p) name address;
        engine_port = p.enginePort;
        api_port = p.apiPort;
      }) cfg.peers;
    };

    services.keyfleet.configFile = settingsFormat.generate "keyfleet-${cfg.nodeName}.toml" cfg.settings;

    environment.systemPackages = [ cfg.package ];

    users.users.keyfleet = {
      description = "keyfleet node daemon";
      isSystemUser = true;
      group = "keyfleet";
    };
    users.groups.keyfleet = { };

    systemd.services.keyfleet = {
      description = "keyfleet node daemon";
      wantedBy = [ "multi-user.target" ];
      # Wants, not Requires: the daemon must keep running while the engine is down, to
      # report it down.
      wants = [
        "network-online.target"
        "keydb.service"
      ];
      after = [
        "network-online.target"
        "keydb.service"
      ];

      # Sandboxing as nixpkgs' redis module does it (modules/sandbox.nix), and what
      # differs for this service.
      serviceConfig = import ./sandbox.nix // {
        Type = "notify";
        NotifyAccess = "main";
        WatchdogSec = cfg.watchdogSec;
        ExecStart = "${lib.getExe cfg.package} daemon --config ${cfg.configFile}";
        Restart = "on-failure";
        RestartSec = "2s";
        # The API's connection cap plus room for everything else the daemon opens.
        LimitNOFILE = cfg.api.maxConnections + 1024;

        LoadCredential =
          lib.optional (cfg.engine.passwordFile != null) "engine-password:${cfg.engine.passwordFile}"
          ++ lib.optional (cfg.api.tokenFile != null) "api-token:${cfg.api.tokenFile}";

        # A user of its own rather than DynamicUser=: the daemon writes in the engine's
        # log directory (modules/logs.nix), and a file a dynamic UID leaves outside the
        # directories systemd manages for it could end up owned by another service
        # that is given the same UID later. What DynamicUser= implied and sandbox.nix
        # does not set is set here (RemoveIPC=); the daemon can write nowhere but its
        # state directory and, with logs shipped, the log directory.
        User = "keyfleet";
        Group = "keyfleet";
        RemoveIPC = true;
        StateDirectory = lib.removePrefix "/var/lib/" stateDir;
        StateDirectoryMode = "0700";
        # The engine's unix socket is 0660 keydb:keydb in the 0750 /run/keydb, and its
        # log directory is 2770 keydb:keydb.
        SupplementaryGroups = [ "keydb" ];
        UMask = "0077";

        # The daemon needs no /proc of other processes and no W+X memory.
        ProtectProc = "invisible";
        ProcSubset = "pid";
        MemoryDenyWriteExecute = true;
        SystemCallFilter = [
          "@system-service"
          "~@privileged @resources"
        ];
      };
    };
  };
}
