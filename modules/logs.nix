# services.keyfleet.logs: the engine's log and the daemon's own (access.log, daemon.log),
# rotated by the daemon and shipped to an S3 bucket (the `[logs]` table of the daemon's
# TOML; the `logship` module of the crate does the work).
#
# Who may do what in the log directory, /var/log/keydb (the engine service's
# LogsDirectory=, mode 2770 keydb:keydb, also made by systemd-tmpfiles at boot):
#   - the engine (user keydb) writes engine.log there; it opens the file anew for every
#     line, so once the daemon has renamed it the next line starts a new one. Its UMask
#     is 0027, so the log is 0640: readable by the group, not by the world;
#   - the daemon (user keyfleet, with keydb as a supplementary group) reads engine.log,
#     renames it, and creates access.log, daemon.log and segments/ beside it: the
#     directory is group-writable, and setgid, so everything in it stays group keydb.
#     It is the only path outside its state directory (/var/lib/keyfleet) the daemon
#     may write; the rest of its sandbox is as without logs (modules/keyfleet.nix);
#   - nobody else: the directory is closed to the world.
# The daemon's state (the upload journal) is in /var/lib/keyfleet (StateDirectory=).
#
# Objects land at s3://BUCKET/PREFIX/NODE/SOURCE/YYYY/MM/DD/SEGMENT.log.zst (SOURCE is
# engine, access or daemon; .log.gz with gzip). The daemon never deletes anything in the
# bucket: expiry is the bucket's own lifecycle rule. One that keeps logs 90 days and
# cleans up the parts of uploads a crash left behind (aws s3api
# put-bucket-lifecycle-configuration --bucket BUCKET --lifecycle-configuration file://rule.json):
#
#   {"Rules": [{"ID": "keyfleet-logs", "Status": "Enabled",
#               "Filter": {"Prefix": "PREFIX/"},
#               "Expiration": {"Days": 90},
#               "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}
#
# The key uploads and never deletes: on AWS it needs s3:PutObject (which covers
# multipart uploads) and s3:AbortMultipartUpload on arn:aws:s3:::BUCKET/PREFIX/*, and no
# s3:DeleteObject, so a node cannot erase what was shipped.
{ config, lib, ... }:

let
  cfg = config.services.keyfleet;
  lcfg = cfg.logs;
  klib = import ./lib.nix { inherit lib; };
  inherit (import ./engine-conf.nix { inherit lib; }) parseSize quote;
  inherit (klib) logsDir engineLogfile;

  # LoadCredential= names. The TOML names the files relative to $CREDENTIALS_DIRECTORY.
  accessKeyIdCredential = "logs-s3-access-key-id";
  secretAccessKeyCredential = "logs-s3-secret-access-key";

  show = v: if builtins.isInt v then "${toString v} bytes" else v;

  # The checks src/config/logs.rs makes too, each with its own message.
  inherit (lcfg) s3 rotate maxLocalBytes;
  checks = klib.storeChecks "services.keyfleet.logs.s3" s3 ++ [
    {
      assertion = parseSize s3.partSize >= 5 * 1024 * 1024;
      message = "services.keyfleet.logs.s3.partSize (${show s3.partSize}) must be at least 5MiB, S3's smallest part.";
    }
    {
      assertion = parseSize rotate.maxSize >= 4096;
      message = "services.keyfleet.logs.rotate.maxSize (${show rotate.maxSize}) must be at least 4KiB.";
    }
    {
      assertion = klib.seconds rotate.maxAge >= 1;
      message = "services.keyfleet.logs.rotate.maxAge (${toString rotate.maxAge}) must be at least 1s.";
    }
    {
      assertion = parseSize maxLocalBytes >= 2 * parseSize rotate.maxSize;
      message = "services.keyfleet.logs.maxLocalBytes (${show maxLocalBytes}) must be at least twice services.keyfleet.logs.rotate.maxSize (${show rotate.maxSize}): a smaller budget could not hold a closed segment while the next one fills, and every segment would be dropped.";
    }
    {
      assertion = (cfg.engine.settings.logfile or null) == quote engineLogfile;
      message = "services.keyfleet.engine.settings.logfile cannot be set with services.keyfleet.logs.enable: the engine must log to ${engineLogfile}, the file the daemon rotates and ships.";
    }
  ];
