# services.keyfleet.upgrades: rollback-able upgrades (src/upgrade/). The unprivileged
# daemon decides (maintenance windows, the version policy, approvals, the fleet's lease
# and order) and judges the health gate; the root oneshot `keyfleet-upgrade.service`,
# started by a timer, by the daemon's request file and after every switch, asks it and
# does only the switching: build the candidate (`nixos-rebuild build --flake REF`) or
# take a pushed one (`candidateLink`), `nix-env -p /nix/var/nix/profiles/system --set`,
# `switch-to-configuration switch`, and the rollback. Each generation says what it
# carries in /etc/keyfleet/generation.json (its release and engine version), which the
# version policy compares.
#
# A hand switch is guarded too: the `keyfleet` entry of `system.preSwitchChecks` refuses
# `nixos-rebuild switch` while replication is unhealthy or another node upgrades
# (`NIXOS_NO_CHECK=1` skips every pre-switch check), and the agent gates the generation
# switched to, rolling it back unless `keyfleet upgrade confirm` was said.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.keyfleet;
  ucfg = cfg.upgrades;
  klib = import ./lib.nix { inherit lib; };
  inherit (klib) duration seconds;
  # What src/upgrade/window.rs parses: DAYS HH:MM-HH:MM [ZONE], or always.
  day = "[A-Za-z]{3,9}";
  window =
    lib.types.strMatching "always|${day}([,-]${day})* [0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]( [A-Za-z0-9_+/-]+)?"
    // {
      description = ''maintenance window ("Sun 02:00-03:00 Asia/Kolkata", "always")'';
    };

  nodes = [ cfg.nodeName ] ++ map (p: p.name) cfg.peers;
  unknown = lib.filter (n: !(lib.elem n nodes)) ucfg.order;
  missing = lib.filter (n: !(lib.elem n ucfg.order)) nodes;
  agentStateDir = "/var/lib/keyfleet-upgrade";
  # The daemon touches this to have the agent run now (an approval, a rollback asked).
  requestFile = "/var/lib/keyfleet/upgrade-request";
  action = lib.types.enum [
    "auto"
    "approve"
    "deny"
  ];
  policyOption =
    default: what:
    lib.mkOption {
      type = action;
      inherit default;
      description = "What a ${what} does: `auto` inside a window, `approve` after a person's yes, `deny` never.";
    };
  # The daemon where it listens (loopback when it listens on every address).
  apiHost =
    if
      lib.elem cfg.api.listenAddress [
        "0.0.0.0"
        "::"
      ]
    then
      "127.0.0.1"
    else
      cfg.api.listenAddress;
  apiUrl = "http://${klib.hostPort apiHost cfg.api.port}";
  tokenArgs = lib.optionalString (
    cfg.api.tokenFile != null
  ) " --token-file ${lib.escapeShellArg cfg.api.tokenFile}";
