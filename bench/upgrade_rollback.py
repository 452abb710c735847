#!/usr/bin/env python3
"""Time from a failed health gate to the previous generation healthy again, in dev.

Starts `keyfleet dev` (KeyDB when KEYFLEET_KEYDB_SERVER is set, else redis-server),
stages a broken candidate (a directive the engine refuses) ROUNDS times, and reads each
rolled-back attempt from node1's /api/v1/upgrades: the switch back takes
rolled_back_at - (switched_at + gate.seconds) (whole seconds: the record's times are
Unix seconds), and proving the previous generation healthy takes rollback_gate.seconds
(measured by the agent, including gate_settle). deploy-rs needs its 30 s confirm
timeout just to decide.

  python3 bench/upgrade_rollback.py --keyfleet target/release/keyfleet --rounds 3
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gate-timeout", default="10s")
    ap.add_argument("--base-port", type=int, default=7900)
    a = ap.parse_args()
    engine = os.environ.get("KEYFLEET_KEYDB_SERVER") or shutil.which("redis-server")
    d = tempfile.mkdtemp(prefix="kf-bench-")
    dev = subprocess.Popen(
        [a.keyfleet, "dev", "--dir", d, "--no-s3", "--base-port", str(a.base_port),
         "--gate-timeout", a.gate_timeout],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{a.base_port + 100}"
    try:
        for _ in range(120):
            if os.path.exists(os.path.join(d, "fleet.json")):
                break
            time.sleep(0.5)
        back, prove, total = [], [], []
        for i in range(a.rounds):
            rel = f"broken-{i}"
            subprocess.run([a.keyfleet, "upgrade", "stage", engine, "--dir", d, "--release", rel,
                            "--extra-conf", "no-such-directive yes"], check=True,
                           stdout=subprocess.DEVNULL)
            deadline = time.time() + 300
            while time.time() < deadline:
                h = [x for x in get(f"{api}/api/v1/upgrades?history=50")["history"]
                     if x["release"] == rel and x["phase"] == "done"]
                if h:
                    break
                time.sleep(0.5)
            else:
                sys.exit(f"{rel}: no finished attempt")
            x = h[0]
            assert x["outcome"] == "rolled_back", x
            failed_at = x["switched_at_unix"] + x["gate"]["seconds"]
            b = max(0.0, x["rolled_back_at_unix"] - failed_at)
            p = x["rollback_gate"]["seconds"]
            back.append(b); prove.append(p); total.append(b + p)
            print(f"{rel}: switch back {b:.1f} s, previous generation proven healthy in {p:.1f} s: {b + p:.1f} s")
        print(f"engine {engine}: median failed gate -> healthy {statistics.median(total):.1f} s "
              f"(max {max(total):.1f} s) over {a.rounds} rounds; target < 10 s")
    finally:
        dev.terminate()
        dev.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
