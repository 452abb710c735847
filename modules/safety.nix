# services.keyfleet.safety: the daemon's replication-safety checks (src/safety/): a
# canary written on every node and timed on every peer (lag and staleness per link),
# the clock skew between engines, and the node that writes which must be atomic go to.
# They become the daemon's [safety] table (src/config/safety.rs, which checks the same
# bounds); the alert rules (monitoring/alerts.yml) read the thresholds the daemon
# exports, so they need no copy of them. The daemon's engine user may touch only
# `keyfleet:` keys and the `keyfleet:canary` channel (src/engine/daemon.acl).
{ config, lib, ... }:

let
  cfg = config.services.keyfleet;
  scfg = cfg.safety;
  klib = import ./lib.nix { inherit lib; };
  inherit (klib) duration seconds;

  nodes = [ cfg.nodeName ] ++ map (p: p.name) cfg.peers;
  # The name of the reader's password among the daemon's credentials.
  readerCredential = "safety-reader-password";
  show = d: if builtins.isInt d then "${toString d}s" else d;
  missing = lib.filter (n: !(lib.elem n scfg.atomicWritesOrder)) nodes;
  unknown = lib.filter (n: !(lib.elem n nodes)) scfg.atomicWritesOrder;
in
{
  options.services.keyfleet.safety = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Run the replication-safety checks. Off, the daemon writes no canary key and
        exports no `keyfleet_replication_*` or `keyfleet_clock_skew_*` series.
      '';
    };
    canaryInterval = lib.mkOption {
      type = duration;
      default = "1s";
      description = ''
        How often this node writes `keyfleet:canary:NODE` (a sequence number and its
        write time) and announces it on the `keyfleet:canary` channel (100ms to 60s).
      '';
    };
    lagThreshold = lib.mkOption {
      type = duration;
      default = "5s";
      description = ''
        Replication lag, or canary staleness, above this fires
        `KeyfleetReplicationLagHigh` / `KeyfleetReplicationCanaryStale`. Longer than
        {option}`services.keyfleet.safety.canaryInterval`.
      '';
    };
    skewInterval = lib.mkOption {
      type = duration;
      default = "10s";
      description = "How often each peer engine's clock (`TIME`) is compared with this node's.";
    };
    skewSamples = lib.mkOption {
      type = lib.types.ints.between 1 50;
      default = 5;
      description = "`TIME` round trips per comparison; the shortest counts.";
    };
    skewThreshold = lib.mkOption {
      type = duration;
      default = "50ms";
      description = ''
        Clock skew beyond this either way fires `KeyfleetClockSkew`: KeyDB resolves
        conflicting writes by wall-clock time.
      '';
    };
    divergenceRate = lib.mkOption {
      type = lib.types.ints.between 0 10000;
      default = 20;
      description = ''
        Keys a second the divergence sampler reads on every node (a SCAN of this node's
        keyspace, as the reader); 0 turns it off. Differences still there after
        {option}`services.keyfleet.safety.lagThreshold` fire `KeyfleetDivergentKeys`.
      '';
    };
    deletesMax = lib.mkOption {
      type = lib.types.ints.between 100 10000000;
      default = 100000;
      description = ''
        The most keys deleted during a partition that are remembered (in
        /var/lib/keyfleet) and checked once the links heal; more are counted in
        `keyfleet_deletes_untracked_total`.
      '';
    };
    reader = {
      user = lib.mkOption {
        type = klib.aclUserName;
        default = "keyfleet-safety";
        description = ''
          ACL user of the engine the checks that read the user's keys act as: which keys
          deleted during a partition exist again after the heal (`EXISTS`, `SELECT`),
          and `keyfleet repair resurrected --delete` (`DEL`): the rules in
          `src/engine/safety.acl`, on every key. Nothing else uses it.
        '';
      };
      passwordFile = lib.mkOption {
        type = lib.types.nullOr klib.secretFile;
        default = null;
        description = ''
          File holding the reader's password (letters, digits and `._~+/=-`), handed to
          the engine's and the daemon's units by `LoadCredential=`. Required on a node
          with peers while the checks are on: the daemon's own user can read no user
          key, so the resurrection check and the divergence sampler act as this one.
        '';
        example = "/run/secrets/keyfleet/safety-reader-password";
      };
    };
    atomicWritesOrder = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "node2"
        "node1"
        "node3"
      ];
      description = ''
        The order nodes are preferred in for writes that must be atomic (INCR, locks,
        check-and-set): the first that is up with live links to a majority of the
        fleet is `atomic_writes_node` in `GET /api/v1/fleet`. Every node must list the
        same order, naming every node; empty: node names sorted.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = seconds scfg.canaryInterval >= 0.1 && seconds scfg.canaryInterval <= 60;
        message = "services.keyfleet.safety.canaryInterval (${show scfg.canaryInterval}) must be between 100ms and 60s.";
      }
      {
        assertion = seconds scfg.lagThreshold > seconds scfg.canaryInterval;
        message = "services.keyfleet.safety.lagThreshold (${show scfg.lagThreshold}) must be longer than canaryInterval (${show scfg.canaryInterval}).";
      }
      {
        # The engine has ACLs (modules/keydb-acl.nix): the daemon's own user reads no
        # user key, so without the reader the resurrection check and the divergence
        # sampler would fail on every run.
        assertion = !scfg.enable || cfg.peers == [ ] || scfg.reader.passwordFile != null;
        message = "services.keyfleet.safety.reader.passwordFile must be set when the node has peers: the safety checks read the user's keys as that ACL user (src/engine/safety.acl); or set services.keyfleet.safety.enable = false.";
      }
      {
        assertion = seconds scfg.skewInterval >= 1;
        message = "services.keyfleet.safety.skewInterval (${show scfg.skewInterval}) must be at least 1s.";
      }
      {
        assertion = seconds scfg.skewThreshold >= 1.0e-3;
        message = "services.keyfleet.safety.skewThreshold (${show scfg.skewThreshold}) must be at least 1ms.";
      }
      {
        assertion =
          scfg.atomicWritesOrder == [ ]
          || (
            missing == [ ]
            && unknown == [ ]
            && lib.length (lib.unique scfg.atomicWritesOrder) == lib.length scfg.atomicWritesOrder
          );
        message = "services.keyfleet.safety.atomicWritesOrder must list every node of the fleet once (${lib.concatStringsSep ", " nodes}); missing: [${lib.concatStringsSep ", " missing}], not nodes: [${lib.concatStringsSep ", " unknown}].";
      }
    ];

    services.keyfleet.settings.safety = {
      enabled = scfg.enable;
      canary_interval = scfg.canaryInterval;
      lag_threshold = scfg.lagThreshold;
      skew_interval = scfg.skewInterval;
      skew_samples = scfg.skewSamples;
      skew_threshold = scfg.skewThreshold;
      divergence_rate = scfg.divergenceRate;
      deletes_max = scfg.deletesMax;
    }
    // lib.optionalAttrs (scfg.atomicWritesOrder != [ ]) {
      atomic_writes_order = scfg.atomicWritesOrder;
    }
    // lib.optionalAttrs (scfg.enable && scfg.reader.passwordFile != null) {
      reader_user = scfg.reader.user;
      reader_password_file = readerCredential;
    };

    systemd.services.keyfleet.serviceConfig.LoadCredential = lib.optional (
      scfg.enable && scfg.reader.passwordFile != null
    ) "${readerCredential}:${scfg.reader.passwordFile}";
  };
}
