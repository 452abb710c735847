# Evaluates keyfleet's NixOS modules through nixpkgs' real lib.evalModules, without
# nixpkgs: the NixOS options the modules set are declared here with types close to the
# real ones, and `pkgs` is a stub whose derivations are plain attribute sets. Like
# runNixOSTest's nodes, every evaluation gets nixpkgs' options read-only (a stand-in for
# nixos/modules/misc/nixpkgs/read-only.nix) and a `pkgs` without keyfleet or keydb (as
# nixpkgs has neither), and goes through the flake's nixosModules.default
# (nix/nixos-module.nix) with a stand-in `self`. It catches what parsing cannot: an
# option set that was never declared, a wrong type, an assertion that fails on the
# example hosts or holds on a bad configuration, a refused value that is accepted; and
# it returns each host's and VM test node's daemon settings, engine config, units and
# secrets script, the same of node1 with backups configured, and the daemon's TOML of
# each bad log and backup setting (which `keyfleet render` must refuse too), for
# scripts/check-nix.sh to compare and run.
#
#   nix-instantiate --eval --strict --json nix/eval-modules.nix --argstr nixpkgsLib DIR \
#     -A checks
#   nix-instantiate --eval --strict --json nix/eval-modules.nix --argstr nixpkgsLib DIR \
#     -A refused.NAME    # must fail, with the message scripts/check-nix.sh expects
#
# DIR is a checkout of nixpkgs' lib (github:nix-community/nixpkgs.lib, or nixpkgs).
{ nixpkgsLib }:

