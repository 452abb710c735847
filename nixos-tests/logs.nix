# Log shipping to S3, against garage on a host of its own (./garage.nix). The engine's
# log (DEBUG LOG markers) and the daemon's access log reach the bucket as zstd segments
# under PREFIX/NODE/SOURCE/YYYY/MM/DD/; with garage stopped, new segments wait on the
# node and `keyfleet logs flush` fails (exit 1, "shipped": false); with garage started
# again, they arrive.
#
# Backups share the log store (services.keyfleet.backups.s3 is null): `keyfleet backup
# create` puts a zstd snapshot and its manifest under PREFIX/backups/FLEET/, reading the
# engine's RDB file through the keydb group, and `keyfleet backup restore ID --to
# 127.0.0.1:PORT` loads it into an empty keydb-server started in the VM on a spare port
# (no persistence, outside the mesh), which then has the same keys.
#
# garage makes the S3 key at run time (`garage key create`); the test script copies it
# to node1 as two files in /run/keyfleet-test (a tmpfs, never the store), and starts the
# daemon only then, as sops-nix would have decrypted them before boot.
let
  mkNode = import ./common.nix { fleet = [ "node1" ]; };

  bucket = "keyfleet-logs";
  prefix = "fleet-a";
  region = "garage";
  keyDir = "/run/keyfleet-test";
  fleet = "vm-fleet";
  # The empty engine a backup is restored into: not node1's own (6379), no persistence.
  restorePort = 6390;
