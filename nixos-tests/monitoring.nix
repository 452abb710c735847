# Prometheus on its own host scrapes two keyfleet nodes through the token-protected API
# and sees both up; when one node's engine stops, KeyfleetEngineDown fires for it.
let
  fleet = [
    "node1"
    "node2"
  ];
  mkNode = import ./common.nix { inherit fleet; };
  token = "monitoring-test-token";

  tokenSecret = import ./secrets.nix { api-token = token; };

  apiOnNetwork =
    { config, nodes, ... }:
    {
      imports = [ tokenSecret ];
      services.keyfleet.api = {
        listenAddress = config.networking.primaryIPAddress;
        tokenFile = "/etc/keyfleet-test/api-token";
        allowedSources = [ nodes.monitor.networking.primaryIPAddress ];
      };
    };
in
{
  name = "keyfleet-monitoring";

  nodes = {
    node1 = {
      imports = [
        (mkNode "node1")
        apiOnNetwork
      ];
    };
    node2 = {
      imports = [
        (mkNode "node2")
        apiOnNetwork
      ];
    };
    monitor =
      { nodes, pkgs, ... }:
      {
        imports = [ tokenSecret ];
        services.keyfleet.monitoring = {
          enable = true;
          scrapeInterval = "2s";
          tokenFile = "/etc/keyfleet-test/api-token";
          targets = map (name: {
            inherit name;
            address = nodes.${name}.networking.primaryIPAddress;
          }) fleet;
        };
        services.prometheus.globalConfig.evaluation_interval = "2s";
        environment.systemPackages = [
          pkgs.curl
          pkgs.jq
        ];
      };
  };

  testScript = ''
    prom = "http://127.0.0.1:9090/api/v1"

    start_all()
    for machine in (node1, node2):
        machine.wait_for_unit("keyfleet.service")
    monitor.wait_for_unit("prometheus.service")
    monitor.wait_for_open_port(9090)

    with subtest("Prometheus sees every node up"):
        monitor.wait_until_succeeds(
            f"curl -sfG {prom}/query --data-urlencode 'query=count(up{{job=\"keyfleet\"}} == 1)'"
            " | jq -e '.data.result[0].value[1] == \"2\"'",
            timeout=120,
        )
        monitor.wait_until_succeeds(
            f"curl -sfG {prom}/query --data-urlencode 'query=redis_up{{node=\"node2\"}}'"
            " | jq -e '.data.result[0].value[1] == \"1\"'",
            timeout=60,
        )

    with subtest("a stopped engine fires KeyfleetEngineDown for its node"):
        node2.systemctl("stop keydb.service")
        monitor.wait_until_succeeds(
            f"curl -sf {prom}/alerts | jq -e '.data.alerts[]"
            " | select(.labels.alertname == \"KeyfleetEngineDown\""
            " and .labels.node == \"node2\" and .state == \"firing\")'",
            timeout=180,
        )
        monitor.fail(
            f"curl -sf {prom}/alerts | jq -e '.data.alerts[]"
            " | select(.labels.alertname == \"KeyfleetEngineDown\" and .labels.node == \"node1\")'"
        )
  '';
}