let
  libDir =
    if builtins.pathExists (/. + nixpkgsLib + "/lib/default.nix") then
      /. + nixpkgsLib + "/lib"
    else
      /. + nixpkgsLib;
  lib = import libDir;

  # nixpkgs' `pkgs` and the flake's packages, as far as the modules read them.
  inherit (import ./eval-pkgs.nix { inherit lib; }) pkgs self;
  flakeModule = import ./nixos-module.nix self;

  inherit (import ./nixos-stubs.nix { inherit lib; }) readOnlyNixpkgs nixosStubs;

  eval =
    modules:
    (lib.evalModules {
      modules = [
        nixosStubs
        readOnlyNixpkgs
        { _module.args.pkgs = pkgs; }
        flakeModule
      ]
      ++ modules;
    }).config;

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  summary = config: {
    failedAssertions = failedAssertions config;
    settings = config.services.keyfleet.settings;
    engineConf = config.services.keyfleet.engine.configFile.text;
    engineExecStart = config.systemd.services.keydb.serviceConfig.ExecStart;
    secretsScript = config.systemd.services.keydb.serviceConfig.ExecStartPre.text;
    keydbService = config.systemd.services.keydb;
    keyfleetService = config.systemd.services.keyfleet;
    firewall = {
      inherit (config.networking.firewall) extraCommands extraInputRules;
    };
    prometheus = config.services.prometheus;
    prometheusCredentials = config.systemd.services.prometheus.serviceConfig.LoadCredential or [ ];
    tmpfiles = config.systemd.tmpfiles.rules;
    users = lib.attrNames config.users.users;
    upgrades = {
      service = config.systemd.services.keyfleet-upgrade or null;
      timer = config.systemd.timers.keyfleet-upgrade or null;
      path = config.systemd.paths.keyfleet-upgrade or null;
      preSwitchCheck = config.system.preSwitchChecks.keyfleet or null;
      generation = config.environment.etc."keyfleet/generation.json".text or null;
      configFile = config.services.keyfleet.configFile.outPath;
    };
  };

  hostNames = [
    "node1"
    "node2"
    "node3"
  ];
  host = name: eval [ ../hosts/${name}.nix ];

  # The VM tests' nodes, with the test framework's `nodes` argument stubbed.
  addresses = {
    monitor = "192.168.1.1";
    node1 = "192.168.1.2";
    node2 = "192.168.1.3";
    node3 = "192.168.1.4";
    s3 = "192.168.1.5";
  };
  testNodeArgs = lib.mapAttrs (_: address: { networking.primaryIPAddress = address; }) addresses;
  vmNode =
    name: module:
    eval [
      module
      { networking.primaryIPAddress = addresses.${name}; }
      { _module.args.nodes = testNodeArgs; }
    ];
  # A node without a keyfleet node of its own (the monitoring host) has no engine.
  vmSummary =
    config:
    if config.services.keyfleet.enable then
      summary config
    else
      {
        failedAssertions = failedAssertions config;
        inherit (config.services) prometheus;
        prometheusCredentials = config.systemd.services.prometheus.serviceConfig.LoadCredential or [ ];
      };
  vmTest = file: lib.mapAttrs (name: module: vmSummary (vmNode name module)) (import file).nodes;
  vmTests = {
    multiMaster = vmTest ../nixos-tests/multi-master.nix;
    monitoring = vmTest ../nixos-tests/monitoring.nix;
    logs = vmTest ../nixos-tests/logs.nix;
    backups = vmTest ../nixos-tests/backups.nix;
    upgrade = vmTest ../nixos-tests/upgrade.nix;
  };
  # The upgrade test's candidates: node1 with each specialisation on top, as NixOS
  # builds it (the parent's configuration extended by the specialisation's).
  upgradeSpecialisations =
    let
      node = (import ../nixos-tests/upgrade.nix).nodes.node1;
      spec = vmNode "node1" node;
    in
    lib.mapAttrs (
      _: s:
      summary (eval [
        node
        s.configuration
        { networking.primaryIPAddress = addresses.node1; }
        { _module.args.nodes = testNodeArgs; }
        { specialisation = lib.mkOverride 0 { }; }
      ])
    ) spec.specialisation;

  # Bad configurations, each of which must fail with its own assertion.
  node1With = extra: failedAssertions (eval ([ ../hosts/node1.nix ] ++ extra));
  bad = {
    ownPeer = node1With [
      {
        services.keyfleet.peers = lib.mkAfter [
          {
            name = "node1";
            address = "192.168.1.99";
          }
        ];
      }
    ];
    duplicatePeer = node1With [
      {
        services.keyfleet.peers = lib.mkAfter [
          {
            name = "node2";
            address = "192.168.1.98";
          }
        ];
      }
    ];
    hostNamePeer = node1With [
      {
        services.keyfleet.peers = lib.mkAfter [
          {
            name = "node4";
            address = "node4.example.org";
          }
        ];
      }
    ];
    hostNameSource = node1With [ { services.keyfleet.engine.allowedSources = [ "app.example.org" ]; } ];
    firewalld = node1With [ { services.firewalld.enable = true; } ];
    reservedSetting = node1With [ { services.keyfleet.engine.settings.port = 7000; } ];
    secretSetting = node1With [ { services.keyfleet.engine.settings.masterauth = "hunter2"; } ];
    apiWithoutToken = node1With [ { services.keyfleet.api.tokenFile = lib.mkForce null; } ];
    noEnginePassword = node1With [ { services.keyfleet.engine.passwordFile = lib.mkForce null; } ];
    noSafetyReaderPassword = node1With [
      { services.keyfleet.safety.reader.passwordFile = lib.mkForce null; }
    ];
    noReplicationPassword = node1With [
      { services.keyfleet.engine.replication.passwordFile = lib.mkForce null; }
    ];
    redisWithoutPrimary = node1With [ { services.keyfleet.engine.kind = "redis"; } ];
  }
  # The restore user taking another ACL user's name.
  //
    lib.mapAttrs
      (
        _: user:
        node1With (withBackups {
          restore = restoreUser // {
            inherit user;
          };
        })
      )
      {
        restoreUserIsDaemon = "keyfleet";
        restoreUserIsReplication = "replication";
        restoreUserIsApp = "app";
      }
  // lib.mapAttrs' (name: extra: lib.nameValuePair "logs/${name}" (node1With extra)) badLogs
  // lib.mapAttrs' (name: extra: lib.nameValuePair "backups/${name}" (node1With extra)) badBackups
  // lib.mapAttrs' (name: extra: lib.nameValuePair "safety/${name}" (node1With extra)) badSafety
  // lib.mapAttrs' (name: extra: lib.nameValuePair "upgrades/${name}" (node1With extra)) badUpgrades;

  # Bad upgrade settings (hosts/common.nix enables upgrades), each refused by its own
  # assertion; `keyfleet render` must refuse the daemon's TOML of each as well.
  badUpgrades = lib.mapAttrs (_: extra: [ { services.keyfleet.upgrades = extra; } ]) {
    shortGate = {
      gateTimeout = "4s";
      gateSettle = "1s";
    };
    settleAsLongAsGate.gateSettle = "60s";
    shortLease.leaseTtl = "30s";
    partialOrder.order = [ "node1" ];
    strangerInOrder.order = [
      "node1"
      "node2"
      "node3"
      "node9"
    ];
  };

  # Bad replication-safety settings, each refused by its own assertion; `keyfleet render`
  # must refuse the daemon's TOML of each as well.
  badSafety = lib.mapAttrs (_: extra: [ { services.keyfleet.safety = extra; } ]) {
    fastCanary.canaryInterval = "10ms";
    lagBelowInterval.lagThreshold = "1s";
    shortSkewInterval.skewInterval = "500ms";
    zeroSkewThreshold.skewThreshold = "0s";
    partialOrder.atomicWritesOrder = [ "node1" ];
    strangerInOrder.atomicWritesOrder = [
      "node1"
      "node2"
      "node3"
      "node9"
    ];
  };

  # Bad log shipping settings (hosts/common.nix enables it on every example host). The
  # daemon's TOML of each is returned too: `keyfleet render` must refuse it as well.
  badLogs =
    lib.mapAttrs (_: extra: [ { services.keyfleet.logs = extra; } ]) {
      budgetBelowTwoSegments.maxLocalBytes = lib.mkForce "100MiB";
      tinySegments.rotate.maxSize = 1024;
      zeroMaxAge.rotate.maxAge = "0s";
      smallParts.s3.partSize = "1MiB";
      bucketName.s3.bucket = lib.mkForce "Example_Logs";
      endpointWithPath.s3.endpoint = lib.mkForce "https://s3.example.org/logs";
      prefixSlashes.s3.prefix = lib.mkForce "/fleet-a/";
      region.s3.region = lib.mkForce "eu west 1";
    }
    // {
      engineLogfile = [ { services.keyfleet.engine.settings.logfile = "/tmp/keydb.log"; } ];
    };

  # A store of backups' own (the example hosts ship logs, so without it backups share the
  # log store).
  backupsStore = {
    endpoint = "https://s3.eu-central-1.amazonaws.com";
    region = "eu-central-1";
    bucket = "example-keyfleet-backups";
    prefix = "fleet-a";
    pathStyle = false;
    accessKeyIdFile = "/run/secrets/keyfleet/backups-s3-access-key-id";
    secretAccessKeyFile = "/run/secrets/keyfleet/backups-s3-secret-access-key";
  };
  # The restore user, under a name of its own.
  restoreUser = {
    user = "restorer";
    passwordFile = "/run/secrets/keyfleet/backups-restore-password";
  };
  withBackups = settings: [
    {
      services.keyfleet.backups = {
        enable = true;
      }
      // settings;
    }
  ];

  # Good backup settings on node1: each must raise no assertion, and `keyfleet render`
  # must take its TOML.
  goodBackups = {
    sharedStore = withBackups { };
    everything = withBackups {
      fleet = "fleet-a.prod_1";
      compression = "none";
      bgsaveTimeout = "2h";
      schedule = "daily 02:30 Asia/Kolkata";
      keepLast = 14;
      keepWithin = "30d";
      encryption = {
        recipientsFile = "/etc/keyfleet/backup-recipients.txt";
        identityFile = "/run/secrets/keyfleet/backup-age-identity";
      };
      s3 = backupsStore;
    };
    ownStoreWithoutLogs =
      withBackups {
        schedule = "every 6h";
        s3 = backupsStore;
      }
      ++ [ { services.keyfleet.logs.enable = lib.mkForce false; } ];
    restoreUser = withBackups { restore = restoreUser; };
  };

  # Bad backup settings, each of which must fail with its own assertion. The daemon's
  # TOML of each is returned too: `keyfleet render` must refuse it as well.
  badBackups =
    lib.mapAttrs (_: withBackups) {
      fleetName.fleet = "fleet/a";
      zeroBgsaveTimeout.bgsaveTimeout = "0s";
      keepLastZero.keepLast = 0;
      shortKeepWithin.keepWithin = "10m";
      scheduleWord.schedule = "hourly";
      shortPeriod.schedule = "every 5s";
      timeOfDay.schedule = "daily 24:30 Asia/Kolkata";
      bucketName.s3 = backupsStore // {
        bucket = "Example_Backups";
      };
    }
    // {
      sharedStoreWithoutLogs = withBackups { } ++ [
        { services.keyfleet.logs.enable = lib.mkForce false; }
      ];
    };

  # Values refused by a type or a read-only option, at evaluation: each must fail on its
  # own with the message scripts/check-nix.sh looks for.
  node1Config = extra: eval ([ ../hosts/node1.nix ] ++ extra);
  refused = {
    storePathSecret =
      (node1Config [
        {
          services.keyfleet.engine.passwordFile = lib.mkForce "/nix/store/00000000000000000000000000000000-pw";
        }
      ]).services.keyfleet.engine.passwordFile;
    pathLiteralSecret =
      (node1Config [ { services.keyfleet.api.tokenFile = lib.mkForce ../README.md; } ])
      .services.keyfleet.api.tokenFile;
    setsOverlays = (node1Config [ { nixpkgs.overlays = [ (_final: _prev: { }) ]; } ]).nixpkgs.overlays;
    logsStorePathKey =
      (node1Config [
        {
          services.keyfleet.logs.s3.secretAccessKeyFile =
            lib.mkForce "/nix/store/00000000000000000000000000000000-key";
        }
      ]).services.keyfleet.logs.s3.secretAccessKeyFile;
    logsBadSize =
      (node1Config [ { services.keyfleet.logs.rotate.maxSize = "64 parsecs"; } ])
      .services.keyfleet.logs.rotate.maxSize;
    backupsStorePathKey =
      (node1Config (withBackups {
        s3 = backupsStore // {
          accessKeyIdFile = "/nix/store/00000000000000000000000000000000-key";
        };
      })).services.keyfleet.backups.s3.accessKeyIdFile;
    backupsBadDuration =
      (node1Config (withBackups {
        keepWithin = "2 weeks";
      })).services.keyfleet.backups.keepWithin;
    apiFewConnections =
      (node1Config [ { services.keyfleet.api.maxConnections = 4; } ])
      .services.keyfleet.api.maxConnections;
    upgradesBadWindow =
      (node1Config [ { services.keyfleet.upgrades.windows = lib.mkForce [ "Sundays at 2am" ]; } ])
      .services.keyfleet.upgrades.windows;
    upgradesBadPolicy =
      (node1Config [ { services.keyfleet.upgrades.policy.minor = "sometimes"; } ])
      .services.keyfleet.upgrades.policy.minor;
    logsBadDuration =
      (node1Config [ { services.keyfleet.logs.rotate.maxAge = "2 fortnights"; } ])
      .services.keyfleet.logs.rotate.maxAge;
  };
