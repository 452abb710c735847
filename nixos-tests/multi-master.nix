# Three KeyDB nodes in active-replica multi-master: a write on each is read on the other
# two; with one engine stopped the others keep taking writes and report its link down;
# restarted, it catches up.
let
  fleet = [
    "node1"
    "node2"
    "node3"
  ];
  mkNode = import ./common.nix { inherit fleet; };
in
{
  name = "keyfleet-multi-master";

  nodes = {
    node1 = mkNode "node1";
    node2 = mkNode "node2";
    node3 = mkNode "node3";
  };

  testScript = ''
    cli = "keydb-cli --no-auth-warning --user app --pass app-secret -h 127.0.0.1"

    def links_up(machine, count):
        machine.wait_until_succeeds(
            "curl -sf http://127.0.0.1:9850/api/v1/node"
            f" | jq -e '[.links[] | select(.status == \"up\")] | length == {count}'",
            timeout=120,
        )

    def reads(machine, key, value):
        machine.wait_until_succeeds(f"{cli} get {key} | grep -qx {value}", timeout=60)

    start_all()

    with subtest("every node runs its engine and daemon"):
        for machine in machines:
            machine.wait_for_unit("keydb.service")
            machine.wait_for_unit("keyfleet.service")
            machine.wait_for_open_port(6379)

    with subtest("the default user is off: no unauthenticated client"):
        node1.fail("keydb-cli -h 127.0.0.1 set anonymous 1 | grep -qx OK")
        node1.succeed("keydb-cli -h 127.0.0.1 ping | grep -q NOAUTH")
        node1.fail(f"{cli} eval 'return 1' 0 | grep -qx 1")

    with subtest("every node replicates from both peers"):
        for machine in machines:
            links_up(machine, 2)

    with subtest("every canary arrives, as the daemon's ACL user, and the key figures leave it out"):
        for machine in machines:
            machine.wait_until_succeeds(
                "curl -sf http://127.0.0.1:9850/api/v1/node"
                " | jq -e '[.links[] | select(.lag_seconds != null and .canary_age_seconds < 5)] | length == 2'",
                timeout=60,
            )
            machine.succeed(
                "curl -sf http://127.0.0.1:9850/api/v1/safety"
                " | jq -e '[.workers[] | select(.state == \"failing\")] | length == 0'"
            )
            machine.succeed(
                "curl -sf http://127.0.0.1:9850/api/v1/fleet | jq -e '.atomic_writes_node == \"node1\"'"
            )
        node1.succeed(f"{cli} exists keyfleet:canary:node2 | grep -qx 1")

    with subtest("a write on each node is read on the other two"):
        for machine in machines:
            machine.succeed(f"{cli} set written-on-{machine.name} {machine.name} | grep -qx OK")
        for machine in machines:
            for other in machines:
                reads(machine, f"written-on-{other.name}", other.name)

    with subtest("with node3's engine stopped, node1 and node2 take writes and see it down"):
        node3.systemctl("stop keydb.service")
        for machine in (node1, node2):
            machine.wait_until_succeeds(
                "curl -sf http://127.0.0.1:9850/api/v1/node"
                " | jq -e '.links[] | select(.peer == \"node3\") | .status == \"down\"'",
                timeout=60,
            )
            machine.succeed(f"{cli} set during-outage-{machine.name} yes | grep -qx OK")
        reads(node1, "during-outage-node2", "yes")
        reads(node2, "during-outage-node1", "yes")
        node3.succeed(
            "curl -sf http://127.0.0.1:9850/api/v1/node | jq -e '.up == false'"
        )
        node1.wait_until_succeeds(
            "curl -sf http://127.0.0.1:9850/api/v1/node"
            " | jq -e '.links[] | select(.peer == \"node3\") | .canary_age_seconds > 5'",
            timeout=60,
        )

    with subtest("node3 restarts and converges"):
        node3.systemctl("start keydb.service")
        node3.wait_for_unit("keydb.service")
        for machine in machines:
            links_up(machine, 2)
        reads(node3, "during-outage-node1", "yes")
        reads(node3, "during-outage-node2", "yes")
        node3.succeed(f"{cli} set after-restart yes | grep -qx OK")
        reads(node1, "after-restart", "yes")
        reads(node2, "after-restart", "yes")
  '';
}
