"""Where the canary's engine cost comes from: on a running `keyfleet dev` KeyDB fleet
(its directory the argument), every daemon is stopped and this script writes what the
canaries would, one command per node per second, in 30 s windows: nothing, the SET
only, the PUBLISH only, both. Prints the three engines' CPU seconds per window, two
rounds. The daemons are resumed at the end.

    python3 bench/canary_cost.py .keyfleet-dev
"""
import json, os, signal, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Resp, cpu_seconds
d = sys.argv[1]
fleet = json.load(open(os.path.join(d, "fleet.json")))
nodes = fleet["nodes"]
for n in nodes: os.kill(n["daemon_pid"], signal.SIGSTOP)
conns = [Resp(int(n["engine_addr"].rsplit(":",1)[1])) for n in nodes]
def window(mode, secs=30):
    t0 = [cpu_seconds(n["engine_pid"]) for n in nodes]
    end = time.time() + secs; seq = 0
    while time.time() < end:
        seq += 1
        for i, c in enumerate(conns):
            v = f"{seq} {int(time.time()*1e6)}"
            if mode in ("both", "set"): c.call("SET", f"keyfleet:canary:node{i+1}", v)
            if mode in ("both", "publish"): c.call("PUBLISH", "keyfleet:canary", f"node{i+1} {v}")
        time.sleep(1)
    return sum(cpu_seconds(n["engine_pid"]) - a for n, a in zip(nodes, t0))
res = {}
for r in range(2):
    for m in ("none", "set", "publish", "both"):
        res.setdefault(m, []).append(window(m))
for m, v in res.items(): print(m, [round(x, 3) for x in v])
for n in nodes: os.kill(n["daemon_pid"], signal.SIGCONT)
