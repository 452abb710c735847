# services.keyfleet.monitoring: a Prometheus that scrapes every node's /metrics (the
# daemon's API port) and evaluates keyfleet's KeyDB-aware alert rules
# (monitoring/alerts.yml, tested with promtool in monitoring/alerts_test.yml). It may run
# on a fleet node (the targets default to this node and its peers) or on a host of its own.
{ config, lib, ... }:

let
  cfg = config.services.keyfleet;
  klib = import ./lib.nix { inherit lib; };
  mcfg = cfg.monitoring;

  tokenCredential = "/run/credentials/prometheus.service/keyfleet-api-token";

  targetModule = {
    options = {
      name = lib.mkOption {
        type = lib.types.str;
        description = "The node's name; becomes the `node` label of its series.";
      };
      address = lib.mkOption {
        type = lib.types.str;
        description = "Address of the node's keyfleet API.";
      };
      apiPort = lib.mkOption {
        type = lib.types.port;
        default = 9850;
        description = "Port of the node's keyfleet API.";
      };
    };
  };
in
{
  options.services.keyfleet.monitoring = {
    enable = lib.mkEnableOption "Prometheus scraping every keyfleet node, with keyfleet's alert rules";

    targets = lib.mkOption {
      type = lib.types.listOf (lib.types.submodule targetModule);
      default = lib.optionals cfg.enable (
        [
          {
            name = cfg.nodeName;
            address = cfg.api.listenAddress;
            apiPort = cfg.api.port;
          }
        ]
        ++ map (p: {
          inherit (p) name address apiPort;
        }) cfg.peers
      );
      defaultText = lib.literalMD "this node and its peers, when `services.keyfleet.enable` is set";
      description = "The nodes to scrape.";
    };

    tokenFile = lib.mkOption {
      type = lib.types.nullOr klib.secretFile;
      default = cfg.api.tokenFile;
      defaultText = lib.literalExpression "config.services.keyfleet.api.tokenFile";
      description = ''
        File holding the API bearer token sent with every scrape; handed to Prometheus with
        `LoadCredential=`.
      '';
    };

    scrapeInterval = lib.mkOption {
      type = lib.types.str;
      default = "15s";
      description = "How often every node is scraped.";
    };
  };

  config = lib.mkIf mcfg.enable {
    assertions = [
      {
        assertion = mcfg.targets != [ ];
        message = "services.keyfleet.monitoring.targets is empty: set it, or enable services.keyfleet on this host.";
      }
    ];

    services.prometheus = {
      enable = true;
      ruleFiles = [ ../monitoring/alerts.yml ];
      scrapeConfigs = [
        (
          {
            job_name = "keyfleet";
            scrape_interval = mcfg.scrapeInterval;
            static_configs = map (t: {
              targets = [ (klib.hostPort t.address t.apiPort) ];
              labels.node = t.name;
            }) mcfg.targets;
          }
          // lib.optionalAttrs (mcfg.tokenFile != null) {
            authorization = {
              type = "Bearer";
              credentials_file = tokenCredential;
            };
          }
        )
      ];
      # The credential exists only at run time; check the rest of the config at build time.
      checkConfig = lib.mkIf (mcfg.tokenFile != null) (lib.mkDefault "syntax-only");
    };

    systemd.services.prometheus.serviceConfig.LoadCredential = lib.mkIf (mcfg.tokenFile != null) [
      "keyfleet-api-token:${mcfg.tokenFile}"
    ];
  };
}