in
{
  name = "keyfleet-logs";

  nodes = {
    s3 = import ./garage.nix { inherit region; };

    node1 =
      { lib, nodes, ... }:
      {
        imports = [
          (mkNode "node1")
          (import ./secrets.nix { admin-password = "admin-secret"; })
        ];
        services.keyfleet = {
          # A user that may run DEBUG LOG, which writes a line into the engine's log.
          engine.users.admin = {
            passwordFile = "/etc/keyfleet-test/admin-password";
            rules = [
              "~*"
              "&*"
              "+@all"
            ];
          };
          logs = {
            enable = true;
            s3 = {
              endpoint = "http://${nodes.s3.networking.primaryIPAddress}:3900";
              inherit region bucket prefix;
              accessKeyIdFile = "${keyDir}/logs-s3-access-key-id";
              secretAccessKeyFile = "${keyDir}/logs-s3-secret-access-key";
            };
          };
          # Not an option of its own: whatever the typed options leave out goes here.
          settings.logs.retry_max_interval = "5s";
          # In the log store. A schedule (whose time zone the daemon must find in the
          # host's tz database through its sandbox to start at all) and retention that
          # keeps every backup this test makes.
          backups = {
            enable = true;
            inherit fleet;
            schedule = "daily 03:00 Asia/Kolkata";
            keepLast = 5;
            keepWithin = "30d";
          };
        };
        # Started by the test script once the key is in keyDir.
        systemd.services.keyfleet.wantedBy = lib.mkForce [ ];
      };
  };

  testScript = ''
    import json
    import re

    admin = "keydb-cli --no-auth-warning --user admin --pass admin-secret -h 127.0.0.1"
    api = "http://127.0.0.1:9850"


    def first_group(pattern, text):
        found = re.search(pattern, text, re.IGNORECASE)
        assert found, f"{pattern!r} not in {text!r}"
        return found.group(1)


    def metric(name, labels=""):
        """Shell: the sum of node1's samples of NAME whose labels match LABELS."""
        return (
            f"curl -sf {api}/metrics | awk '$1 ~ /^{name}([{{]|$)/ && $1 ~ /{labels}/"
            " {s += $2} END {print s + 0}'"
        )


    def write_markers(n):
        node1.succeed(f"{admin} debug log marker-engine-{n} | grep -qx OK")
        # A route that does not exist: its path lands in the access log all the same.
        node1.succeed(f"curl -s -o /dev/null {api}/api/v1/marker-access-{n}")
        node1.succeed(f"curl -sf -o /dev/null {api}/api/v1/node")


    def fetched(source):
        """Everything node1 shipped for SOURCE, decompressed. Every object must be a
        whole zstd segment named PREFIX/node1/SOURCE/YYYY/MM/DD/SEGMENT.log.zst."""
        s3.succeed(
            "rm -rf /tmp/fetched && mkdir /tmp/fetched"
            " && mc mirror --quiet garage/${bucket} /tmp/fetched"
        )
        objects = s3.succeed(
            f"cd /tmp/fetched && find ${prefix}/node1/{source} -type f | sort"
        ).split()
        assert objects, f"no {source} segment in the bucket"
        for o in objects:
            assert re.fullmatch(
                rf"${prefix}/node1/{source}/\d{{4}}/\d{{2}}/\d{{2}}/[^/]+\.log\.zst", o
            ), f"unexpected object name {o}"
        files = " ".join(objects)
        s3.succeed(f"cd /tmp/fetched && zstd -tq {files}")
        return s3.succeed(f"cd /tmp/fetched && zstdcat {files}")


    def keyspace(cli):
        """Keys per database ({"db0": n, ...}) as INFO keyspace lists them: the empty
        ones are left out, as in a backup's manifest."""
        info = node1.succeed(f"{cli} info keyspace")
        return {f"db{db}": int(n) for db, n in re.findall(r"^db(\d+):keys=(\d+)", info, re.M)}


    start_all()

    with subtest("garage: a layout, a bucket, and a key for node1"):
        s3.wait_for_unit("garage.service")
        s3.wait_for_open_port(3901)
        s3.wait_for_open_port(3900)
        node_id = first_group(r"([0-9a-f]+)@", s3.wait_until_succeeds("garage node id", timeout=60))
        s3.succeed(f"garage layout assign -z dc1 -c 1G {node_id}")
        s3.succeed("garage layout apply --version 1")
        s3.succeed("garage bucket create ${bucket}")
        key = s3.succeed("garage key create keyfleet-node1")
        key_id = first_group(r"Key ID:\s*(\S+)", key)
        secret = first_group(r"Secret key:\s*(\S+)", key)
        s3.succeed("garage bucket allow --read --write ${bucket} --key keyfleet-node1")
        s3.succeed(f"mc alias set garage http://127.0.0.1:3900 {key_id} {secret} --api S3v4")

    with subtest("the engine logs into its directory, readable by its group only"):
        node1.wait_for_unit("keydb.service")
        node1.succeed(f"{admin} debug log marker-engine-0 | grep -qx OK")
        node1.succeed("test \"$(stat -c %a:%U:%G /var/log/keydb)\" = 2770:keydb:keydb")
        node1.succeed("test \"$(stat -c %a:%U:%G /var/log/keydb/engine.log)\" = 640:keydb:keydb")
        node1.succeed("grep -q marker-engine-0 /var/log/keydb/engine.log")
        node1.fail("runuser -u nobody -- cat /var/log/keydb/engine.log")

    with subtest("the key reaches node1 as files, and the daemon starts"):
        node1.succeed(
            "install -d -m 0700 ${keyDir}"
            f" && (umask 077 && printf %s {key_id} > ${keyDir}/logs-s3-access-key-id"
            f" && printf %s {secret} > ${keyDir}/logs-s3-secret-access-key)"
        )
        node1.systemctl("start keyfleet.service")
        node1.wait_for_unit("keyfleet.service")
        node1.wait_for_open_port(9850)
        node1.succeed("test \"$(systemctl show -P User keyfleet.service)\" = keyfleet")

    with subtest("engine and access log lines reach the bucket as zstd segments"):
        write_markers(1)
        node1.succeed("keyfleet logs flush --json | tee /dev/stderr | jq -e '.nodes | all(.shipped)'")
        engine = fetched("engine")
        assert "marker-engine-0" in engine and "marker-engine-1" in engine, engine
        assert "marker-access-1" in fetched("access")
        print(node1.succeed("keyfleet logs status --json | jq -e ."))
        node1.succeed(f"test \"$({metric('keyfleet_logship_last_success_timestamp_seconds')})\" != 0")
        node1.succeed(f"test \"$({metric('keyfleet_logship_uploaded_segments_total', 'source=.engine.')})\" != 0")

    with subtest("with garage stopped, new segments wait on node1 and flush fails"):
        s3.systemctl("stop garage.service")
        write_markers(2)
        node1.fail("keyfleet logs flush --json --wait 30s > /tmp/flush.json")
        node1.succeed("jq -e '.nodes[0].shipped == false' /tmp/flush.json")
        node1.succeed(f"test \"$({metric('keyfleet_logship_queue_files', 'source=.engine.')})\" != 0")
        node1.succeed(f"test \"$({metric('keyfleet_errors_total', 'code=.s3_unreachable.')})\" != 0")

    with subtest("garage back: the waiting segments arrive"):
        s3.systemctl("start garage.service")
        s3.wait_for_open_port(3900)
        node1.wait_until_succeeds(
            f"test \"$({metric('keyfleet_logship_queue_files')})\" = 0", timeout=180
        )
        node1.succeed("keyfleet logs flush --json | jq -e '.nodes | all(.shipped)'")
        assert "marker-engine-2" in fetched("engine")
        assert "marker-access-2" in fetched("access")
        node1.succeed(f"test \"$({metric('keyfleet_logship_dropped_bytes_total')})\" = 0")

    with subtest("backups: the engine's data directory is open to its group only"):
        node1.succeed("test \"$(stat -c %a:%U:%G /var/lib/keydb)\" = 750:keydb:keydb")
        node1.succeed(f"test \"$({metric('keyfleet_backup_schedule_period_seconds')})\" = 86400")

    with subtest("backups: an on-demand backup lands in the bucket, snapshot and manifest"):
        node1.succeed(f"{admin} debug populate 1000 backup-key 32 | grep -qx OK")
        node1.succeed(f"{admin} -n 3 set key-in-db3 value | grep -qx OK")
        keys = keyspace(admin)
        assert keys == {"db0": 1000, "db3": 1}, keys
        created = json.loads(node1.succeed("keyfleet backup create --json --wait 10m"))
        assert created["state"] == "complete", created
        manifest = created["manifest"]
        backup_id = manifest["id"]
        assert re.fullmatch(r"\d{8}T\d{6}Z-node1", backup_id), backup_id
        assert manifest["fleet"] == "${fleet}" and manifest["node"] == "node1", manifest
        assert manifest["keys"] == keys, f"{manifest['keys']} != {keys}"
        base = f"${prefix}/backups/${fleet}/{backup_id}"
        assert manifest["object"] == f"{base}.rdb.zst", manifest

        # The RDB file the daemon read: 0640, group keydb, closed to the world.
        node1.succeed("test \"$(stat -c %a:%U:%G /var/lib/keydb/dump.rdb)\" = 640:keydb:keydb")
        node1.fail("runuser -u nobody -- cat /var/lib/keydb/dump.rdb")
        node1.succeed("test -f /var/lib/keyfleet/backup.json")
        node1.succeed(f"test \"$({metric('keyfleet_backup_last_success_timestamp_seconds')})\" != 0")

        s3.succeed(
            "rm -rf /tmp/fetched && mkdir /tmp/fetched"
            " && mc mirror --quiet garage/${bucket} /tmp/fetched"
        )
        objects = s3.succeed("cd /tmp/fetched && find ${prefix}/backups -type f | sort").split()
        assert f"{base}.rdb.zst" in objects and f"{base}.json" in objects, objects
        s3.succeed(f"cd /tmp/fetched && zstd -tq {base}.rdb.zst")
        # The stored object is the manifest's: its size and SHA-256, and the RDB inside.
        s3.succeed(f"test \"$(stat -c %s /tmp/fetched/{base}.rdb.zst)\" = {manifest['stored_bytes']}")
        s3.succeed(
            f"test \"$(sha256sum < /tmp/fetched/{base}.rdb.zst | cut -d' ' -f1)\""
            f" = {manifest['stored_sha256']}"
        )
        s3.succeed(
            f"test \"$(zstdcat /tmp/fetched/{base}.rdb.zst | sha256sum | cut -d' ' -f1)\""
            f" = {manifest['rdb_sha256']}"
        )
        stored = json.loads(s3.succeed(f"cat /tmp/fetched/{base}.json"))
        assert stored == manifest, f"{stored} != {manifest}"
        listed = json.loads(node1.succeed("keyfleet backup list --json"))
        assert backup_id in [b["id"] for b in listed["backups"]], listed

    with subtest("backups: restored into an empty engine outside the mesh, the same keys"):
        target = "keydb-cli -h 127.0.0.1 -p ${toString restorePort}"
        node1.succeed(
            "install -d -m 0700 /tmp/restore-target"
            " && printf '%s\\n' 'port ${toString restorePort}' 'bind 127.0.0.1'"
            " 'save \"\"' 'appendonly no' 'dir /tmp/restore-target'"
            " > /tmp/restore-target/engine.conf"
            " && systemd-run --unit=restore-target"
            " \"$(command -v keydb-server)\" /tmp/restore-target/engine.conf"
        )
        node1.wait_for_open_port(${toString restorePort}, "127.0.0.1", timeout=60)
        assert keyspace(target) == {}, "the restore target is not empty"
        record = json.loads(
            node1.succeed(
                f"keyfleet backup restore {backup_id} --to 127.0.0.1:${toString restorePort}"
                " --json --wait 10m"
            )
        )
        assert record["outcome"] == "complete", record
        assert record["keys"] == keys and record["backup_keys"] == keys, record
        assert keyspace(target) == keys, f"{keyspace(target)} != {keys}"
        # A master again, replicating from nobody, and node1's own data untouched.
        node1.succeed(f"{target} info replication | grep -q '^role:master'")
        assert keyspace(admin) == keys
        node1.succeed("test -f /var/lib/keyfleet/restores.json")
        history = json.loads(node1.succeed("keyfleet backup history --json"))
        assert [r["outcome"] for r in history["restores"] if r["backup"] == backup_id] == [
            "complete"
        ], history
  '';
}