in
{
  # Everything that must evaluate (scripts/check-nix.sh reads it with -A checks).
  checks = {
    hosts = lib.genAttrs hostNames (name: summary (host name));
    # The firewall rules on each backend, and none with the firewall off.
    firewall = lib.mapAttrs (_: extra: (node1Config [ extra ]).networking.firewall) {
      iptables = { };
      nftables.networking.nftables.enable = true;
      off.networking.firewall.enable = false;
      keyfleetOff.services.keyfleet.firewall.enable = false;
    };
    # A daemon-only setting changes the daemon's TOML, never the engine's command line.
    engineExecStart = {
      default = (host "node1").systemd.services.keydb.serviceConfig.ExecStart;
      otherPollInterval =
        (node1Config [ { services.keyfleet.fleet.pollInterval = "5s"; } ])
        .systemd.services.keydb.serviceConfig.ExecStart;
      otherMaxmemory =
        (node1Config [ { services.keyfleet.engine.maxmemory = lib.mkForce "2GiB"; } ])
        .systemd.services.keydb.serviceConfig.ExecStart;
      # Where and how logs are shipped is the daemon's business; only whether the engine
      # logs to a file is the engine's.
      otherLogsBucket =
        (node1Config [ { services.keyfleet.logs.s3.bucket = lib.mkForce "other-bucket"; } ])
        .systemd.services.keydb.serviceConfig.ExecStart;
      logsOff =
        (node1Config [ { services.keyfleet.logs.enable = lib.mkForce false; } ])
        .systemd.services.keydb.serviceConfig.ExecStart;
      otherKeyfleet =
        (node1Config [
          { services.keyfleet.package = pkgs.writeText "keyfleet-9.9.9" ""; }
        ]).systemd.services.keydb.serviceConfig.ExecStart;
    };
    inherit vmTests bad upgradeSpecialisations;
    badLogsSettings = lib.mapAttrs (_: extra: (node1Config extra).services.keyfleet.settings) badLogs;
    backups = lib.mapAttrs (_: extra: summary (node1Config extra)) goodBackups;
    badUpgradesSettings = lib.mapAttrs (
      _: extra: (node1Config extra).services.keyfleet.settings
    ) badUpgrades;
    # Without upgrades: no agent, no timer, no pre-switch check, no generation.json.
    upgradesOff = summary (node1Config [ { services.keyfleet.upgrades.enable = lib.mkForce false; } ]);
    badSafetySettings = lib.mapAttrs (
      _: extra: (node1Config extra).services.keyfleet.settings
    ) badSafety;
    badBackupsSettings = lib.mapAttrs (
      _: extra: (node1Config extra).services.keyfleet.settings
    ) badBackups;
    # What backups change in the engine's unit (the data directory's mode, the UMask)
    # does not depend on how they are made: changing a backup setting never restarts
    # the engine. The restore user is the exception: an ACL user of the engine, it
    # changes the unit's secrets script and credentials, and nothing else.
    engineUnitWithBackups = lib.mapAttrs (_: extra: (node1Config extra).systemd.services.keydb) ({
      inherit (goodBackups) sharedStore everything restoreUser;
      otherSchedule = withBackups { schedule = "every 1h"; };
    });
    # The same host without log shipping: no [logs] table, no credentials, no log
    # directory, the engine logging to stdout.
    logsOff = summary (node1Config [ { services.keyfleet.logs.enable = lib.mkForce false; } ]);
  };
  inherit refused;
}
