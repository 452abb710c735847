# services.keyfleet.backups: snapshots of the node's engine to S3 (the `[backups]` table
# of the daemon's TOML; the `backup` module of the crate does the work). A backup is
# BGSAVE, then the engine's RDB file streamed by multipart upload to
# s3://BUCKET/PREFIX/backups/FLEET/ID.rdb.zst, then its manifest beside it (ID.json):
# on demand (`keyfleet backup create`), and on a schedule, at each slot of which one node
# of the fleet backs up. `keyfleet backup restore ID --to HOST:PORT` loads one into an
# empty engine outside the fleet's mesh.
#
# The store is backups.s3, or, when that is null, the log store (services.keyfleet.logs.s3)
# with its credentials, which log shipping must then have. A lifecycle rule of the log
# store on PREFIX/ would expire backups too: give it each node's prefix (PREFIX/NODE/), or
# give backups a store or prefix of their own.
#
# The key writes the snapshots and manifests (s3:PutObject and the multipart calls), lists
# and reads them (s3:ListBucket, s3:GetObject: `keyfleet backup list`, restores), and,
# with retention (keepLast, keepWithin), deletes old ones (s3:DeleteObject). Without
# retention nothing is ever deleted.
#
# Who may do what in the engine's data directory, /var/lib/keydb (the engine service's
# StateDirectory=, also made by systemd-tmpfiles at boot and at every switch):
#   - the engine (user keydb) writes its RDB file there (`dbfilename`, dump.rdb by
#     default: Config::engine_rdb_path reads it from the data directory). With backups
#     its UMask is 0027, so the RDB file it writes is 0640, and the directory is 0750:
#     readable by the group keydb, not by the world;
#   - the daemon (user keyfleet, with keydb as a supplementary group: modules/keyfleet.nix)
#     reads the RDB file after its BGSAVE, through the group; it writes nothing there;
#   - nobody else.
# systemd leaves the mode of a StateDirectory= that exists already as it is (it only
# warns), so the tmpfiles rule is what turns an existing 0700 directory into 0750. The
# daemon's journal of an open upload (backup.json) and its restore history
# (restores.json) are in its own state directory, /var/lib/keyfleet.
#
# The daemon's engine user may run BGSAVE (src/engine/daemon.acl, modules/keydb-acl.nix).
#
# A restore loads by replication: the target engine connects back to the daemon on a port
# the system picks. The firewall (modules/firewall.nix) opens no such port, so from a
# fleet node restore into an engine on the node itself (`--to 127.0.0.1:PORT`,
# `--scratch`); one on another machine cannot connect back.
#
# In-fleet restores (`keyfleet backup restore ID --fleet`, `keyfleet backup rebuild`)
# act on each node's own engine as the restore user (backups.restore: an ACL user with
# the rules in src/engine/restore.acl, which modules/keydb-acl.nix creates); the node's
# engine connects to a listener of its daemon's on the address the daemon reaches it by
# (loopback), so that traffic stays on the node. The daemons ask each other through
# their APIs.
{ config, lib, ... }:

