# Rollback-able upgrades on three KeyDB nodes. Every node carries two candidate
# generations as specialisations: `candidate` changes the engine config (hz 20, release
# hz20), `broken` has a directive KeyDB refuses (release broken). Each is pushed to the
# agents as NixOS does it without a flake: a store path linked at
# /var/lib/keyfleet-upgrade/candidate.
#
# 1. The candidate rolls across the fleet inside a window, one node at a time (never two
#    nodes switching or in their gate at once), in the order node1, node2, node3.
# 2. The broken candidate fails on node1 and is rolled back on its own, every key
#    written before it still readable; node2 and node3 refuse it and never switch.
let
  fleet = [
    "node1"
    "node2"
    "node3"
  ];
  mkNode = import ./common.nix { inherit fleet; };
  upgradeNode =
    name:
    { config, lib, ... }:
    {
      imports = [ (mkNode name) ];
      services.keyfleet.upgrades = {
        enable = true;
        # Every day, all day, in a zone of its own: inside a window whenever the test
        # runs, and still a real window with a next opening.
        windows = [ "Mon-Sun 00:00-23:59 Asia/Kolkata" ];
        release = lib.mkDefault "base";
        # The agent's timer: a node whose turn has not come asks again soon.
        interval = "10s";
        gateTimeout = "90s";
        leaseTtl = "180s";
      };
      specialisation.candidate.configuration = {
        services.keyfleet.engine.settings.hz = 20;
        services.keyfleet.upgrades.release = "hz20";
      };
      specialisation.broken.configuration = {
        services.keyfleet.engine.settings.no-such-directive = "yes";
        services.keyfleet.upgrades.release = "broken";
      };
      # nix-env --set needs the generations in the VM's Nix database.
      virtualisation.additionalPaths = [ config.system.build.toplevel ];
      virtualisation.memorySize = lib.mkForce 1536;
    };
in
{
  name = "keyfleet-upgrade";

  nodes = {
    node1 = upgradeNode "node1";
    node2 = upgradeNode "node2";
    node3 = upgradeNode "node3";
  };

  testScript = ''
    import json
    import time

    cli = "keydb-cli --no-auth-warning --user app --pass app-secret -h 127.0.0.1"
    busy = {"switching", "gate", "rolling_back", "rollback_gate"}

    def upgrades(machine):
        return json.loads(machine.succeed("curl -sf 'http://127.0.0.1:9850/api/v1/upgrades?history=20'"))

    def push(machine, path):
        machine.succeed(f"ln -sfn {path} /var/lib/keyfleet-upgrade/candidate")

    start_all()

    with subtest("the fleet is up, linked, and runs release base"):
        for machine in machines:
            machine.wait_for_unit("keyfleet.service")
            machine.wait_until_succeeds(
                "curl -sf http://127.0.0.1:9850/api/v1/node"
                " | jq -e '[.links[] | select(.status == \"up\")] | length == 2'",
                timeout=120,
            )
            machine.succeed("test \"$(jq -r .release /etc/keyfleet/generation.json)\" = base")
        for i in range(200):
            node1.succeed(f"{cli} set before-{i} v{i} | grep -qx OK")
        paths = {}
        for machine in machines:
            paths[machine.name] = {
                kind: machine.succeed(f"readlink -f /run/current-system/specialisation/{kind}").strip()
                for kind in ("candidate", "broken")
            }

    with subtest("the candidate rolls across the fleet one node at a time, inside its window"):
        for machine in machines:
            push(machine, paths[machine.name]["candidate"])
            machine.systemctl("start --no-block keyfleet-upgrade.service")
        deadline = time.monotonic() + 900
        finished = {}
        while True:
            states = {m.name: upgrades(m) for m in machines}
            running = [n for n, s in states.items() if s["state"] in busy]
            assert len(running) <= 1, f"two nodes upgrading at once: {running}"
            for name, s in states.items():
                for a in s["history"]:
                    if a["release"] == "hz20" and a["phase"] == "done":
                        finished[name] = a
            if len(finished) == 3:
                break
            assert time.monotonic() < deadline, f"the rollout did not finish: {states}"
            time.sleep(1)
        for name, a in finished.items():
            assert a["outcome"] == "succeeded", a
            assert a["class"] == "engine_unchanged", a
            assert a["decision"].startswith("inside the window"), a
        order = sorted(finished, key=lambda n: finished[n]["started_at_unix"])
        assert order == ["node1", "node2", "node3"], order
        for earlier, later in zip(order, order[1:]):
            assert finished[later]["started_at_unix"] >= finished[earlier]["finished_at_unix"]
        for machine in machines:
            machine.succeed(f"{cli} config get hz | grep -qx 20")
            machine.succeed(f"{cli} get before-199 | grep -qx v199")
            machine.succeed("test \"$(jq -r .release /etc/keyfleet/generation.json)\" = hz20")

    with subtest("a broken candidate is rolled back on node1 and never tried elsewhere"):
        node1.succeed(f"{cli} set just-before yes | grep -qx OK")
        for machine in machines:
            push(machine, paths[machine.name]["broken"])
            machine.systemctl("start --no-block keyfleet-upgrade.service")
        node1.wait_until_succeeds(
            "curl -sf 'http://127.0.0.1:9850/api/v1/upgrades?history=1'"
            " | jq -e '.history[0].release == \"broken\" and .history[0].outcome == \"rolled_back\"'",
            timeout=600,
        )
        node1.wait_for_unit("keydb.service")
        node1.succeed("test \"$(jq -r .release /etc/keyfleet/generation.json)\" = hz20")
        node1.succeed(f"{cli} config get hz | grep -qx 20")
        for i in range(200):
            node1.succeed(f"{cli} get before-{i} | grep -qx v{i}")
        node1.succeed(f"{cli} get just-before | grep -qx yes")
        node1.succeed("curl -sf http://127.0.0.1:9850/metrics | grep -qx 'keyfleet_upgrade_rollbacks_total 1'")
        for machine in (node2, node3):
            machine.wait_until_succeeds(
                "curl -sf http://127.0.0.1:9850/api/v1/upgrades"
                " | jq -e '.pending.waiting_for == \"denied\" and (.pending.reason | contains(\"failed its gate on node1\"))'",
                timeout=120,
            )
            s = upgrades(machine)
            assert not [a for a in s["history"] if a["release"] == "broken"], s
            machine.succeed("test \"$(jq -r .release /etc/keyfleet/generation.json)\" = hz20")
            machine.succeed(f"{cli} get just-before | grep -qx yes")
  '';
}
