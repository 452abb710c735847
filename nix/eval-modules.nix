# Evaluates keyfleet's NixOS modules through nixpkgs' real lib.evalModules, without
# nixpkgs: the NixOS options the modules set are declared here with types close to the
# real ones, and `pkgs` is a stub whose derivations are plain attribute sets. It catches
# what parsing cannot: an option set that was never declared, a wrong type, an
# assertion that fails on the example hosts or holds on a bad configuration, and it
# returns each example host's daemon settings for scripts/check-nix.sh to compare with
# examples/hosts/*.toml.
#
#   nix-instantiate --eval --strict --json nix/eval-modules.nix --argstr nixpkgsLib DIR
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
  inherit (lib) mkOption types;

  drv =
    name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
      meta = { };
    }
    // extra;

  # Like pkgs.formats.json's value type, which pkgs.formats.toml uses.
  tomlValue = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
      types.path
      (types.attrsOf tomlValue)
      (types.listOf tomlValue)
    ]
  );

  pkgs = {
    formats.toml = _: {
      type = types.attrsOf tomlValue;
      generate = name: value: drv name { inherit value; };
    };
    writeText = name: text: drv name { inherit text; };
    writeShellScript = name: text: drv name { inherit text; };
    runCommand =
      name: _env: script:
      drv name { inherit script; };
    keyfleet = drv "keyfleet-0.1.0" {
      pname = "keyfleet";
      meta.mainProgram = "keyfleet";
    };
    keydb = drv "keydb-6.3.4" {
      pname = "keydb";
      serverBin = "keydb-server";
      meta.mainProgram = "keydb-cli";
    };
    redis = drv "redis-8.2.1" {
      pname = "redis";
      serverBin = "redis-server";
      meta.mainProgram = "redis-cli";
    };
    coreutils = drv "coreutils-9.7" { pname = "coreutils"; };
    curl = drv "curl" { };
    jq = drv "jq" { };
  };

  freeform = mkOption {
    type = types.submodule { freeformType = types.attrsOf types.anything; };
    default = { };
  };

  # systemd's unitOption, as in nixos/lib/systemd-unit-options.nix.
  unitOption = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    types.package
    (types.listOf (
      types.oneOf [
        types.str
        types.path
        types.package
      ]
    ))
  ];

  serviceModule = {
    options = {
      description = mkOption {
        type = types.str;
        default = "";
      };
      wantedBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      wants = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
    };
  };

  nixosStubs = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      networking = {
        hostName = mkOption {
          type = types.str;
          default = "nixos";
        };
        primaryIPAddress = mkOption {
          type = types.str;
          default = "192.168.1.1";
        };
        useDHCP = mkOption {
          type = types.bool;
          default = true;
        };
        interfaces = mkOption {
          type = types.attrsOf types.anything;
          default = { };
        };
        nftables.enable = mkOption {
          type = types.bool;
          default = false;
        };
        firewall = {
          extraCommands = mkOption {
            type = types.lines;
            default = "";
          };
          extraInputRules = mkOption {
            type = types.lines;
            default = "";
          };
        };
      };
      users = {
        users = mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                description = mkOption {
                  type = types.str;
                  default = "";
                };
                isSystemUser = mkOption {
                  type = types.bool;
                  default = false;
                };
                group = mkOption { type = types.str; };
              };
            }
          );
          default = { };
        };
        groups = mkOption {
          type = types.attrsOf (types.submodule { });
          default = { };
        };
      };
      environment = {
        etc = mkOption {
          type = types.attrsOf (types.submodule { options.source = mkOption { type = types.path; }; });
          default = { };
        };
        systemPackages = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule serviceModule);
        default = { };
      };
      boot = freeform;
      fileSystems = freeform;
      virtualisation = freeform;
      system.stateVersion = mkOption { type = types.str; };
      services.openssh = freeform;
      services.prometheus = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        ruleFiles = mkOption {
          type = types.listOf types.path;
          default = [ ];
        };
        scrapeConfigs = mkOption {
          type = types.listOf (types.attrsOf types.anything);
          default = [ ];
        };
        checkConfig = mkOption {
          type = types.either types.bool (types.enum [ "syntax-only" ]);
          default = true;
        };
        globalConfig = mkOption {
          type = types.attrsOf types.anything;
          default = { };
        };
      };
    };
  };

  eval =
    modules:
    (lib.evalModules {
      modules = [
        nixosStubs
        { _module.args.pkgs = pkgs; }
        ../modules
      ]
      ++ modules;
    }).config;

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  summary = config: {
    failedAssertions = failedAssertions config;
    settings = config.services.keyfleet.settings;
    engineConfigScript = config.services.keyfleet.engine.configFile.script;
    secretsScript = config.systemd.services.keydb.serviceConfig.ExecStartPre.text;
    keydbService = config.systemd.services.keydb;
    keyfleetService = config.systemd.services.keyfleet;
    firewall = {
      inherit (config.networking.firewall) extraCommands extraInputRules;
    };
    prometheus = config.services.prometheus;
    prometheusCredentials = config.systemd.services.prometheus.serviceConfig.LoadCredential or [ ];
  };

  hostNames = [
    "node1"
    "node2"
    "node3"
  ];
  host = name: eval [ ../hosts/${name}.nix ];

  # The VM tests' nodes, with the test framework's `nodes` argument stubbed.
  testFleet = [
    "node1"
    "node2"
    "node3"
  ];
  testNodes = lib.genAttrs (testFleet ++ [ "monitor" ]) (name: {
    networking.primaryIPAddress =
      {
        monitor = "192.168.1.1";
        node1 = "192.168.1.2";
        node2 = "192.168.1.3";
        node3 = "192.168.1.4";
      }
      .${name};
  });
  testNode =
    name: extra:
    eval (
      [
        (import ../nixos-tests/common.nix { fleet = testFleet; } name)
        { networking.primaryIPAddress = testNodes.${name}.networking.primaryIPAddress; }
        { _module.args.nodes = testNodes; }
      ]
      ++ extra
    );

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
    apiWithoutToken = node1With [ { services.keyfleet.api.tokenFile = lib.mkForce null; } ];
    noEnginePassword = node1With [ { services.keyfleet.engine.passwordFile = lib.mkForce null; } ];
    noReplicationPassword = node1With [
      { services.keyfleet.engine.replication.passwordFile = lib.mkForce null; }
    ];
    redisWithoutPrimary = node1With [ { services.keyfleet.engine.kind = "redis"; } ];
  };
in
{
  hosts = lib.genAttrs hostNames (name: summary (host name));
  nftablesNode2 =
    (eval [
      ../hosts/node2.nix
      { networking.nftables.enable = true; }
    ]).networking.firewall;
  testNodes = {
    multiMasterNode1 = summary (testNode "node1" [ ]);
    monitor =
      let
        config = eval [
          (import ../nixos-tests/monitoring.nix).nodes.monitor
          { _module.args.nodes = testNodes; }
        ];
      in
      {
        failedAssertions = failedAssertions config;
        inherit (config.services) prometheus;
      };
  };
  inherit bad;
}
