#!/usr/bin/env python3
"""Benchmark: what the daemons' replication-safety checks cost the engines of a KeyDB fleet.

A 3-node `keyfleet dev --no-s3` fleet (KeyDB multi-master). Each engine's CPU
(utime+stime from /proc) is measured over windows of the same length, alternating:

  on       the daemons running, safety checks at their defaults (canary SET, PUBLISH
           and MGET in one round trip every second, TIME x5 per peer every 10 s, the
           divergence sampler at 20 keys/s, a fleet view every 5 s);
  stopped  every daemon SIGSTOPped: the engines keep their replication links and the
           client load, but no daemon traffic at all (the poller's INFO included);
  off      (with --safety-off) the dev daemons SIGSTOPped and, in their place, one daemon
           per node on the same config with `[safety] enabled = false` (so: the poller's
           INFO every 500 ms, no safety workers);
  amp10    (with --amplify) like off, but with every periodic check ten times as often
           as its default: canary every 100 ms, skew reads every 1 s, the divergence
           sampler at 200 keys/s.

on - stopped is what the whole daemon costs its engine (an upper bound for the checks);
on - off is what the safety checks alone cost. The order of the modes turns by one each
round, so a slow drift of the machine does not favour one mode. Two phases: idle (no
client) and steady load: a paced loop of SET/GET (alternating, 100-byte values, 10,000
keys, one connection, no pipelining) at a fixed rate against node1's engine, running
through every window of the phase, so each window carries the same requests; the SETs
replicate to node2 and node3. The daemons' own CPU is measured in their running windows.

Under load the checks' cost is small beside the machine's noise, so each contrast is the
mean of the rounds' paired differences with its 95% interval (Student's t); amp10 - off,
divided by ten, measures the same cost at ten times the signal, assuming it scales with
the checks' rates (the engine is awake for the load anyway).

Usage: bench/safety_bench.py [--keyfleet target/release/keyfleet] [--idle-window 60]
       [--load-window 30] [--rounds 3] [--idle-rounds N] [--rate 2000]
       [--safety-off [--amplify]] [--json]
Engine: $KEYFLEET_KEYDB_SERVER (a keydb-server; required). Everything on 127.0.0.1.
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

from common import Resp, cpu_seconds, free_port, start_dev, stop_dev, wait_port


class Load(threading.Thread):
    """SET/GET alternating at `rate` requests per second on one connection, paced by the
    clock in 10 ms ticks; a tick that falls behind catches up, so every window of the same
    length carries the same requests (`max_behind`: the worst backlog, in seconds)."""

    def __init__(self, port, rate):
        super().__init__(daemon=True)
        self.port, self.rate = port, rate
        self.stop = threading.Event()
        self.done = 0
        self.errors = 0
        self.max_behind = 0.0
        self.value = b"v" * 100

    def run(self):
        c = Resp(self.port)
        t0 = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            self.max_behind = max(self.max_behind, (due - self.done) / self.rate)
            while self.done < due and not self.stop.is_set():
                key = b"bench:%d" % (self.done % 10000)
                try:
                    if self.done % 2 == 0:
                        c.call(b"SET", key, self.value)
                    else:
                        c.call(b"GET", key)
                except Exception:
                    self.errors += 1
                    c.close()
                    time.sleep(0.1)
                    c = Resp(self.port)
                self.done += 1
            time.sleep(0.01)
        c.close()


def worker_threads(pid, seconds=1.0):
    """The KeyDB engine's worker threads (the event loops that run the commands): the
    threads seen waiting in epoll_wait over `seconds`. The others are its time thread
    (which updates the cached clock in a tight loop while any worker is awake), the bio
    threads, jemalloc's and the main thread, which only waits."""
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                if open(f"/proc/{pid}/task/{tid}/wchan").read().strip() == "do_epoll_wait":
                    seen.add(int(tid))
            except FileNotFoundError:
                pass
        time.sleep(0.02)
    if not seen:
        sys.exit(f"engine {pid}: no thread waits in epoll_wait; is it a keydb-server?")
    return sorted(seen)


def signal_all(pids, sig):
    for pid in pids:
        os.kill(pid, sig)


def wait_stopped(pids, want_stopped, timeout=5):
    """Until /proc says each of `pids` is stopped (state T) or not."""
    end = time.time() + timeout
    while time.time() < end:
        states = [open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] for pid in pids]
        if all((s == "T") == want_stopped for s in states):
            return
        time.sleep(0.01)
    sys.exit(f"daemons {pids} did not {'stop' if want_stopped else 'continue'}")


