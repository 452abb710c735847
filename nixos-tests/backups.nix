# Fleet restore, against garage on a host of its own (./garage.nix): three KeyDB nodes in
# multi-master back up to one bucket (services.keyfleet.backups.s3). A backup of node1
# lands in the bucket; a key is deleted and FLUSHALL empties every node; `keyfleet
# backup restore ID --fleet --yes`, asked of node2, brings every node back to exactly
# the backup's keys, the deleted key with the value the backup had, and nothing written
# after it; the nodes take writes again and replicate them, and the restored key stays.
#
# Each node's engine has the restore user (services.keyfleet.backups.restore), which
# the restore acts as on every node; the daemons ask each other through their APIs, on
# the network with a token. garage makes the S3 key at run time; the test script copies
# it to every node as two files in /run/keyfleet-test (a tmpfs, never the store), and
# starts the daemons only then, as sops-nix would have decrypted them before boot.
let
  fleet = [
    "node1"
    "node2"
    "node3"
  ];
  mkNode = import ./common.nix { inherit fleet; };

  bucket = "keyfleet-backups";
  prefix = "fleet-a";
  region = "garage";
  keyDir = "/run/keyfleet-test";
  backupFleet = "vm-fleet";

  node =
    name:
    {
      config,
      lib,
      nodes,
      ...
    }:
    {
      imports = [
        (mkNode name)
        (import ./secrets.nix {
          api-token = "backups-test-token";
          admin-password = "admin-secret";
          restore-password = "restore-secret";
        })
      ];
      services.keyfleet = {
        # The coordinating daemon runs each step of a fleet restore on its peers through
        # their APIs.
        api = {
          listenAddress = config.networking.primaryIPAddress;
          tokenFile = "/etc/keyfleet-test/api-token";
        };
        # A user that may run FLUSHALL and INFO.
        engine.users.admin = {
          passwordFile = "/etc/keyfleet-test/admin-password";
          rules = [
            "~*"
            "&*"
            "+@all"
          ];
        };
        backups = {
          enable = true;
          fleet = backupFleet;
          s3 = {
            endpoint = "http://${nodes.s3.networking.primaryIPAddress}:3900";
            inherit region bucket prefix;
            accessKeyIdFile = "${keyDir}/backups-s3-access-key-id";
            secretAccessKeyFile = "${keyDir}/backups-s3-secret-access-key";
          };
          # The user is keyfleet-restore, the default.
          restore.passwordFile = "/etc/keyfleet-test/restore-password";
        };
      };
      # Started by the test script once the key is in keyDir.
      systemd.services.keyfleet.wantedBy = lib.mkForce [ ];
    };
