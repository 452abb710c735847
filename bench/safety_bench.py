#!/usr/bin/env python3
"""Benchmark: what the daemons' replication-safety checks cost the engines of a KeyDB fleet.

A 3-node `keyfleet dev --no-s3` fleet (KeyDB multi-master). Each engine's CPU
(utime+stime from /proc) is measured over windows of the same length, alternating:

  on       the daemons running, safety checks at their defaults (canary SET, PUBLISH
           and MGET in one round trip every second, TIME x5 per peer every 10 s, the
           divergence sampler at 20 keys/s in 5 s rounds, a fleet view every 5 s);
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

Besides the CPU of each engine and of its worker threads, every window counts the
wake-ups (voluntary context switches) of the workers and of the other threads: KeyDB
6.3.4 spins on its locks for about a millisecond each time its worker wakes (its time
thread loops while any worker is awake), so at idle what the checks cost the engine
is mostly how often they wake it. With --perf, each window is also profiled (perf
record, cpu-clock, one sample per 250 us of CPU) and each engine's CPU is split into
the lock spin (fastlock_*) and the rest, the work itself; the contrasts are printed
for both.

Usage: bench/safety_bench.py [--keyfleet target/release/keyfleet] [--idle-window 60]
       [--load-window 30] [--rounds 3] [--idle-rounds N] [--rate 2000]
       [--safety-off [--amplify] [--no-stopped]] [--perf] [--json]
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


def wakeups(pid, tids):
    """Voluntary context switches of `pid`'s threads `tids`, summed: each is one wait
    (epoll_wait, a lock, a sleep) that ended with the thread woken again."""
    total = 0
    for tid in tids:
        try:
            for line in open(f"/proc/{pid}/task/{tid}/status"):
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def all_threads(pid):
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


# perf's sampling period: one sample per this much CPU time (cpu-clock, ns).
PERF_PERIOD_NS = 250_000
# KeyDB's lock spin: what its threads run while they wait on a fastlock.
SPIN_SYMBOLS = {"fastlock_lock", "fastlock_trylock", "fastlock_sleep"}


def perf_record(pids, window, path):
    """`perf record` of `pids` over `window` seconds, into `path`."""
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-c", str(PERF_PERIOD_NS),
                    "-p", ",".join(str(p) for p in pids), "-o", path, "--", "sleep", str(window)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_split(pids, path):
    """Per pid of a `perf_record` profile: (CPU seconds outside the lock spin, in the
    spin), from the samples' symbols. Needs a keydb-server with symbols (its own build
    keeps them)."""
    # Each line: "PID/TID IP SYMBOL" (the symbol is missing where none resolves).
    out = subprocess.run(["perf", "script", "-i", path, "-F", "pid,tid,ip,sym"], check=True,
                         capture_output=True, text=True).stdout
    busy = {p: 0 for p in pids}
    spin = {p: 0 for p in pids}
    for line in out.splitlines():
        words = line.split()
        if not words or "/" not in words[0]:
            continue
        pid = int(words[0].split("/")[0])
        if pid not in busy:
            continue
        sym = words[2] if len(words) > 2 else ""
        if sym.split("+")[0] in SPIN_SYMBOLS:
            spin[pid] += 1
        else:
            busy[pid] += 1
    if not any(spin.values()) and sum(busy.values()) > 1000:
        sys.exit(f"{path}: no sample in {sorted(SPIN_SYMBOLS)}; does the engine have its symbols?")
    sec = PERF_PERIOD_NS / 1e9
    return {p: (busy[p] * sec, spin[p] * sec) for p in pids}


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


def run_phase(name, window, rounds, modes, engines, workers, groups, settle, load=None, perf_dir=None):
    """`rounds` rounds of one window per mode: per window, each engine's CPU, that of its
    worker threads (`workers`: node -> tids), the wake-ups of its workers and of its
    other threads, and the CPU of the daemons running in it. With `perf_dir`, each
    window is also profiled: each engine's CPU outside KeyDB's lock spin and in it.
    `groups`: mode -> the daemon pids running in that mode."""
    def worker_cpu():
        return {n: sum(cpu_seconds(engines[n], t) for t in workers[n]) for n in engines}

    def woken():
        w = {n: wakeups(engines[n], workers[n]) for n in engines}
        rest = {n: wakeups(engines[n], all_threads(engines[n])) - w[n] for n in engines}
        return w, rest

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
            k0, o0 = woken()
            ops0 = load.done if load else 0
            t0 = time.monotonic()
            if perf_dir:
                perf_record(list(engines.values()), window, os.path.join(perf_dir, "perf.data"))
            else:
                time.sleep(window)
            dt = time.monotonic() - t0
            e1 = {n: cpu_seconds(pid) for n, pid in engines.items()}
            w1 = worker_cpu()
            k1, o1 = woken()
            d1 = {pid: cpu_seconds(pid) for pid in running}
            ops1 = load.done if load else 0
            # The profile is read after the window has closed: its CPU is not counted.
            if perf_dir:
                profile = perf_split(list(engines.values()), os.path.join(perf_dir, "perf.data"))
            row = {"phase": name, "round": r, "mode": mode, "seconds": dt,
                   "engine_cpu": {n: e1[n] - e0[n] for n in engines},
                   "worker_cpu": {n: w1[n] - w0[n] for n in engines},
                   "worker_wakeups": {n: k1[n] - k0[n] for n in engines},
                   "other_wakeups": {n: o1[n] - o0[n] for n in engines},
                   "daemon_cpu": sum(d1[p] - d0[p] for p in running),
                   "ops": ops1 - ops0}
            if perf_dir:
                row["busy_cpu"] = {n: profile[pid][0] for n, pid in engines.items()}
                row["spin_cpu"] = {n: profile[pid][1] for n, pid in engines.items()}
            out.append(row)
            print(f"  {name:4} round {r} {mode:7} {dt:6.1f} s  engines "
                  + " ".join(f"{v:.2f}" for v in row["engine_cpu"].values())
                  + "  workers " + " ".join(f"{v:.2f}" for v in row["worker_cpu"].values())
                  + "  wake-ups " + " ".join(str(v) for v in row["worker_wakeups"].values())
                  + (("  busy " + " ".join(f"{v:.2f}" for v in row["busy_cpu"].values())) if perf_dir else "")
                  + f"  daemons {row['daemon_cpu']:.2f}" + (f"  ops {row['ops']}" if load else ""),
                  file=sys.stderr, flush=True)
    return out


def bases(modes):
    """The modes "on" is compared with, in the summary's columns."""
    return [m for m in ("stopped", "off") if m in modes]