in
{
  options.services.keyfleet.logs = {
    enable = lib.mkEnableOption "rotating the engine's and the daemon's logs in ${logsDir} and shipping them to S3 (without it, the engine logs to the journal)";

    s3 = {
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
        description = ''
          Bucket the logs go to; it must exist. keyfleet never deletes from it: give it a
          lifecycle rule that expires old logs and aborts incomplete multipart uploads,
          e.g. `{"Rules": [{"ID": "keyfleet-logs", "Status": "Enabled", "Filter":
          {"Prefix": "PREFIX/"}, "Expiration": {"Days": 90},
          "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}` (with `aws
          s3api put-bucket-lifecycle-configuration`).
        '';
        example = "keyfleet-logs";
      };
      prefix = lib.mkOption {
        type = lib.types.str;
        default = "";
        description = ''
          Key prefix, without a leading or trailing `/`. Objects are named
          `PREFIX/NODE/SOURCE/YYYY/MM/DD/SEGMENT.log.zst`, SOURCE being `engine`,
          `access` or `daemon`.
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
          (as `${accessKeyIdCredential}`), never copied into the Nix store. The key
          writes objects under the prefix (PutObject and the multipart calls) and is
          never used to delete one.
        '';
        example = "/run/secrets/keyfleet/logs-s3-access-key-id";
      };
      secretAccessKeyFile = lib.mkOption {
        type = klib.secretFile;
        description = ''
          File holding the secret access key; handed over with `LoadCredential=` (as
          `${secretAccessKeyCredential}`).
        '';
        example = "/run/secrets/keyfleet/logs-s3-secret-access-key";
      };
      partSize = lib.mkOption {
        type = klib.size;
        default = "16MiB";
        description = "Segments larger than this are uploaded in parts this large (at least 5MiB).";
      };
    };

    rotate = {
      maxSize = lib.mkOption {
        type = klib.size;
        default = "64MiB";
        description = "A log file is rotated (closed into a segment) once it is this large (at least 4KiB).";
      };
      maxAge = lib.mkOption {
        type = klib.duration;
        default = "1h";
        description = "...or once its oldest line is this old (at least 1s): how late a line may reach S3.";
      };
    };

    compression = lib.mkOption {
      type = lib.types.enum [
        "zstd"
        "gzip"
      ];
      default = "zstd";
      description = "How segments are compressed (`.log.zst` or `.log.gz`).";
    };

    maxLocalBytes = lib.mkOption {
      type = klib.size;
      default = "1GiB";
      description = ''
        Disk budget in ${logsDir} for closed segments, shipped or not; at least twice
        {option}`services.keyfleet.logs.rotate.maxSize`. It keeps logs from filling the
        disk under the database while S3 is out of reach.
      '';
    };

    onBudgetFull = lib.mkOption {
      type = lib.types.enum [
        "drop_oldest"
        "keep"
      ];
      default = "drop_oldest";
      description = ''
        What happens when {option}`services.keyfleet.logs.maxLocalBytes` is reached:
        `drop_oldest` deletes the oldest segments not yet shipped (their bytes are
        counted in `keyfleet_logship_dropped_bytes_total` and fire
        `KeyfleetLogBytesDropped`); `keep` keeps them all and reports
        `logship_budget_full`, letting the disk fill.
      '';
    };

    localRetention = lib.mkOption {
      type = klib.duration;
      default = "0s";
      description = "How long a shipped segment stays in ${logsDir}/segments (0s: deleted once its upload is confirmed).";
      example = "24h";
    };
  };

  config = lib.mkIf (cfg.enable && lcfg.enable) {
    assertions = checks;

    services.keyfleet.settings.logs = {
      dir = logsDir;
      inherit (lcfg) compression;
      max_local_bytes = lcfg.maxLocalBytes;
      on_budget_full = lcfg.onBudgetFull;
      local_retention = lcfg.localRetention;
      rotate = {
        max_size = lcfg.rotate.maxSize;
        max_age = lcfg.rotate.maxAge;
      };
      s3 = {
        inherit (lcfg.s3)
          endpoint
          region
          bucket
          prefix
          ;
        path_style = lcfg.s3.pathStyle;
        access_key_id_file = accessKeyIdCredential;
        secret_access_key_file = secretAccessKeyCredential;
        part_size = lcfg.s3.partSize;
      };
    };

    # The directory exists from boot on, before either service starts (the daemon's
    # ReadWritePaths= needs it), with the mode and owner LogsDirectory= gives it too.
    systemd.tmpfiles.rules = [ "d ${logsDir} 2770 keydb keydb - -" ];

    systemd.services.keydb.serviceConfig = {
      LogsDirectory = lib.removePrefix "/var/log/" logsDir;
      LogsDirectoryMode = "2770";
      # engine.log 0640: the daemon reads it through the group.
      UMask = "0027";
    };

    systemd.services.keyfleet.serviceConfig = {
      LoadCredential = [
        "${accessKeyIdCredential}:${lcfg.s3.accessKeyIdFile}"
        "${secretAccessKeyCredential}:${lcfg.s3.secretAccessKeyFile}"
      ];
      # "-": should the directory be gone, the daemon still starts (and reports the
      # engine), and log shipping reports the error.
      ReadWritePaths = [ "-${logsDir}" ];
    };
  };
}
