# Stand-ins for the NixOS options keyfleet's modules set, declared with types close to
# the real ones (nixpkgs' nixos/modules), for nix/eval-modules.nix. Each is a module;
# nothing here is keyfleet's own.
{ lib }:

let
  inherit (lib) mkOption types;
in
rec {
  # nixos/modules/misc/nixpkgs/read-only.nix, which runNixOSTest's nodes get: a module
  # that sets nixpkgs.overlays (or nixpkgs.config) fails there.
  readOnlyNixpkgs = {
    options.nixpkgs = {
      overlays = mkOption {
        internal = true;
        type = types.unique { message = "nixpkgs.overlays is set to read-only"; } types.anything;
      };
      config = mkOption {
        internal = true;
        type = types.unique { message = "nixpkgs.config is set to read-only"; } types.anything;
      };
    };
    config.nixpkgs = {
      overlays = [ ];
      config = { };
    };
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
      unitConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      environment = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        );
        default = { };
      };
      path = mkOption {
        type = types.listOf (
          types.oneOf [
            types.package
            types.str
          ]
        );
        default = [ ];
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
    };
  };

  # systemd.timers.<name> and systemd.paths.<name>, as far as the modules set them.
  unitModule = extra: {
    options = {
      wantedBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      ${extra} = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
    };
  };

  nixosStubs =
    { config, ... }:
    {
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
          # As nixos/modules/services/networking/firewall.nix declares them.
          firewall = {
            enable = mkOption {
              type = types.bool;
              default = true;
            };
            backend = mkOption {
              type = types.enum [
                "iptables"
                "nftables"
                "firewalld"
              ];
              default =
                if config.services.firewalld.enable then
                  "firewalld"
                else if config.networking.nftables.enable then
                  "nftables"
                else
                  "iptables";
            };
            extraCommands = mkOption {
              type = types.lines;
              default = "";
            };
            extraInputRules = mkOption {
              type = types.lines;
              default = "";
            };
            allowedTCPPorts = mkOption {
              type = types.listOf types.port;
              default = [ ];
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
            type = types.attrsOf (
              types.submodule {
                options = {
                  source = mkOption {
                    type = types.nullOr types.path;
                    default = null;
                  };
                  text = mkOption {
                    type = types.nullOr types.lines;
                    default = null;
                  };
                  mode = mkOption {
                    type = types.str;
                    default = "symlink";
                  };
                };
              }
            );
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
        systemd.timers = mkOption {
          type = types.attrsOf (types.submodule (unitModule "timerConfig"));
          default = { };
        };
        systemd.paths = mkOption {
          type = types.attrsOf (types.submodule (unitModule "pathConfig"));
          default = { };
        };
        systemd.package = mkOption {
          type = types.package;
          default = {
            type = "derivation";
            name = "systemd";
            outPath = "/nix/store/00000000000000000000000000000000-systemd";
          };
        };
        # nixos/modules/system/activation/specialisation.nix (each one is evaluated on
        # its own by nix/eval-modules.nix).
        specialisation = mkOption {
          type = types.attrsOf (
            types.submodule {
              options.configuration = mkOption {
                type = types.deferredModule;
                default = { };
              };
            }
          );
          default = { };
        };
        # nixos/modules/system/activation/switchable-system.nix and top-level.nix.
        system.preSwitchChecks = mkOption {
          type = types.attrsOf types.str;
          default = { };
        };
        system.configurationRevision = mkOption {
          type = types.nullOr types.str;
          default = null;
        };
        system.build = mkOption {
          type = types.submodule { freeformType = types.lazyAttrsOf types.unspecified; };
          default = { };
        };
        # nixos/modules/config/nix.nix
        nix.package = mkOption {
          type = types.package;
          default = {
            type = "derivation";
            name = "nix";
            out = {
              type = "derivation";
              name = "nix";
              outPath = "/nix/store/00000000000000000000000000000000-nix";
            };
            outPath = "/nix/store/00000000000000000000000000000000-nix";
          };
        };
        nix.envVars = mkOption {
          type = types.attrs;
          default = { };
        };
        # nixos/modules/system/boot/systemd/tmpfiles.nix
        systemd.tmpfiles.rules = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        boot = freeform;
        fileSystems = freeform;
        virtualisation = freeform;
        system.stateVersion = mkOption { type = types.str; };
        services.openssh = freeform;
        services.firewalld.enable = mkOption {
          type = types.bool;
          default = false;
        };
        # nixos/modules/services/web-servers/garage.nix (nixos-25.11): `package` has no
        # default, `settings` is pkgs.formats.toml's type with two typed paths.
        services.garage = {
          enable = mkOption {
            type = types.bool;
            default = false;
          };
          package = mkOption { type = types.package; };
          environmentFile = mkOption {
            type = types.nullOr types.path;
            default = null;
          };
          extraEnvironment = mkOption {
            type = types.attrsOf types.str;
            default = { };
          };
          logLevel = mkOption {
            type = types.enum [
              "error"
              "warn"
              "info"
              "debug"
              "trace"
            ];
            default = "info";
          };
          settings = mkOption {
            type = types.submodule {
              freeformType = types.attrsOf types.anything;
              options = {
                metadata_dir = mkOption {
                  type = types.path;
                  default = "/var/lib/garage/meta";
                };
                data_dir = mkOption {
                  type = types.either types.path (types.listOf types.attrs);
                  default = "/var/lib/garage/data";
                };
              };
            };
            default = { };
          };
        };
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
      # What nixos/modules/installer/tools/tools.nix provides.
      config.system.build.nixos-rebuild = {
        type = "derivation";
        name = "nixos-rebuild";
        outPath = "/nix/store/00000000000000000000000000000000-nixos-rebuild";
      };
    };
}