# The daemons' `[safety]` tables per mode, beside the dev daemons' defaults ("on").
VARIANTS = {
    "off": "enabled = false\n",
    # Every periodic check ten times as often as its default (the fastest the config
    # allows for the canary and the skew reads): under load the checks' cost is then ten
    # times what it is at the defaults, large enough to measure beside the noise.
    "amp10": 'canary_interval = "100ms"\nskew_interval = "1s"\ndivergence_rate = 200\n',
}


def start_variant_daemons(keyfleet, fleet, dev_dir, work, mode):
    """One daemon per node on its dev config with a new API port and the `[safety]` table
    of `mode` (VARIANTS); each is SIGSTOPped once it answers, ready for its windows."""
    procs = []
    for n in fleet["nodes"]:
        text = open(os.path.join(dev_dir, n["name"], "keyfleet.toml")).read()
        if "[safety]" in text:
            sys.exit(f"{n['name']}'s dev config already has a [safety] table")
        port = free_port()
        text, count = re.subn(r'(?m)^listen = "127\.0\.0\.1:\d+"$', f'listen = "127.0.0.1:{port}"', text)
        if count != 1:
            sys.exit(f"{n['name']}'s dev config: no single [api] listen line")
        config = os.path.join(work, f"{n['name']}-{mode}.toml")
        with open(config, "w") as f:
            f.write(text + "\n[safety]\n" + VARIANTS[mode])
        log = open(os.path.join(work, f"{n['name']}-{mode}.log"), "w")
        p = subprocess.Popen([keyfleet, "daemon", "--config", config], stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "RUST_LOG": "info"})
        procs.append(p)
        wait_port(port)
    time.sleep(1.0)
    for p in procs:
        if p.poll() is not None:
            sys.exit(f"a {mode} daemon exited ({p.returncode}); see {work}")
    signal_all([p.pid for p in procs], signal.SIGSTOP)
    wait_stopped([p.pid for p in procs], True)
    return procs


def run_phase(name, window, rounds, modes, engines, workers, groups, settle, load=None):
    """`rounds` rounds of one window per mode: per window, each engine's CPU, that of its
    worker threads (`workers`: node -> tids) and that of the daemons running in it.
    `groups`: mode -> the daemon pids running in that mode."""
    def worker_cpu():
        return {n: sum(cpu_seconds(engines[n], t) for t in workers[n]) for n in engines}

    every = sorted({pid for pids in groups.values() for pid in pids})
    out = []
    for r in range(rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for mode in order:
            running = groups[mode]
            stopped = [pid for pid in every if pid not in running]
            signal_all(stopped, signal.SIGSTOP)
            wait_stopped(stopped, True)
            signal_all(running, signal.SIGCONT)
            wait_stopped(running, False)
            time.sleep(settle)
            e0 = {n: cpu_seconds(pid) for n, pid in engines.items()}
            w0 = worker_cpu()
            d0 = {pid: cpu_seconds(pid) for pid in running}
            ops0 = load.done if load else 0
            t0 = time.monotonic()
            time.sleep(window)
            dt = time.monotonic() - t0
            e1 = {n: cpu_seconds(pid) for n, pid in engines.items()}
            w1 = worker_cpu()
            d1 = {pid: cpu_seconds(pid) for pid in running}
            row = {"phase": name, "round": r, "mode": mode, "seconds": dt,
                   "engine_cpu": {n: e1[n] - e0[n] for n in engines},
                   "worker_cpu": {n: w1[n] - w0[n] for n in engines},
                   "daemon_cpu": sum(d1[p] - d0[p] for p in running),
                   "ops": (load.done - ops0) if load else 0}
            out.append(row)
            print(f"  {name:4} round {r} {mode:7} {dt:6.1f} s  engines "
                  + " ".join(f"{v:.2f}" for v in row["engine_cpu"].values())
                  + "  workers " + " ".join(f"{v:.2f}" for v in row["worker_cpu"].values())
                  + f"  daemons {row['daemon_cpu']:.2f}" + (f"  ops {row['ops']}" if load else ""),
                  file=sys.stderr, flush=True)
    return out


def summarise(rows, phase, modes, names, window):
    rows = [r for r in rows if r["phase"] == phase]
    by = {m: [r for r in rows if r["mode"] == m] for m in modes}
    rounds = len(by["on"])

    def per_round(mode, node):
        return [r["engine_cpu"][node] if node else sum(r["engine_cpu"].values()) for r in by[mode]]

    res = {"window_s": window, "rounds": rounds, "engines": {}}
    for node in names + [None]:
        key = node or "sum"
        on, stopped = per_round("on", node), per_round("stopped", node)
        e = {"on": statistics.median(on), "stopped": statistics.median(stopped),
             "diff_vs_stopped": statistics.median([a - b for a, b in zip(on, stopped)]),
             "on_rounds": on, "stopped_rounds": stopped}
        e["diff_vs_stopped_pct"] = 100 * e["diff_vs_stopped"] / e["stopped"] if e["stopped"] else None
        if "off" in modes:
            off = per_round("off", node)
            e["off"] = statistics.median(off)
            e["off_rounds"] = off
            e["diff_vs_off"] = statistics.median([a - b for a, b in zip(on, off)])
            e["diff_vs_off_pct"] = 100 * e["diff_vs_off"] / e["off"] if e["off"] else None
        res["engines"][key] = e
    res["daemons_on"] = statistics.median([r["daemon_cpu"] for r in by["on"]])
    if "off" in modes:
        res["daemons_off"] = statistics.median([r["daemon_cpu"] for r in by["off"]])
    res["ops"] = {m: [r["ops"] for r in by[m]] for m in modes}
    return res


# Two-sided 95% quantiles of Student's t by degrees of freedom (then 1.96).
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
       11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09,
       20: 2.09, 25: 2.06, 30: 2.04}