let
  cfg = config.services.keyfleet;
  bcfg = cfg.backups;
  klib = import ./lib.nix { inherit lib; };

  # The engine's data directory: modules/keydb.nix's StateDirectory= and the TOML's
  # engine.data_dir.
  dataDir = "/var/lib/keydb";

  # LoadCredential= names of backups.s3's keys (not the log store's: both may be set,
  # with different keys). The TOML names the files relative to $CREDENTIALS_DIRECTORY.
  accessKeyIdCredential = "backups-s3-access-key-id";
  secretAccessKeyCredential = "backups-s3-secret-access-key";
  # And of the age keys: the recipients are public, the identity is a secret.
  ageRecipientsCredential = "backups-age-recipients";
  ageIdentityCredential = "backups-age-identity";
  # And of the restore user's password.
  restorePasswordCredential = "backups-restore-password";

  inherit (klib) duration seconds;

  # src/schedule.rs: "every DURATION" (at least 10s), or "daily HH:MM [ZONE]". Whether
  # ZONE is in the tz database is known only on the host (/etc/zoneinfo): the daemon
  # refuses to start (exit 2, naming the zone) when it is not.
  scheduleProblem =
    s:
    let
      words = lib.filter (w: lib.isString w && w != "") (builtins.split "[[:space:]]+" s);
      n = lib.length words;
      first = lib.head words;
      second = lib.elemAt words 1;
      time = builtins.match "([0-9]{1,2}):([0-9]{1,2})" second;
      isDuration = builtins.match "([0-9]+)(\\.[0-9]+)?(ms|s|m|min|h|d)?" second != null;
    in
    if n == 2 && first == "every" then
      if !isDuration then
        "`${second}` is not a duration (\"6h\", \"30m\", \"1d\")"
      else if seconds second < 10 then
        "the period must be at least 10s"
      else
        null
    else if (n == 2 || n == 3) && first == "daily" then
      if
        time == null || lib.toIntBase10 (lib.head time) > 23 || lib.toIntBase10 (lib.elemAt time 1) > 59
      then
        "`${second}` is not a time of day HH:MM"
      else
        null
    else
      "expected \"every 6h\" or \"daily 02:30 Europe/Berlin\"";

  show = d: if builtins.isInt d then "${toString d}s" else d;

  # backups.s3, when set: the same checks as the log store's (modules/logs.nix), which
  # src/config/logs.rs `S3Config::problem` makes for both.
  # The checks src/config/backups.rs makes too, each with its own message.
  checks = [
    {
      assertion = builtins.match "[A-Za-z0-9._-]+" bcfg.fleet != null;
      message = "services.keyfleet.backups.fleet `${bcfg.fleet}` must be letters, digits, `-`, `_` or `.`: it is part of the object keys (PREFIX/backups/FLEET/).";
    }
    {
      assertion = seconds bcfg.bgsaveTimeout >= 1;
      message = "services.keyfleet.backups.bgsaveTimeout (${show bcfg.bgsaveTimeout}) must be at least 1s.";
    }
    {
      assertion = bcfg.keepLast != 0;
      message = "services.keyfleet.backups.keepLast (0) must be at least 1; null keeps every backup (unless keepWithin is set).";
    }
    {
      assertion = bcfg.keepWithin == null || seconds bcfg.keepWithin >= 3600;
      message = "services.keyfleet.backups.keepWithin (${show bcfg.keepWithin}) must be at least 1h.";
    }
    {
      assertion = bcfg.schedule == null || scheduleProblem bcfg.schedule == null;
      message = "services.keyfleet.backups.schedule `${bcfg.schedule}`: ${scheduleProblem bcfg.schedule}.";
    }
    {
      assertion = bcfg.s3 != null || cfg.logs.enable;
      message = "services.keyfleet.backups.s3 is null, which means sharing the log store (services.keyfleet.logs.s3), but services.keyfleet.logs.enable is false: enable log shipping, or give backups a store of their own in services.keyfleet.backups.s3.";
    }
  ]
  ++ lib.optionals (bcfg.s3 != null) (klib.storeChecks "services.keyfleet.backups.s3" bcfg.s3);

  s3Module = {
    options = {
      endpoint = lib.mkOption {
        type = lib.types.str;
        description = ''
          The S3 service: `https://host[:port]` (or `http://` on a trusted network), no
          path. Any S3-compatible store works (AWS, garage, MinIO, Ceph RGW, ...).
        '';
        example = "https://s3.eu-west-1.amazonaws.com";
      };
      region = lib.mkOption {
        type = lib.types.str;
        default = "us-east-1";
        description = "Region the requests are signed for (garage: its `s3_region`).";
      };
      bucket = lib.mkOption {
        type = lib.types.str;
        description = "Bucket the backups go to; it must exist.";
        example = "keyfleet-backups";
      };
      prefix = lib.mkOption {
        type = lib.types.str;
        default = "";
        description = ''
          Key prefix, without a leading or trailing `/`. Backups are named
          `PREFIX/backups/FLEET/ID.rdb.zst` and `PREFIX/backups/FLEET/ID.json`.
        '';
        example = "fleet-a";
      };
      pathStyle = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = ''
          Address the bucket in the path (`https://endpoint/bucket/key`), as garage and
          MinIO expect; false for `https://bucket.endpoint/key` (AWS's preferred form).
        '';
      };
      accessKeyIdFile = lib.mkOption {
        type = klib.secretFile;
        description = ''
          File holding the access key id. Handed to the daemon with `LoadCredential=`
          (as `${accessKeyIdCredential}`), never copied into the Nix store.
        '';
        example = "/run/secrets/keyfleet/backups-s3-access-key-id";
      };
      secretAccessKeyFile = lib.mkOption {
        type = klib.secretFile;
        description = ''
          File holding the secret access key; handed over with `LoadCredential=` (as
          `${secretAccessKeyCredential}`).
        '';
        example = "/run/secrets/keyfleet/backups-s3-secret-access-key";
      };
    };
  };