def summarise(rows, phase, modes, names, window):
    rows = [r for r in rows if r["phase"] == phase]
    by = {m: [r for r in rows if r["mode"] == m] for m in modes}
    rounds = len(by["on"])

    def per_round(mode, node):
        return [r["engine_cpu"][node] if node else sum(r["engine_cpu"].values()) for r in by[mode]]

    res = {"window_s": window, "rounds": rounds, "engines": {}}
    for node in names + [None]:
        key = node or "sum"
        on = per_round("on", node)
        e = {"on": statistics.median(on), "on_rounds": on}
        for base in bases(modes):
            other = per_round(base, node)
            diff = statistics.median([a - b for a, b in zip(on, other)])
            e[base] = statistics.median(other)
            e[f"{base}_rounds"] = other
            e[f"diff_vs_{base}"] = diff
            e[f"diff_vs_{base}_pct"] = 100 * diff / e[base] if e[base] else None
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
    same for the half-width). Each window's figure is first brought to the phase's mean
    window length, as windows differ by a few tenths of a second (more with --perf)."""
    phase_rows = [r for r in rows if r["phase"] == phase]
    length = statistics.mean(r["seconds"] for r in phase_rows)

    def sums(m):
        return [meter(r) * length / r["seconds"] for r in phase_rows if r["mode"] == m]
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
    if "busy_cpu" in rows[0]:
        meters += [("the engines' CPU outside the lock spin (perf)", lambda r: sum(r["busy_cpu"].values()),
                    "the engines' CPU outside the spin"),
                   ("the engines' CPU in the lock spin (perf)", lambda r: sum(r["spin_cpu"].values()),
                    "the engines' CPU in the spin")]
    for title, meter, of in meters:
        print(f"  the checks' cost, {title}, mean of the paired rounds with its 95% interval:")
        for label, mode, scale in lines:
            m, h, mp, hp = contrast(rows, phase, mode, "off", scale, meter)
            print(f"    {label:20} {m:+.3f} ± {h:.3f} s per window = {mp:+.2f}% ± {hp:.2f}% of {of} without them")
    counts = [("the workers' wake-ups", lambda r: sum(r["worker_wakeups"].values())),
              ("the other threads' wake-ups", lambda r: sum(r["other_wakeups"].values()))]
    for title, meter in counts:
        print(f"  {title} (summed over the engines), per second:")
        for label, mode, scale in lines[:1]:
            m, h, mp, hp = contrast(rows, phase, mode, "off", scale, meter)
            secs = statistics.mean(r["seconds"] for r in rows if r["phase"] == phase)
            base = statistics.mean(meter(r) for r in rows if r["phase"] == phase and r["mode"] == "off")
            print(f"    without the checks {base / secs:8.1f}; {label} {m / secs:+.1f} ± {h / secs:.1f} ({mp:+.1f}%)")


def print_summary(label, s, modes):
    off = "off" in modes
    print(f"{label}: {s['window_s']:.0f} s windows, {s['rounds']} round{'s' if s['rounds'] != 1 else ''}, medians (CPU seconds per window)")
    short = {"stopped": "stop", "off": "off"}
    head = f"{'engine':8}{'on':>8}"
    for base in bases(modes):
        head += f"{base:>9}{'on-' + short[base]:>9}{'%':>7}"
    print(head)
    pct = lambda v: f"{v:>7.1f}" if v is not None else f"{'-':>7}"
    for node, e in s["engines"].items():
        line = f"{node:8}{e['on']:>8.2f}"
        for base in bases(modes):
            line += f"{e[base]:>9.2f}{e[f'diff_vs_{base}']:>9.3f}{pct(e[f'diff_vs_{base}_pct'])}"
        print(line)
    sums = s["engines"]["sum"]
    for base in bases(modes):
        diffs = [a - b for a, b in zip(sums["on_rounds"], sums[f"{base}_rounds"])]
        print(f"  sum on-{short[base]} per round: " + ", ".join(f"{d:+.3f}" for d in diffs))
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
    ap.add_argument("--no-stopped", action="store_true",
                    help="no windows with every daemon stopped (needs --safety-off): on and off only, "
                         "so more rounds fit in the same time")
    ap.add_argument("--perf", action="store_true",
                    help="profile every window with perf: the engines' CPU outside KeyDB's lock spin, and in it")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = ap.parse_args()
    if args.perf and not shutil.which("perf"):
        sys.exit("--perf needs perf (Debian: linux-perf)")
    if not os.environ.get("KEYFLEET_KEYDB_SERVER"):
        sys.exit("set KEYFLEET_KEYDB_SERVER to a keydb-server")
    if args.no_stopped and not args.safety_off:
        sys.exit("--no-stopped leaves only the on windows: add --safety-off")
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
        modes = ["on"] if args.no_stopped else ["on", "stopped"]
        groups = {"on": daemons, "stopped": []}
        for mode in (["off"] if args.safety_off else []) + (["amp10"] if args.amplify else []):
            procs = start_variant_daemons(keyfleet, fleet, dev_dir, work, mode)
            extra += procs
            modes.append(mode)
            groups[mode] = [p.pid for p in procs]
        time.sleep(3)  # the canaries and first skew reads are made
        version = subprocess.run([keyfleet, "--version"], capture_output=True, text=True).stdout.strip()
        perf_dir = work if args.perf else None
        rows = run_phase("idle", args.idle_window, idle_rounds, modes, engines, workers, groups, args.settle,
                         perf_dir=perf_dir)
        load = Load(port1, args.rate)
        load.start()
        time.sleep(max(args.settle, 3))  # the keyspace fills, replication settles
        rows += run_phase("load", args.load_window, args.rounds, modes, engines, workers, groups, args.settle, load,
                          perf_dir)
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
        said = {"on": "on = daemons running (safety checks at defaults)",
                "stopped": "stopped = every daemon SIGSTOPped",
                "off": "off = daemons with [safety] enabled = false",
                "amp10": "amp10 = every check ten times as often"}
        print("modes: " + "; ".join(said[m] for m in modes))
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