def contrast(rows, phase, mode, base, scale=1.0, meter=lambda r: sum(r["engine_cpu"].values())):
    """`meter` (by default the engines' summed CPU) in `mode` minus `base`, paired by
    round, divided by `scale`: (mean, 95% half-width, mean as % of the base's mean, the
    same for the half-width)."""
    def sums(m):
        return [meter(r) for r in rows if r["phase"] == phase and r["mode"] == m]
    a, b = sums(mode), sums(base)
    diffs = [(x - y) / scale for x, y in zip(a, b)]
    mean = statistics.mean(diffs)
    n = len(diffs)
    half = 0.0
    if n > 1:
        t = T95.get(n - 1) or T95[max(k for k in T95 if k <= n - 1)]
        half = t * statistics.stdev(diffs) / n ** 0.5
    base_mean = statistics.mean(b)
    return mean, half, 100 * mean / base_mean, 100 * half / base_mean


def print_contrasts(rows, phase, modes):
    """What the checks cost the engines, from the paired rounds: on - off directly, and
    amp10 - off divided by ten (the checks at ten times their rates, scaled back)."""
    if "off" not in modes:
        return
    lines = [("on - off", "on", 1.0)]
    if "amp10" in modes:
        lines += [("amp10 - off", "amp10", 1.0), ("(amp10 - off) / 10", "amp10", 10.0)]
    meters = [("summed engine CPU", lambda r: sum(r["engine_cpu"].values()), "the engines' CPU"),
              ("the engines' worker threads", lambda r: sum(r["worker_cpu"].values()), "their CPU"),
              ("the engines' other threads (the time thread)",
               lambda r: sum(r["engine_cpu"].values()) - sum(r["worker_cpu"].values()), "their CPU")]
    for title, meter, of in meters:
        print(f"  the checks' cost, {title}, mean of the paired rounds with its 95% interval:")
        for label, mode, scale in lines:
            m, h, mp, hp = contrast(rows, phase, mode, "off", scale, meter)
            print(f"    {label:20} {m:+.3f} ± {h:.3f} s per window = {mp:+.2f}% ± {hp:.2f}% of {of} without them")