in
{
  name = "keyfleet-backups";

  nodes = {
    s3 = import ./garage.nix { inherit region; };
    node1 = node "node1";
    node2 = node "node2";
    node3 = node "node3";
  };

  testScript =
    { nodes, ... }:
    ''
      import json
      import re

      cli = "keydb-cli --no-auth-warning --user app --pass app-secret -h 127.0.0.1"
      admin = "keydb-cli --no-auth-warning --user admin --pass admin-secret -h 127.0.0.1"
      restorer = "keydb-cli --no-auth-warning --user keyfleet-restore --pass restore-secret -h 127.0.0.1"
      fleet = [node1, node2, node3]
      # Where each daemon's API listens.
      api = {
          "node1": "http://${nodes.node1.networking.primaryIPAddress}:9850",
          "node2": "http://${nodes.node2.networking.primaryIPAddress}:9850",
          "node3": "http://${nodes.node3.networking.primaryIPAddress}:9850",
      }
      token_file = "/etc/keyfleet-test/api-token"


      def first_group(pattern, text):
          found = re.search(pattern, text, re.IGNORECASE)
          assert found, f"{pattern!r} not in {text!r}"
          return found.group(1)


      def keyfleet(machine, args):
          """`keyfleet ARGS --json` against MACHINE's own daemon; its output."""
          return machine.succeed(
              f"keyfleet {args} --api {api[machine.name]} --token-file {token_file} --json"
          )


      def links_up(machine, count):
          machine.wait_until_succeeds(
              f"curl -sf -H \"Authorization: Bearer $(cat {token_file})\""
              f" {api[machine.name]}/api/v1/node"
              f" | jq -e '[.links[] | select(.status == \"up\")] | length == {count}'",
              timeout=120,
          )


      def keyspace(machine):
          """Keys per database ({"db0": n, ...}) as INFO keyspace lists them: the empty
          ones are left out, as in a backup's manifest."""
          info = machine.succeed(f"{admin} info keyspace")
          return {f"db{db}": int(n) for db, n in re.findall(r"^db(\d+):keys=(\d+)", info, re.M)}


      def keyspace_is(keys):
          """Shell: succeeds when INFO keyspace lists exactly KEYS."""
          listed = " ".join(f"{db}:keys={n}" for db, n in sorted(keys.items()))
          return (
              f"test \"$({admin} info keyspace | grep -o '^db[0-9]*:keys=[0-9]*' | xargs)\""
              f" = '{listed}'"
          )


      start_all()

      with subtest("garage: a layout, a bucket, and a key for the fleet"):
          s3.wait_for_unit("garage.service")
          s3.wait_for_open_port(3901)
          s3.wait_for_open_port(3900)
          node_id = first_group(r"([0-9a-f]+)@", s3.wait_until_succeeds("garage node id", timeout=60))
          s3.succeed(f"garage layout assign -z dc1 -c 1G {node_id}")
          s3.succeed("garage layout apply --version 1")
          s3.succeed("garage bucket create ${bucket}")
          key = s3.succeed("garage key create keyfleet-fleet")
          key_id = first_group(r"Key ID:\s*(\S+)", key)
          secret = first_group(r"Secret key:\s*(\S+)", key)
          s3.succeed("garage bucket allow --read --write ${bucket} --key keyfleet-fleet")

      with subtest("the key reaches every node as files, and the daemons start"):
          for machine in fleet:
              machine.wait_for_unit("keydb.service")
              machine.succeed(
                  "install -d -m 0700 ${keyDir}"
                  f" && (umask 077 && printf %s {key_id} > ${keyDir}/backups-s3-access-key-id"
                  f" && printf %s {secret} > ${keyDir}/backups-s3-secret-access-key)"
              )
              machine.systemctl("start keyfleet.service")
          for machine in fleet:
              machine.wait_for_unit("keyfleet.service")
              links_up(machine, 2)

      with subtest("every engine has the restore user, which may not write"):
          for machine in fleet:
              machine.succeed(f"{admin} acl list | grep -q '^user keyfleet-restore on '")
              machine.succeed(f"{restorer} set not-allowed 1 | grep -q NOPERM")

      with subtest("writes on the nodes reach every node"):
          node1.succeed(f"{cli} mset $(seq 1 500 | sed 's/.*/key-& value-&/') | grep -qx OK")
          node2.succeed(f"{cli} set doomed as-backed-up | grep -qx OK")
          node3.succeed(f"{cli} -n 3 set key-in-db3 value | grep -qx OK")
          keys = {"db0": 501, "db3": 1}
          for machine in fleet:
              machine.wait_until_succeeds(keyspace_is(keys), timeout=60)

      with subtest("a backup of node1 lands in the bucket"):
          created = json.loads(keyfleet(node1, "backup create --wait 10m"))
          assert created["state"] == "complete", created
          manifest = created["manifest"]
          backup_id = manifest["id"]
          assert manifest["node"] == "node1" and manifest["fleet"] == "${backupFleet}", manifest
          assert manifest["keys"] == keys, f"{manifest['keys']} != {keys}"
          assert manifest["object"] == f"${prefix}/backups/${backupFleet}/{backup_id}.rdb.zst", manifest
          listed = json.loads(keyfleet(node3, "backup list"))
          assert backup_id in [b["id"] for b in listed["backups"]], listed

      with subtest("after the backup: a key deleted, one written, then FLUSHALL everywhere"):
          node3.succeed(f"{cli} del doomed | grep -qx 1")
          node1.succeed(f"{cli} set written-after-backup yes | grep -qx OK")
          for machine in fleet:
              machine.wait_until_succeeds(f"test -z \"$({cli} get doomed)\"", timeout=60)
              machine.wait_until_succeeds(f"{cli} get written-after-backup | grep -qx yes", timeout=60)
          node2.succeed(f"{admin} flushall | grep -qx OK")
          for machine in fleet:
              machine.wait_until_succeeds(keyspace_is({}), timeout=60)

      with subtest("a fleet restore asked of node2 brings every node back to the backup"):
          record = json.loads(
              keyfleet(node2, f"backup restore {backup_id} --fleet --yes --wait 20m")
          )
          assert record["outcome"] == "complete", record
          assert record["mode"] == "fleet" and record["backup"] == backup_id, record
          assert record["keys"] == keys and record["backup_keys"] == keys, record
          for machine in fleet:
              assert keyspace(machine) == keys, f"{machine.name}: {keyspace(machine)} != {keys}"
              machine.succeed(f"test \"$({cli} dbsize)\" = {keys['db0']}")
              machine.succeed(f"{cli} get doomed | grep -qx as-backed-up")
              machine.succeed(f"{cli} get key-500 | grep -qx value-500")
              machine.succeed(f"{cli} -n 3 get key-in-db3 | grep -qx value")
              machine.succeed(f"test -z \"$({cli} get written-after-backup)\"")
          history = json.loads(keyfleet(node2, "backup history"))
          assert [r["outcome"] for r in history["restores"] if r["backup"] == backup_id] == [
              "complete"
          ], history

      with subtest("every node takes writes again, and the restored key stays as the backup had it"):
          for machine in fleet:
              machine.succeed(f"{cli} set after-restore-{machine.name} yes | grep -qx OK")
          for machine in fleet:
              for other in fleet:
                  machine.wait_until_succeeds(
                      f"{cli} get after-restore-{other.name} | grep -qx yes", timeout=60
                  )
          for machine in fleet:
              links_up(machine, 2)
              machine.succeed(f"test \"$({cli} dbsize)\" = {keys['db0'] + len(fleet)}")
              machine.succeed(f"{cli} get doomed | grep -qx as-backed-up")
              machine.succeed(f"test -z \"$({cli} get written-after-backup)\"")
    '';
}