in
{
  options.services.keyfleet.backups = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = ''
        Whether to back the engine up to S3: on demand (`keyfleet backup create`,
        `POST /api/v1/backups`) and, with {option}`services.keyfleet.backups.schedule`, on
        a schedule. The daemon reads the engine's RDB file in ${dataDir}, which becomes
        readable by the engine's group (the directory 0750, the engine's UMask 0027),
        never by the world.
      '';
    };

    fleet = lib.mkOption {
      type = lib.types.str;
      default = "default";
      description = ''
        Names the fleet in object keys (`PREFIX/backups/FLEET/`): letters, digits, `-`,
        `_` and `.`. Every node of a fleet gives the same one.
      '';
      example = "fleet-a";
    };

    compression = lib.mkOption {
      type = lib.types.enum [
        "zstd"
        "none"
      ];
      default = "zstd";
      description = "How snapshots are stored: `zstd` (`ID.rdb.zst`) or `none` (`ID.rdb`).";
    };

    bgsaveTimeout = lib.mkOption {
      type = duration;
      default = "1h";
      description = "How long the engine's BGSAVE may take before the backup gives up (at least 1s).";
    };

    schedule = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        When scheduled backups run: `"every 6h"` (slots aligned to the Unix epoch; at
        least 10s apart) or `"daily 02:30 Asia/Kolkata"` (a wall-clock time in an IANA
        zone of the host's tz database, UTC when none is given). At each slot one node
        of the fleet backs up: the first in name order whose daemon answers with its
        engine up. Every node must give the same schedule. Null: on demand only.
      '';
      example = "daily 02:30 Asia/Kolkata";
    };

    keepLast = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.u32;
      default = null;
      description = ''
        Retention, applied by the node that backed up: keep the newest N complete backups
        of the fleet (at least 1). A backup this or
        {option}`services.keyfleet.backups.keepWithin` keeps is kept, and the newest is
        never deleted; with both null nothing is deleted.
      '';
      example = 14;
    };

    keepWithin = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "Retention: keep the complete backups younger than this (at least 1h).";
      example = "30d";
    };

    encryption = {
      recipientsFile = lib.mkOption {
        type = lib.types.nullOr lib.types.path;
        default = null;
        description = ''
          Encrypt backups with age to the X25519 recipients in this file (public keys,
          `age1...`, one per line, `#` comments), so a leaked bucket leaks nothing. Public
          keys: the file may be in the store. Null: backups are not encrypted.
        '';
        example = lib.literalExpression "./backup-recipients.txt";
      };
      identityFile = lib.mkOption {
        type = lib.types.nullOr klib.secretFile;
        default = null;
        description = ''
          File holding the age identity (`AGE-SECRET-KEY-1...`) that restores encrypted
          backups; handed over with `LoadCredential=` (as `${ageIdentityCredential}`).
          Only nodes that restore need it; without it they refuse an encrypted backup.
        '';
        example = "/run/secrets/keyfleet/backup-age-identity";
      };
    };

    restore = {
      user = lib.mkOption {
        type = klib.aclUserName;
        default = "keyfleet-restore";
        description = ''
          ACL user of the engine that fleet restores and node rebuilds
          (`keyfleet backup restore ID --fleet`, `keyfleet backup rebuild`) act as, on
          every node: it turns `replica-read-only` on and off (`CONFIG SET`), reads
          `active-replica` and `masterauth` (`CONFIG GET`), cuts and restores
          replication links (`REPLICAOF`) and reads keys to compare the nodes afterwards
          (`SCAN`, `DUMP`): the rules in `src/engine/restore.acl`. Nothing else uses it.
          A user of its own: not the daemon's, the replication or an application user.
        '';
      };
      passwordFile = lib.mkOption {
        type = lib.types.nullOr klib.secretFile;
        default = null;
        description = ''
          File holding the restore user's password (letters, digits and `._~+/=-`, as
          `openssl rand -base64 32` makes). When set, the engine gets the user (its
          password stored as SHA-256 only) and the daemon its password with
          `LoadCredential=` (as `${restorePasswordCredential}`). Setting it restarts the
          engine once: it writes its ACL users when it starts. Null: no restore user,
          and on an engine with ACLs (as this module makes it) fleet restore and node
          rebuild are refused with `restore_no_permission` before anything changes, the
          daemon's own engine user lacking those rules. Restores outside the fleet
          (`--to`, `--scratch`) do not need it.
        '';
        example = "/run/secrets/keyfleet/backups-restore-password";
      };
    };

    s3 = lib.mkOption {
      type = lib.types.nullOr (lib.types.submodule s3Module);
      default = null;
      description = ''
        The store backups go to. Null: the log store,
        {option}`services.keyfleet.logs.s3`, with its credentials (log shipping must then
        be enabled). Other daemon settings of the store (`timeout`) go in
        `services.keyfleet.settings.backups.s3` when this is set.
      '';
      example = lib.literalExpression ''
        {
          endpoint = "https://s3.eu-west-1.amazonaws.com";
          region = "eu-west-1";
          bucket = "keyfleet-backups";
          pathStyle = false;
          accessKeyIdFile = "/run/secrets/keyfleet/backups-s3-access-key-id";
          secretAccessKeyFile = "/run/secrets/keyfleet/backups-s3-secret-access-key";
        }
      '';
    };
  };

  config = lib.mkIf (cfg.enable && bcfg.enable) {
    assertions = checks;

    services.keyfleet.settings.backups = {
      inherit (bcfg) fleet compression;
      bgsave_timeout = bcfg.bgsaveTimeout;
    }
    // lib.optionalAttrs (bcfg.schedule != null) { inherit (bcfg) schedule; }
    // lib.optionalAttrs (bcfg.keepLast != null) { keep_last = bcfg.keepLast; }
    // lib.optionalAttrs (bcfg.encryption.recipientsFile != null) {
      age_recipients_file = ageRecipientsCredential;
    }
    // lib.optionalAttrs (bcfg.encryption.identityFile != null) {
      age_identity_file = ageIdentityCredential;
    }
    // lib.optionalAttrs (bcfg.keepWithin != null) { keep_within = bcfg.keepWithin; }
    // lib.optionalAttrs (bcfg.restore.passwordFile != null) {
      restore_user = bcfg.restore.user;
      restore_password_file = restorePasswordCredential;
    }
    // lib.optionalAttrs (bcfg.s3 != null) {
      s3 = {
        inherit (bcfg.s3)
          endpoint
          region
          bucket
          prefix
          ;
        path_style = bcfg.s3.pathStyle;
        access_key_id_file = accessKeyIdCredential;
        secret_access_key_file = secretAccessKeyCredential;
      };
    };

    # The data directory is group-readable from boot on, and an existing 0700 one is
    # changed (systemd would leave it as it is).
    systemd.tmpfiles.rules = [ "d ${dataDir} 0750 keydb keydb - -" ];

    systemd.services.keydb.serviceConfig = {
      # modules/keydb.nix defaults it to 0700.
      StateDirectoryMode = "0750";
      # The RDB file 0640: the daemon reads it through the group.
      UMask = "0027";
    };

    systemd.services.keyfleet.serviceConfig.LoadCredential =
      lib.optionals (bcfg.s3 != null) [
        "${accessKeyIdCredential}:${bcfg.s3.accessKeyIdFile}"
        "${secretAccessKeyCredential}:${bcfg.s3.secretAccessKeyFile}"
      ]
      ++ lib.optional (
        bcfg.encryption.recipientsFile != null
      ) "${ageRecipientsCredential}:${bcfg.encryption.recipientsFile}"
      ++ lib.optional (
        bcfg.encryption.identityFile != null
      ) "${ageIdentityCredential}:${bcfg.encryption.identityFile}"
      ++ lib.optional (
        bcfg.restore.passwordFile != null
      ) "${restorePasswordCredential}:${bcfg.restore.passwordFile}";
  };
}