def print_summary(label, s, modes):
    off = "off" in modes
    print(f"{label}: {s['window_s']:.0f} s windows, {s['rounds']} round{'s' if s['rounds'] != 1 else ''}, medians (CPU seconds per window)")
    head = f"{'engine':8}{'on':>8}{'stopped':>9}{'on-stop':>9}{'%':>7}"
    if off:
        head += f"{'off':>8}{'on-off':>9}{'%':>7}"
    print(head)
    pct = lambda v: f"{v:>7.1f}" if v is not None else f"{'-':>7}"
    for node, e in s["engines"].items():
        line = f"{node:8}{e['on']:>8.2f}{e['stopped']:>9.2f}{e['diff_vs_stopped']:>9.3f}{pct(e['diff_vs_stopped_pct'])}"
        if off:
            line += f"{e['off']:>8.2f}{e['diff_vs_off']:>9.3f}{pct(e['diff_vs_off_pct'])}"
        print(line)
    sums = s["engines"]["sum"]
    diffs = [a - b for a, b in zip(sums["on_rounds"], sums["stopped_rounds"])]
    print(f"  sum on-stopped per round: " + ", ".join(f"{d:+.3f}" for d in diffs))
    line = (f"  daemons' own CPU in 'on' windows (3 daemons): {s['daemons_on']:.2f} s "
            f"({100 * s['daemons_on'] / s['window_s']:.2f}% of one core)")
    if off:
        line += f"; in 'off' windows: {s['daemons_off']:.2f} s"
    print(line)
    if any(s["ops"].values()) and any(v for vs in s["ops"].values() for v in vs):
        print("  requests per window: " + "; ".join(f"{m} {min(v)}..{max(v)}" for m, v in s["ops"].items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    ap.add_argument("--idle-window", type=float, default=60, help="seconds per idle window")
    ap.add_argument("--load-window", type=float, default=30, help="seconds per load window")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (one window per mode each) per phase")
    ap.add_argument("--rate", type=int, default=2000, help="requests per second in the load phase")
    ap.add_argument("--settle", type=float, default=2.0, help="unmeasured seconds after each switch")
    ap.add_argument("--safety-off", action="store_true",
                    help="also windows with daemons whose [safety] is disabled (adds half the run time)")
    ap.add_argument("--amplify", action="store_true",
                    help="also windows with daemons running every check ten times as often (needs --safety-off)")
    ap.add_argument("--idle-rounds", type=int, help="rounds of the idle phase (default: --rounds)")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = ap.parse_args()
    if not os.environ.get("KEYFLEET_KEYDB_SERVER"):
        sys.exit("set KEYFLEET_KEYDB_SERVER to a keydb-server")
    if args.amplify and not args.safety_off:
        sys.exit("--amplify compares with the safety-off daemons: add --safety-off")
    idle_rounds = args.idle_rounds or args.rounds
    if idle_rounds < 1 or args.rounds < 1 or args.idle_window <= 0 or args.load_window <= 0 or args.rate <= 0:
        sys.exit("--rounds, windows and --rate must be positive")
    keyfleet = os.path.abspath(args.keyfleet)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="safety-bench-")
    dev_dir = os.path.join(work, "fleet")
    os.makedirs(dev_dir)
    dev = fleet = load = None
    extra = []
    ok = False
    try:
        dev, fleet = start_dev(keyfleet, dev_dir)
        names = [n["name"] for n in fleet["nodes"]]
        engines = {n["name"]: n["engine_pid"] for n in fleet["nodes"]}
        daemons = [n["daemon_pid"] for n in fleet["nodes"]]
        port1 = int(fleet["nodes"][0]["engine_addr"].rsplit(":", 1)[1])
        workers = {n: worker_threads(pid) for n, pid in engines.items()}
        modes = ["on", "stopped"]
        groups = {"on": daemons, "stopped": []}
        for mode in (["off"] if args.safety_off else []) + (["amp10"] if args.amplify else []):
            procs = start_variant_daemons(keyfleet, fleet, dev_dir, work, mode)
            extra += procs
            modes.append(mode)
            groups[mode] = [p.pid for p in procs]
        time.sleep(3)  # the canaries and first skew reads are made
        version = subprocess.run([keyfleet, "--version"], capture_output=True, text=True).stdout.strip()
        rows = run_phase("idle", args.idle_window, idle_rounds, modes, engines, workers, groups, args.settle)
        load = Load(port1, args.rate)
        load.start()
        time.sleep(max(args.settle, 3))  # the keyspace fills, replication settles
        rows += run_phase("load", args.load_window, args.rounds, modes, engines, workers, groups, args.settle, load)
        load.stop.set()
        load.join(5)
        # Continue every dev daemon again: their links and state must be intact.
        signal_all(daemons + [p.pid for p in extra], signal.SIGCONT)
        idle = summarise(rows, "idle", modes, names, args.idle_window)
        loaded = summarise(rows, "load", modes, names, args.load_window)
        if args.json:
            print(json.dumps({"keyfleet": version, "engine": os.environ["KEYFLEET_KEYDB_SERVER"],
                              "rate": args.rate, "load_errors": load.errors, "load_max_behind_s": load.max_behind, "idle": idle, "load": loaded,
                              "windows": rows}, indent=2))
            ok = True
            return
        print(f"{version}, engine {os.environ['KEYFLEET_KEYDB_SERVER']}, 3-node dev fleet (KeyDB multi-master)")
        print("modes: on = daemons running (safety checks at defaults); stopped = every daemon SIGSTOPped"
              + ("; off = daemons with [safety] enabled = false" if args.safety_off else ""))
        print_summary("idle", idle, modes)
        print_contrasts(rows, "idle", modes)
        print_summary(f"load ({args.rate} req/s SET/GET on node1, replicated)", loaded, modes)
        print_contrasts(rows, "load", modes)
        print(f"  load generator: {load.errors} errors, at most {load.max_behind:.2f} s behind its schedule")
        ok = True
    finally:
        if load:
            load.stop.set()
        for p in extra:
            try:
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
                p.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
        stop_dev(dev, fleet)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (the fleet's configs and logs are in {dev_dir})", file=sys.stderr)


if __name__ == "__main__":
    main()
