# The engine's ACL users and replication credential. Secrets never reach the store: an
# ExecStartPre script of the keydb service reads them from LoadCredential= files and
# writes /run/keydb/secrets.conf (0600), which the rendered engine config includes last.
# Passwords are stored there as SHA-256 only, except masterauth, which the engine must
# send to its peers. With backups and services.keyfleet.backups.restore.passwordFile,
# the restore user (modules/backups.nix) is one of them; with
# services.keyfleet.safety.reader.passwordFile, the safety checks' reader
# (modules/safety.nix).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.keyfleet;
  ecfg = cfg.engine;
  rcfg = cfg.backups.restore;
  klib = import ./lib.nix { inherit lib; };

  inherit (klib) aclUserName;

  # One rule per line of an ACL file, comments dropped.
  aclFileRules =
    file:
    lib.filter (l: l != "" && !lib.hasPrefix "#" l) (
      map lib.trim (lib.splitString "\n" (builtins.readFile file))
    );
  # The daemon's rules (src/engine/daemon.acl) and the restore user's
  # (src/engine/restore.acl).
  daemonRules = aclFileRules ../src/engine/daemon.acl;
  restoreRules = aclFileRules ../src/engine/restore.acl;
  # And the safety checks' reader's (src/engine/safety.acl, modules/safety.nix).
  readerRules = aclFileRules ../src/engine/safety.acl;
  scfg = cfg.safety.reader;
  readerUser = cfg.safety.enable && scfg.passwordFile != null;
  readerClash =
    if scfg.user == ecfg.user then
      "the daemon's user (services.keyfleet.engine.user)"
    else if scfg.user == ecfg.replication.user then
      "the replication user (services.keyfleet.engine.replication.user)"
    else if restoreUser && scfg.user == rcfg.user then
      "the restore user (services.keyfleet.backups.restore.user)"
    else if ecfg.users ? ${scfg.user} then
      "an application user (services.keyfleet.engine.users.${scfg.user})"
    else
      null;

  # The restore user exists with backups and its password (modules/backups.nix).
  restoreUser = cfg.backups.enable && rcfg.passwordFile != null;
  # The other user whose name it takes, if any: one entry of aclUsers would hide the other.
  restoreClash =
    if rcfg.user == ecfg.user then
      "the daemon's user (services.keyfleet.engine.user)"
    else if rcfg.user == ecfg.replication.user then
      "the replication user (services.keyfleet.engine.replication.user)"
    else if ecfg.users ? ${rcfg.user} then
      "an application user (services.keyfleet.engine.users.${rcfg.user})"
    else
      null;

  # The keydb service's RuntimeDirectory (modules/keydb.nix): systemd creates it, owned
  # by keydb, before ExecStartPre runs.
  runtimeDir = "/run/keydb";
  secretsConf = "${runtimeDir}/secrets.conf";

  # Rules every ACL user gets after its own: no Lua (the unpatched Lua CVEs in
  # pkgs/keydb), no HyperLogLog (CVE-2025-32023).
  deniedCategories = [
    "-@scripting"
    "-@hyperloglog"
  ];

  userModule = {
    options = {
      passwordFile = lib.mkOption {
        type = klib.secretFile;
        description = ''
          File holding the user's password (letters, digits and `._~+/=-` only, as
          `openssl rand -base64 32` makes). Stored in the engine as its SHA-256 only.
        '';
      };
      rules = lib.mkOption {
        type = lib.types.listOf aclRule;
        default = [
          "~*"
          "&*"
          "+@all"
          "-@dangerous"
        ];
        description = ''
          ACL rules of the user. `-@scripting` and `-@hyperloglog` are always appended:
          KeyDB 6.3.4 carries unpatched Lua and HyperLogLog vulnerabilities.
        '';
      };
    };
  };

  # name -> { credential; rules } for every ACL user the secrets file defines.
  aclUsers =
    lib.optionalAttrs (ecfg.passwordFile != null) {
      ${ecfg.user} = {
        credential = "engine-password";
        source = ecfg.passwordFile;
        inherit (ecfg) rules;
      };
    }
    // lib.optionalAttrs (ecfg.replication.passwordFile != null) {
      # Only what a replica sends its master: the handshake and the sync.
      ${ecfg.replication.user} = {
        credential = "replication-password";
        source = ecfg.replication.passwordFile;
        rules = [
          "+ping"
          "+replping"
          "+replconf"
          "+sync"
          "+psync"
        ];
      };
    }
    // lib.mapAttrs (name: user: {
      credential = "user-${name}";
      source = user.passwordFile;
      inherit (user) rules;
    }) ecfg.users
    // lib.optionalAttrs restoreUser {
      ${rcfg.user} = {
        credential = "restore-password";
        source = rcfg.passwordFile;
        rules = restoreRules;
      };
    }
    // lib.optionalAttrs readerUser {
      ${scfg.user} = {
        credential = "safety-reader-password";
        source = scfg.passwordFile;
        rules = readerRules;
      };
    };

  credentials =
    lib.optional (ecfg.passwordFile != null) "engine-password:${ecfg.passwordFile}"
    ++ lib.optional (
      ecfg.replication.passwordFile != null
    ) "replication-password:${ecfg.replication.passwordFile}"
    ++ lib.mapAttrsToList (name: user: "user-${name}:${user.passwordFile}") ecfg.users
    ++ lib.optional restoreUser "restore-password:${rcfg.passwordFile}"
    ++ lib.optional readerUser "safety-reader-password:${scfg.passwordFile}";

  # The arguments of keydb-write-secrets.sh, each quoted for the shell.
  secretsArgs = [
    secretsConf
  ]
  ++ lib.concatLists (
    lib.mapAttrsToList (name: user: [
      "--user"
      name
      user.credential
      (toString user.source)
      (lib.concatStringsSep " " (user.rules ++ deniedCategories))
    ]) aclUsers
  )
  ++ lib.optionals (ecfg.replication.passwordFile != null) [
    "--masterauth"
    ecfg.replication.user
    "replication-password"
    (toString ecfg.replication.passwordFile)
  ];

  # The script itself is modules/keydb-write-secrets.sh (tested as it is by
  # nix/tests/write-secrets.sh); only its arguments and PATH are set here.
  writeSecrets = pkgs.writeShellScript "keydb-write-secrets" ''
    export PATH=${lib.makeBinPath [ pkgs.coreutils ]}
    set -- ${lib.escapeShellArgs secretsArgs}
    ${builtins.readFile ./keydb-write-secrets.sh}
  '';

  # One ACL rule: no whitespace (the engine splits on it), no line break.
  aclRule = lib.types.strMatching "[^[:space:]]+";