in
{
  options.services.keyfleet.upgrades = {
    enable = lib.mkEnableOption ''
      rollback-able upgrades: the upgrade agent switches this node to a candidate
      generation inside its windows and as the version policy allows, gates it, and
      rolls it back when the gate fails; hand switches are guarded and gated'';
    windows = lib.mkOption {
      type = lib.types.listOf window;
      default = [ ];
      description = ''
        Weekly maintenance windows in an IANA time zone (`DAYS HH:MM-HH:MM ZONE`, days
        `Sun`, `Sat,Sun` or `Mon-Fri`; an end before the start is the next day), or
        `always`. A window keeps its length across daylight-saving changes. None:
        automatic upgrades never start; an approval with `--now` still goes.
      '';
      example = [ "Sun 02:00-03:00 Asia/Kolkata" ];
    };
    policy = {
      patch = policyOption "auto" "patch upgrade of the engine";
      minor = policyOption "approve" "minor upgrade of the engine";
      major = policyOption "approve" "major upgrade (or another engine)";
      downgrade = policyOption "deny" "downgrade of the engine";
      engineUnchanged = policyOption "auto" "change that keeps the engine version (keyfleet, the config, the system)";
    };
    gateTimeout = lib.mkOption {
      type = duration;
      default = "60s";
      description = ''
        How long a new generation has to prove healthy (engine up at the expected
        version, every peer link up, the replication canary flowing both ways under
        the lag threshold, no new divergent keys) before it is rolled back; 5s to 1h.
      '';
    };
    gateSettle = lib.mkOption {
      type = duration;
      default = "3s";
      description = "How long every check of the gate must hold without a break.";
    };
    leaseTtl = lib.mkOption {
      type = duration;
      default = "120s";
      description = ''
        How long peers keep the fleet's upgrade lease for a node that stopped renewing
        it (it died mid-upgrade); longer than the gate.
      '';
    };
    order = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = ''
        The order in which nodes upgrade, the same on every node; empty means by name.
        A node starts a release only once every node before it runs it.
      '';
    };
    backupBefore = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Take a backup before a minor or major upgrade, when backups are configured.";
    };
    flake = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        Build the candidate from this flake reference (`nixos-rebuild build --flake`).
        Null: the candidate is a system pushed to the node (`nix copy --to
        ssh://node PATH`) and linked at ${agentStateDir}/candidate
        (`ln -sfn PATH ${agentStateDir}/candidate`).
      '';
      example = "github:example/fleet#node1";
    };
    interval = lib.mkOption {
      type = lib.types.str;
      default = "5min";
      description = "How often the agent runs on its own (systemd's OnUnitActiveSec=).";
    };
    release = lib.mkOption {
      type = lib.types.strMatching "[A-Za-z0-9._+-]{1,128}";
      default =
        if config.system.configurationRevision != null then
          config.system.configurationRevision
        else
          "${cfg.engine.kind}-${cfg.engine.package.version or "unknown"}";
      defaultText = lib.literalExpression ''config.system.configurationRevision, else "ENGINE-VERSION"'';
      description = ''
        The fleet-wide name of this configuration, the same on every node of one
        rollout: the agent compares the running generation's with the candidate's, a
        release that failed its gate on one node is refused by all, and a node waits
        for the nodes before it to run it. Set `system.configurationRevision =
        self.rev or self.dirtyRev or null;` in a flake so it follows the revision.
      '';
    };
  };

  config = lib.mkIf (cfg.enable && ucfg.enable) {
    # The bounds src/config/upgrades.rs checks.
    assertions = [
      {
        assertion = seconds ucfg.gateTimeout >= 5 && seconds ucfg.gateTimeout <= 3600;
        message = "services.keyfleet.upgrades.gateTimeout must be between 5s and 1h (got ${toString ucfg.gateTimeout}).";
      }
      {
        assertion = seconds ucfg.gateSettle < seconds ucfg.gateTimeout;
        message = "services.keyfleet.upgrades.gateSettle must be shorter than gateTimeout.";
      }
      {
        assertion = seconds ucfg.leaseTtl > seconds ucfg.gateTimeout;
        message = "services.keyfleet.upgrades.leaseTtl must be longer than gateTimeout: the lease is renewed while the gate runs.";
      }
      {
        assertion = unknown == [ ];
        message = "services.keyfleet.upgrades.order names ${lib.concatStringsSep ", " unknown}, not nodes of this fleet.";
      }
      {
        assertion = ucfg.order == [ ] || missing == [ ];
        message = "services.keyfleet.upgrades.order lists some nodes but not ${lib.concatStringsSep ", " missing}: list every node, or none.";
      }
    ];

    services.keyfleet.settings.upgrades = {
      inherit (ucfg) windows order;
      policy = {
        inherit (ucfg.policy)
          patch
          minor
          major
          downgrade
          ;
        engine_unchanged = ucfg.policy.engineUnchanged;
      };
      gate_timeout = ucfg.gateTimeout;
      gate_settle = ucfg.gateSettle;
      lease_ttl = ucfg.leaseTtl;
      backup_before = ucfg.backupBefore;
      generations = "nixos";
      candidate_link = "${agentStateDir}/candidate";
      agent_state_dir = agentStateDir;
    }
    // lib.optionalAttrs (ucfg.flake != null) { inherit (ucfg) flake; };

    # What this generation carries, read by the agent from each generation's etc/.
    environment.etc."keyfleet/generation.json".text = builtins.toJSON {
      inherit (ucfg) release;
      engine = cfg.engine.kind;
      engine_version = cfg.engine.package.version or "unknown";
      keyfleet_version = cfg.package.version or null;
    };

    systemd.services.keyfleet-upgrade = {
      description = "keyfleet upgrade agent: switches and rolls back generations as the daemon decides";
      after = [
        "network-online.target"
        "keyfleet.service"
      ];
      wants = [ "network-online.target" ];
      # The switch it runs must not stop or restart it.
      restartIfChanged = false;
      stopIfChanged = false;
      unitConfig.X-StopOnRemoval = false;
      environment = config.nix.envVars // {
        HOME = "/root";
      };
      path = [
        config.nix.package.out
        config.system.build.nixos-rebuild
        pkgs.coreutils
        pkgs.gitMinimal
      ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart =
          "${lib.getExe cfg.package} upgrade-agent --config ${cfg.configFile}"
          + lib.optionalString (cfg.api.tokenFile != null) " --token-file api-token";
        StateDirectory = "keyfleet-upgrade";
        StateDirectoryMode = "0700";
        # Root, unsandboxed: it switches the whole system. It reads only the API token
        # of the daemon's secrets.
        LoadCredential = lib.optional (cfg.api.tokenFile != null) "api-token:${cfg.api.tokenFile}";
      };
    };
    systemd.timers.keyfleet-upgrade = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "2min";
        OnUnitActiveSec = ucfg.interval;
      };
    };
    # On the daemon's request, and after any switch (a hand switch is gated at once).
    systemd.paths.keyfleet-upgrade = {
      wantedBy = [ "paths.target" ];
      pathConfig = {
        PathModified = requestFile;
        PathChanged = "/run/current-system";
      };
    };

    # Refuses a hand switch while the fleet is unhealthy or a node upgrades; the agent's
    # own switches are allowed by the daemon. A node whose daemon is not running yet
    # (the first deployment) is not held back.
    system.preSwitchChecks.keyfleet = ''
      if [ "''${2-}" = switch ] || [ "''${2-}" = boot ]; then
        if ${config.systemd.package}/bin/systemctl is-active --quiet keyfleet.service; then
          ${lib.getExe cfg.package} upgrade check-switch "''${1-}" "''${2-}" --api ${apiUrl}${tokenArgs}
        fi
      fi
    '';
  };
}
