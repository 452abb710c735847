"""Checks what nix/eval-modules.nix (-A checks) returns; scripts/check-nix.sh runs it.

    KEYFLEET=target/debug/keyfleet WORK=DIR python3 nix/tests/check-eval.py EVAL.json

Prints one line per check that passes, every problem at the end, and exits 1 on any.
"""

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tomllib

from render_refusals import render_refuses
from restore_user import (
    DENIED,
    ENGINE_RESTORE_CREDENTIAL,
    RESTORE_RULES,
    check_restore_user,
    credential_sources,
)

checks = json.load(open(sys.argv[1]))
work = os.environ["WORK"]
problems = []


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def rust_render(label, settings):
    """`keyfleet render keydb-conf` of the TOML the module writes for this node."""
    path = write_toml(settings)
    out = subprocess.run(
        [os.environ["KEYFLEET"], "render", "keydb-conf", "--config", path],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        problems.append(f"{label}: keyfleet render keydb-conf refused the module's TOML: {out.stderr}")
    return out.stdout


def write_toml(settings):
    path = os.path.join(work, "node.toml")
    with open(path, "w") as f:
        for key, value in settings.items():
            f.write(f"{json.dumps(key)} = {toml_value(value)}\n")
    return path


def same_engine_config(label, node):
    rust = rust_render(label, node["settings"])
    if rust != node["engineConf"]:
        problems.append(
            f"{label}: the Nix engine config differs from `keyfleet render keydb-conf`:\n"
            f"--- Nix\n{node['engineConf']}--- Rust\n{rust}"
        )
    else:
        print(f"{label}: Nix and Rust render the same engine config ({len(rust.splitlines())} lines)")


LOGS_DIR = "/var/log/keydb"
LOGS_KEYS = {"dir", "compression", "max_local_bytes", "on_budget_full", "local_retention", "rotate", "s3"}
ROTATE_KEYS = {"max_size", "max_age"}
S3_KEYS = {
    "endpoint",
    "region",
    "bucket",
    "prefix",
    "path_style",
    "access_key_id_file",
    "secret_access_key_file",
    "part_size",
}
# Keys the daemon takes that no typed option writes (services.keyfleet.settings.logs).
OPTIONAL_LOGS_KEYS = {"writer_grace", "retry_max_interval"}
OPTIONAL_S3_KEYS = {"timeout"}
CREDENTIALS = {"access_key_id_file": "logs-s3-access-key-id", "secret_access_key_file": "logs-s3-secret-access-key"}


def check_daemon_unit(label, node):
    """What the daemon's unit has with and without logs: a user of its own in the keydb
    group, its state directory, and the state_dir the TOML names. No file a credential
    comes from is named in the TOML, which names credentials only."""
    unit = node["keyfleetService"]["serviceConfig"]
    wrong = []
    toml_text = json.dumps(node["settings"])
    for service in ("keyfleetService", "keydbService"):
        for name, sources in credential_sources(node[service]).items():
            wrong += [f"{service} credential {name}'s file {s} is in the TOML" for s in sources if s in toml_text]
    if node["settings"].get("state_dir") != "/var/lib/keyfleet":
        wrong.append(f"state_dir {node['settings'].get('state_dir')!r}")
    if unit.get("StateDirectory") != "keyfleet" or unit.get("User") != "keyfleet" or "DynamicUser" in unit:
        wrong.append(f"StateDirectory/User/DynamicUser {unit.get('StateDirectory')!r} {unit.get('User')!r} {unit.get('DynamicUser')!r}")
    cap = node["settings"]["api"].get("max_connections")
    if unit.get("LimitNOFILE") != cap + 1024:
        wrong.append(f"LimitNOFILE {unit.get('LimitNOFILE')!r} for api.max_connections {cap!r} (want cap + 1024)")
    if "keydb" not in unit.get("SupplementaryGroups", []) or "keyfleet" not in node["users"]:
        wrong.append(f"SupplementaryGroups {unit.get('SupplementaryGroups')!r}, users {node['users']}")
    if wrong:
        problems.append(f"{label}: the daemon's unit: {'; '.join(wrong)}")


def check_logs(label, node):
    """With log shipping: the [logs] table with every key, credentials named relative in
    the TOML and handed over by LoadCredential=, the engine logging to the log directory,
    which its group (the daemon's) may use. Without: none of it."""
    settings = node["settings"]
    daemon = node["keyfleetService"]["serviceConfig"]
    engine = node["keydbService"]["serviceConfig"]
    creds = daemon.get("LoadCredential", [])
    logs_creds = [c for c in creds if c.startswith("logs-s3-")]
    wrong = []
    if "logs" not in settings:
        if logs_creds or "logfile \"\"\n" not in node["engineConf"]:
            wrong.append(f"credentials {logs_creds} or a logfile without [logs]")
        # Backups open the data directory to the group with the same UMask.
        umask = "0027" if "backups" in settings else "0077"
        if engine.get("LogsDirectory") or engine.get("UMask") != umask or daemon.get("ReadWritePaths"):
            wrong.append(f"engine LogsDirectory/UMask {engine.get('LogsDirectory')!r} {engine.get('UMask')!r}, daemon ReadWritePaths {daemon.get('ReadWritePaths')!r}")
        if wrong:
            problems.append(f"{label} (logs off): {'; '.join(wrong)}")
        else:
            print(f"{label}: logs off: no [logs] table, no log store credentials, engine logs to stdout")
        return
    logs = settings["logs"]
    if not (
        LOGS_KEYS <= set(logs) <= LOGS_KEYS | OPTIONAL_LOGS_KEYS
        and set(logs["rotate"]) == ROTATE_KEYS
        and S3_KEYS <= set(logs["s3"]) <= S3_KEYS | OPTIONAL_S3_KEYS
    ):
        wrong.append(f"[logs] keys {sorted(logs)}, rotate {sorted(logs['rotate'])}, s3 {sorted(logs['s3'])}")
    if logs["dir"] != LOGS_DIR:
        wrong.append(f"logs.dir {logs['dir']!r}")
    for key, credential in CREDENTIALS.items():
        if logs["s3"].get(key) != credential:
            wrong.append(f"logs.s3.{key} = {logs['s3'].get(key)!r}, not the credential name {credential!r}")
        sources = [c.split(":", 1)[1] for c in creds if c.startswith(credential + ":")]
        if len(sources) != 1 or not sources[0].startswith("/") or sources[0].startswith("/nix/store"):
            wrong.append(f"LoadCredential for {credential}: {sources}")
    if f"\nlogfile {LOGS_DIR}/engine.log\n" not in node["engineConf"]:
        wrong.append("the engine config has no `logfile /var/log/keydb/engine.log`")
    if (engine.get("LogsDirectory"), engine.get("LogsDirectoryMode"), engine.get("UMask")) != ("keydb", "2770", "0027"):
        wrong.append(f"engine LogsDirectory/Mode/UMask {engine.get('LogsDirectory')!r} {engine.get('LogsDirectoryMode')!r} {engine.get('UMask')!r}")
    if daemon.get("ReadWritePaths") != [f"-{LOGS_DIR}"]:
        wrong.append(f"daemon ReadWritePaths {daemon.get('ReadWritePaths')!r}")
    if f"d {LOGS_DIR} 2770 keydb keydb - -" not in node["tmpfiles"]:
        wrong.append(f"tmpfiles {node['tmpfiles']}")
    if wrong:
        problems.append(f"{label} (logs on): {'; '.join(wrong)}")
    else:
        print(
            f"{label}: logs on: [logs] has its {len(LOGS_KEYS)}+{len(ROTATE_KEYS)}+{len(S3_KEYS)} keys,"
            f" both S3 key files by LoadCredential=, engine logs to {LOGS_DIR}/engine.log (2770 keydb, UMask 0027)"
        )


DATA_DIR = "/var/lib/keydb"
BACKUPS_KEYS = {"fleet", "compression", "bgsave_timeout"}
OPTIONAL_BACKUPS_KEYS = {
    "schedule",
    "keep_last",
    "keep_within",
    "s3",
    "age_recipients_file",
    "age_identity_file",
    "restore_user",
    "restore_password_file",
}
# The age key files, named relative in the TOML and handed over by LoadCredential=.
AGE_CREDENTIALS = {
    "age_recipients_file": "backups-age-recipients",
    "age_identity_file": "backups-age-identity",
}
# [backups.s3] has [logs.s3]'s keys; backups upload in parts of their own size.
BACKUPS_S3_KEYS = S3_KEYS - {"part_size"}
OPTIONAL_BACKUPS_S3_KEYS = {"part_size", "timeout"}
BACKUPS_CREDENTIALS = {
    "access_key_id_file": "backups-s3-access-key-id",
    "secret_access_key_file": "backups-s3-secret-access-key",
}


def check_backups(label, node):
    """With backups: the [backups] table, the store's credentials named relative in the
    TOML and handed over by LoadCredential= (or the log store's, shared), and the engine's
    data directory (engine.data_dir) 0750 with the engine's UMask 0027, so the daemon
    reads the RDB file through the group. Without: none of it."""
    settings = node["settings"]
    daemon = node["keyfleetService"]["serviceConfig"]
    engine = node["keydbService"]["serviceConfig"]
    creds = daemon.get("LoadCredential", [])
    backups_creds = [c for c in creds if c.startswith("backups-s3-")]
    data_dir_rules = [r for r in node["tmpfiles"] if r.split()[1:2] == [DATA_DIR]]
    wrong = []
    if settings["engine"].get("data_dir") != DATA_DIR or engine.get("StateDirectory") != "keydb":
        wrong.append(f"engine.data_dir {settings['engine'].get('data_dir')!r}, StateDirectory {engine.get('StateDirectory')!r}")
    if "backups" not in settings:
        if backups_creds or data_dir_rules or engine.get("StateDirectoryMode") != "0700":
            wrong.append(f"credentials {backups_creds}, tmpfiles {data_dir_rules}, StateDirectoryMode {engine.get('StateDirectoryMode')!r}")
        if wrong:
            problems.append(f"{label} (backups off): {'; '.join(wrong)}")
        else:
            print(f"{label}: backups off: no [backups] table, no backup credentials, {DATA_DIR} 0700")
        return
    backups = settings["backups"]
    if not BACKUPS_KEYS <= set(backups) <= BACKUPS_KEYS | OPTIONAL_BACKUPS_KEYS:
        wrong.append(f"[backups] keys {sorted(backups)}")
    if "s3" in backups:
        s3 = backups["s3"]
        if not BACKUPS_S3_KEYS <= set(s3) <= BACKUPS_S3_KEYS | OPTIONAL_BACKUPS_S3_KEYS:
            wrong.append(f"[backups.s3] keys {sorted(s3)}")
        for key, credential in BACKUPS_CREDENTIALS.items():
            if s3.get(key) != credential:
                wrong.append(f"backups.s3.{key} = {s3.get(key)!r}, not the credential name {credential!r}")
            sources = [c.split(":", 1)[1] for c in creds if c.startswith(credential + ":")]
            if len(sources) != 1 or not sources[0].startswith("/") or sources[0].startswith("/nix/store"):
                wrong.append(f"LoadCredential for {credential}: {sources}")
        store = f"its own store, both S3 key files by LoadCredential= as {sorted(BACKUPS_CREDENTIALS.values())}"
    else:
        if "logs" not in settings or backups_creds:
            wrong.append(f"no [backups.s3] and no [logs] to share, or credentials {backups_creds} for no store")
        store = "the log store, with its credentials"
    for key, credential in AGE_CREDENTIALS.items():
        sources = [c.split(":", 1)[1] for c in creds if c.startswith(credential + ":")]
        if key in backups:
            if backups[key] != credential or len(sources) != 1:
                wrong.append(f"backups.{key} = {backups[key]!r}, LoadCredential {sources}")
            elif key == "age_identity_file" and sources[0].startswith("/nix/store"):
                wrong.append(f"the age identity comes from the store: {sources[0]}")
            else:
                store += f"; {key} by LoadCredential= as {credential}"
        elif sources:
            wrong.append(f"LoadCredential {credential} without backups.{key}")
    restore_wrong, restore = check_restore_user(node)
    wrong += restore_wrong
    store += restore
    if data_dir_rules != [f"d {DATA_DIR} 0750 keydb keydb - -"]:
        wrong.append(f"tmpfiles for {DATA_DIR}: {data_dir_rules}")
    if (engine.get("StateDirectoryMode"), engine.get("UMask")) != ("0750", "0027"):
        wrong.append(f"engine StateDirectoryMode/UMask {engine.get('StateDirectoryMode')!r} {engine.get('UMask')!r}")
    if wrong:
        problems.append(f"{label} (backups on): {'; '.join(wrong)}")
    else:
        print(f"{label}: backups on: [backups] to {store}; {DATA_DIR} 0750 keydb, engine UMask 0027")


def check_upgrades(label, node):
    """The agent's units and the pre-switch check, as hosts/common.nix turns them on."""
    u = node["upgrades"]
    svc = u["service"]
    start = svc["serviceConfig"]["ExecStart"]
    want = f"upgrade-agent --config {u['configFile']} --token-file api-token"
    if not start.endswith(want):
        problems.append(f"{label}: keyfleet-upgrade ExecStart is {start!r}, not ...{want!r}")
    if svc["serviceConfig"].get("Type") != "oneshot" or svc["restartIfChanged"] or svc["stopIfChanged"]:
        problems.append(f"{label}: keyfleet-upgrade must be a oneshot the switch never stops: {svc}")
    if svc["serviceConfig"].get("User"):
        problems.append(f"{label}: keyfleet-upgrade must run as root (it switches the system)")
    if svc["serviceConfig"].get("LoadCredential") != ["api-token:/run/secrets/keyfleet/api-token"]:
        problems.append(f"{label}: keyfleet-upgrade credentials: {svc['serviceConfig'].get('LoadCredential')}")
    if u["timer"]["wantedBy"] != ["timers.target"] or "OnUnitActiveSec" not in u["timer"]["timerConfig"]:
        problems.append(f"{label}: keyfleet-upgrade timer: {u['timer']}")
    if u["path"]["pathConfig"].get("PathModified") != "/var/lib/keyfleet/upgrade-request":
        problems.append(f"{label}: keyfleet-upgrade path unit: {u['path']}")
    check = u["preSwitchCheck"] or ""
    if "upgrade check-switch" not in check or "--token-file /run/secrets/keyfleet/api-token" not in check:
        problems.append(f"{label}: preSwitchChecks.keyfleet: {check!r}")
    gen = json.loads(u["generation"])
    if (gen["engine"], gen["engine_version"]) != ("keydb", "6.3.4") or not gen["release"]:
        problems.append(f"{label}: generation.json: {gen}")
    # The daemon's TOML of the host parses as the agent reads it.
    print(f"{label}: upgrade agent, timer, path unit, pre-switch check and generation.json")


def check_node(label, node):
    same_engine_config(label, node)
    check_daemon_unit(label, node)
    check_logs(label, node)
    check_backups(label, node)


for name, host in sorted(checks["hosts"].items()):
    if host["failedAssertions"]:
        problems.append(f"host {name}: assertions failed: {host['failedAssertions']}")
    with open(f"examples/hosts/{name}.toml", "rb") as f:
        expected = tomllib.load(f)
    if host["settings"] != expected:
        problems.append(
            f"host {name}: generated TOML differs from examples/hosts/{name}.toml:\n"
            f"  module:  {json.dumps(host['settings'], sort_keys=True)}\n"
            f"  example: {json.dumps(expected, sort_keys=True)}"
        )
    else:
        print(f"host {name}: settings equal examples/hosts/{name}.toml")
    check_node(f"host {name}", host)
    check_upgrades(f"host {name}", host)

off = checks["upgradesOff"]["upgrades"]
if any(off[k] is not None for k in ("service", "timer", "path", "preSwitchCheck", "generation")):
    problems.append(f"without upgrades something is still set: {off}")
if "upgrades" in checks["upgradesOff"]["settings"]:
    problems.append("without upgrades the daemon's TOML still has [upgrades]")

check_node("host node1 without logs", checks["logsOff"])

for case, node in sorted(checks["backups"].items()):
    if node["failedAssertions"]:
        problems.append(f"host node1 with backups ({case}): assertions failed: {node['failedAssertions']}")
    check_node(f"host node1 with backups ({case})", node)
units = checks["engineUnitWithBackups"]
restore_unit = units.pop("restoreUser")
if any(unit != units["sharedStore"] for unit in units.values()):
    problems.append(f"the engine's unit depends on backup settings: {sorted(units)}")
else:
    print(f"engine unit: the same whatever the backup settings ({', '.join(sorted(units))})")


def differs(a, b):
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


# The restore user changes the secrets script and the credentials, nothing else.
shared = units["sharedStore"]
if differs(restore_unit, shared) != ["serviceConfig"] or differs(
    restore_unit["serviceConfig"], shared["serviceConfig"]
) != ["ExecStartPre", "LoadCredential"]:
    problems.append(
        f"the restore user changes the engine's unit in {differs(restore_unit, shared)}"
        f" {differs(restore_unit.get('serviceConfig', {}), shared['serviceConfig'])}"
    )
else:
    print("engine unit: the restore user changes its secrets script and credentials only")

for test, nodes in sorted(checks["vmTests"].items()):
    for name, node in sorted(nodes.items()):
        if node["failedAssertions"]:
            problems.append(f"VM test {test} node {name}: assertions failed: {node['failedAssertions']}")
        if "engineConf" in node:
            check_node(f"VM test {test} node {name}", node)
if "logs" not in checks["vmTests"]["logs"]["node1"]["settings"]:
    problems.append("VM test logs node1 does not ship logs")
if "backups" not in checks["vmTests"]["logs"]["node1"]["settings"]:
    problems.append("VM test logs node1 does not back up")
for name, node in sorted(checks["vmTests"]["backups"].items()):
    if "settings" in node and "restore_user" not in node["settings"].get("backups", {}):
        problems.append(f"VM test backups node {name} has no restore user")

specs = checks["upgradeSpecialisations"]
for name, node in sorted(specs.items()):
    if node["failedAssertions"]:
        problems.append(f"VM test upgrade specialisation {name}: assertions failed: {node['failedAssertions']}")
gens = {name: json.loads(node["upgrades"]["generation"]) for name, node in specs.items()}
base = json.loads(checks["vmTests"]["upgrade"]["node1"]["upgrades"]["generation"])
if (base["release"], gens["candidate"]["release"], gens["broken"]["release"]) != ("base", "hz20", "broken"):
    problems.append(f"VM test upgrade: releases {base}, {gens}")
if "\nhz 20\n" not in specs["candidate"]["engineConf"]:
    problems.append("VM test upgrade: the candidate does not set hz 20")
if "\nno-such-directive yes\n" not in specs["broken"]["engineConf"]:
    problems.append("VM test upgrade: the broken candidate has no directive KeyDB refuses")
# The agent's unit changes with the daemon's TOML; the switch it runs must not stop it.
for name, node in specs.items():
    svc = node["upgrades"]["service"]
    if svc["restartIfChanged"] or svc["stopIfChanged"]:
        problems.append(f"VM test upgrade {name}: switching to it would stop the agent that switches")
print("VM test upgrade: candidate and broken specialisations evaluate, with their releases and engine configs")

for case, messages in sorted(checks["bad"].items()):
    if len(messages) != 1:
        problems.append(f"bad configuration {case}: expected one failed assertion, got {messages}")
    else:
        print(f"bad configuration {case}: refused ({messages[0]})")

for kind, key in (
    ("log", "badLogsSettings"),
    ("backup", "badBackupsSettings"),
    ("safety", "badSafetySettings"),
    ("upgrade", "badUpgradesSettings"),
):
    render_refuses(kind, checks[key], write_toml, problems)

fw = checks["firewall"]
if not (fw["iptables"]["extraCommands"] and not fw["iptables"]["extraInputRules"]):
    problems.append(f"iptables backend: rules in the wrong place: {fw['iptables']}")
if not (fw["nftables"]["extraInputRules"] and not fw["nftables"]["extraCommands"]):
    problems.append(f"nftables backend: rules in the wrong place: {fw['nftables']}")
for off in ("off", "keyfleetOff"):
    if fw[off]["extraCommands"] or fw[off]["extraInputRules"]:
        problems.append(f"firewall {off}: rules written anyway: {fw[off]}")
print("firewall: iptables rules on the iptables backend, nftables rules on nftables, none when off")

start = checks["engineExecStart"]
for case in ("otherPollInterval", "otherKeyfleet", "otherLogsBucket"):
    if start[case] != start["default"]:
        problems.append(f"{case} changes the engine's ExecStart, restarting every engine: {start[case]}")
for case in ("otherMaxmemory", "logsOff"):
    if start[case] == start["default"]:
        problems.append(f"{case} leaves the engine's ExecStart unchanged")
print(
    "engine ExecStart: unchanged by a daemon setting, another keyfleet package or another log bucket,"
    " changed by maxmemory and by turning log shipping off"
)

# The secrets script exactly as the module writes it for node1, on this host's tools.
secrets_conf = os.path.join(work, "secrets.conf")
creds = os.path.join(work, "credentials")
os.makedirs(creds, exist_ok=True)
env = dict(os.environ, CREDENTIALS_DIRECTORY=creds)


def secrets_script(name, node):
    """The node's secrets script, writing to WORK/secrets.conf, as a file to run."""
    script = [line for line in node["secretsScript"].splitlines() if not line.startswith("export PATH=/nix/store/")]
    path = os.path.join(work, f"{name}-write-secrets.sh")
    with open(path, "w") as f:
        f.write("\n".join(script).replace("/run/keydb/secrets.conf", secrets_conf) + "\n")
    return path


path = secrets_script("node1", checks["hosts"]["node1"])
for cred in ("engine-password", "replication-password", "user-app", ENGINE_RESTORE_CREDENTIAL, "safety-reader-password"):
    with open(os.path.join(creds, cred), "w") as f:
        f.write("good-pw\n")

# With the restore user: its line, the password's SHA-256 and restore.acl's rules.
restore_node = checks["backups"]["restoreUser"]
restore_user = restore_node["settings"]["backups"].get("restore_user")
run = subprocess.run(["bash", secrets_script("restore", restore_node)], env=env, capture_output=True, text=True)
line = f"user {restore_user} reset on #{hashlib.sha256(b'good-pw').hexdigest()} {' '.join(RESTORE_RULES + DENIED)}\n"
if run.returncode != 0 or line not in open(secrets_conf).read():
    problems.append(f"the secrets script with the restore user: {run.returncode} {run.stderr}, no line {line!r}")
else:
    print(f"secrets script with the restore user: writes {line.split(' #')[0]} with restore.acl's rules")
if os.path.exists(secrets_conf):
    os.remove(secrets_conf)

good = subprocess.run(["bash", path], env=env, capture_output=True, text=True)
written = open(secrets_conf).read() if good.returncode == 0 else ""
if "masterauth good-pw\n" not in written or "\nuser app reset on #" not in written or "\nuser keyfleet-safety reset on #" not in written:
    problems.append(f"node1's secrets script on good credentials: {good.returncode} {good.stderr} {written}")
if os.path.exists(secrets_conf):
    os.remove(secrets_conf)
open(os.path.join(creds, "user-app"), "w").close()
bad = subprocess.run(["bash", path], env=env, capture_output=True, text=True)
if bad.returncode == 0 or "/run/secrets/keyfleet/app-password" not in bad.stderr or os.path.exists(secrets_conf):
    problems.append(f"node1's secrets script accepted an empty credential: {bad.returncode} {bad.stderr}")
else:
    print(f"node1's secrets script: writes good credentials, refuses an empty one ({bad.stderr.strip()})")

for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