in
{
  options.services.keyfleet.engine = {
    user = lib.mkOption {
      type = aclUserName;
      default = "keyfleet";
      description = "ACL user the daemon authenticates as.";
    };

    passwordFile = lib.mkOption {
      type = lib.types.nullOr klib.secretFile;
      default = null;
      description = ''
        File holding the daemon user's password. Required: the engine admits no
        unauthenticated client.
      '';
      example = "/run/secrets/keyfleet/engine-password";
    };

    rules = lib.mkOption {
      type = lib.types.listOf aclRule;
      default = daemonRules;
      defaultText = lib.literalMD "the rules in `src/engine/daemon.acl`: ${lib.concatStringsSep " " daemonRules}";
      description = ''
        ACL rules of the daemon's user, after `reset`: by default exactly the commands
        the daemon sends (`src/engine/daemon.acl`, which the daemon's tests run against
        a real engine): only `keyfleet:` keys (the replication canary, written with SET
        and read with MGET) and the `keyfleet:canary` channel, and no `CONFIG GET`, which
        would read `masterauth` in clear. The same user and password must exist on
        every node: the clock-skew check reads the peers' `TIME` as this user.
        `-@scripting` and `-@hyperloglog` are always appended.
      '';
    };

    replication = {
      user = lib.mkOption {
        type = aclUserName;
        default = "replication";
        description = "ACL user the peers' engines replicate as (masteruser).";
      };
      passwordFile = lib.mkOption {
        type = lib.types.nullOr klib.secretFile;
        default = null;
        description = "File holding the replication user's password; the same on every node.";
        example = "/run/secrets/keyfleet/replication-password";
      };
    };

    users = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule userModule);
      # Names are checked by the `aclUserNames` assertion: attrsOf cannot type its keys.
      default = { };
      description = "Application ACL users of the engine.";
      example = lib.literalExpression ''
        { app.passwordFile = "/run/secrets/keyfleet/app-password"; }
      '';
    };

  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = ecfg.passwordFile != null;
        message = "services.keyfleet.engine.passwordFile must be set: the engine admits no unauthenticated client.";
      }
      {
        assertion = cfg.peers == [ ] || ecfg.replication.passwordFile != null;
        message = "services.keyfleet.engine.replication.passwordFile must be set when the node has peers.";
      }
      {
        assertion = !(aclUsers ? default);
        message = "services.keyfleet.engine: the ACL user `default` is reserved (it is switched off).";
      }
      {
        assertion = lib.all (name: builtins.match "[A-Za-z0-9._-]+" name != null) (
          lib.attrNames ecfg.users
        );
        message = "services.keyfleet.engine.users: ACL user names use A-Z a-z 0-9 ._- only (got ${lib.concatStringsSep ", " (lib.attrNames ecfg.users)}).";
      }
      {
        assertion = !restoreUser || restoreClash == null;
        message = "services.keyfleet.backups.restore.user `${rcfg.user}` is also ${restoreClash}; the restore user must be a user of its own, with only the rules in src/engine/restore.acl.";
      }
      {
        assertion = !readerUser || readerClash == null;
        message = "services.keyfleet.safety.reader.user `${scfg.user}` is also ${readerClash}; the reader must be a user of its own, with only the rules in src/engine/safety.acl.";
      }
    ];

    services.keyfleet.settings.engine = {
      inherit (ecfg) user;
      include = secretsConf;
    }
    // lib.optionalAttrs (ecfg.passwordFile != null) {
      password_file = "/run/credentials/keyfleet.service/engine-password";
    };

    systemd.services.keydb.serviceConfig = {
      ExecStartPre = writeSecrets;
      LoadCredential = credentials;
    };
  };
}
