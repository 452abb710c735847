"""Checks what nix/eval-modules.nix (-A checks) returns; scripts/check-nix.sh runs it.

    KEYFLEET=target/debug/keyfleet WORK=DIR python3 nix/tests/check-eval.py EVAL.json

Prints one line per check that passes, every problem at the end, and exits 1 on any.
"""

import json
import os
import subprocess
import sys
import tomllib

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
    path = os.path.join(work, "node.toml")
    with open(path, "w") as f:
        for key, value in settings.items():
            f.write(f"{json.dumps(key)} = {toml_value(value)}\n")
    out = subprocess.run(
        [os.environ["KEYFLEET"], "render", "keydb-conf", "--config", path],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        problems.append(f"{label}: keyfleet render keydb-conf refused the module's TOML: {out.stderr}")
    return out.stdout


def same_engine_config(label, node):
    rust = rust_render(label, node["settings"])
    if rust != node["engineConf"]:
        problems.append(
            f"{label}: the Nix engine config differs from `keyfleet render keydb-conf`:\n"
            f"--- Nix\n{node['engineConf']}--- Rust\n{rust}"
        )
    else:
        print(f"{label}: Nix and Rust render the same engine config ({len(rust.splitlines())} lines)")


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
    same_engine_config(f"host {name}", host)

for test, nodes in sorted(checks["vmTests"].items()):
    for name, node in sorted(nodes.items()):
        if node["failedAssertions"]:
            problems.append(f"VM test {test} node {name}: assertions failed: {node['failedAssertions']}")
        if "engineConf" in node:
            same_engine_config(f"VM test {test} node {name}", node)

for case, messages in sorted(checks["bad"].items()):
    if len(messages) != 1:
        problems.append(f"bad configuration {case}: expected one failed assertion, got {messages}")
    else:
        print(f"bad configuration {case}: refused ({messages[0]})")

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
for case in ("otherPollInterval", "otherKeyfleet"):
    if start[case] != start["default"]:
        problems.append(f"{case} changes the engine's ExecStart, restarting every engine: {start[case]}")
if start["otherMaxmemory"] == start["default"]:
    problems.append("a different maxmemory leaves the engine's ExecStart unchanged")
print("engine ExecStart: unchanged by a daemon setting or another keyfleet package, changed by maxmemory")

# The secrets script exactly as the module writes it for node1, on this host's tools.
script = [
    line
    for line in checks["hosts"]["node1"]["secretsScript"].splitlines()
    if not line.startswith("export PATH=/nix/store/")
]
secrets_conf = os.path.join(work, "secrets.conf")
path = os.path.join(work, "node1-write-secrets.sh")
with open(path, "w") as f:
    f.write("\n".join(script).replace("/run/keydb/secrets.conf", secrets_conf) + "\n")
creds = os.path.join(work, "credentials")
os.makedirs(creds, exist_ok=True)
for cred in ("engine-password", "replication-password", "user-app"):
    with open(os.path.join(creds, cred), "w") as f:
        f.write("good-pw\n")
env = dict(os.environ, CREDENTIALS_DIRECTORY=creds)
good = subprocess.run(["bash", path], env=env, capture_output=True, text=True)
written = open(secrets_conf).read() if good.returncode == 0 else ""
if "masterauth good-pw\n" not in written or "\nuser app reset on #" not in written:
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
