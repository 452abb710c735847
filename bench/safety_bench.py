#!/usr/bin/env python3
"""Benchmark: what the daemons' replication-safety checks cost the engines of a KeyDB fleet.

A 3-node `keyfleet dev --no-s3` fleet (KeyDB multi-master). Each engine's CPU (the
scheduler's run time of its threads, /proc/PID/task/TID/schedstat, in nanoseconds) is
measured over windows of the same length, alternating:

  on       the daemons running, safety checks at their defaults (canary SET, PUBLISH
           and MGET in one round trip every second, TIME x5 per peer every 10 s, the
           divergence sampler at 20 keys/s in 5 s rounds, a fleet view every 5 s);
  stopped  every daemon SIGSTOPped: the engines keep their replication links and the
           client load, but no daemon traffic at all (the poller's INFO included);
  off      (with --safety-off) the dev daemons SIGSTOPped and, in their place, one daemon
           per node on the same config with `[safety] enabled = false` (so: the poller's
           INFO every 500 ms, no safety workers), and the engines' keyspace notifications
           off (the checks need `Egx`, which keyfleet sets only while they are on);
  amp10    (with --amplify) like off, but with every periodic check ten times as often
           as its default: canary every 100 ms, skew reads every 1 s, the divergence
           sampler at 200 keys/s.

on - stopped is what the whole daemon costs its engine (the engines keep their keyspace
notifications in the stopped windows, with nobody listening); on - off is what the
safety checks cost, notifications included. The order of the modes turns by one each
round, so a slow drift of the machine does not favour one mode. Two phases: idle (no
client) and steady load: a paced loop of requests (100-byte values, one connection, no
pipelining; `Load`: by default SET/GET with TTLs and DELs, so every keyevent the checks
listen to is published) at a fixed rate against node1's engine, running through every
window of the phase, so each window carries the same requests; the writes replicate to
node2 and node3. The daemons' own CPU is measured in their running windows.

With --pin, every engine's worker threads run on one CPU and their other threads (the
time threads above all) on another, so no engine's worker shares a core with its own
time thread, as on a host of its own with two cores or more.
Unpinned, on a 2-core machine shared by three engines, the whole fleet's CPU flips
between two levels (one twice the other) every minute or so, whatever the checks do:
a fastlock waiter spins while the holder waits for the same core.

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
       [--load-window 30] [--rounds 3] [--idle-rounds N] [--rate 2000] [--mix churn|setget]
       [--safety-off [--amplify] [--no-stopped]] [--pin] [--perf] [--json]
Engine: $KEYFLEET_KEYDB_SERVER (a keydb-server; required). Everything on 127.0.0.1.
"""
import argparse, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

from common import Resp, cpu_seconds, free_port, start_dev, stop_dev, wait_port
from safety_report import print_contrasts, print_summary, summarise
from keydb_meters import all_threads, perf_record, perf_split, pin, run_seconds, wakeups, worker_threads


class Load(threading.Thread):
    """Requests at `rate` a second on one connection, paced by the clock in 10 ms ticks;
    a tick that falls behind catches up, so every window of the same length carries the
    same requests (`max_behind`: the worst backlog, in seconds). `mix` "setget": SET and
    GET alternating on 10,000 keys (as before 2026-12-08: each GET asks for a key no SET
    writes, so it misses). "churn": of every ten requests four SETs on those keys, four
    GETs of the key just written, one SET with a 2 s TTL on a key of its own (each
    expires: an `expire` keyevent when set, an `expired` one 2 s later) and one DEL of a
    key a SET wrote 2.5 s before (a `del` keyevent): every keyevent the resurrected-deletes
    check listens to."""

    def __init__(self, port, rate, mix="churn"):
        super().__init__(daemon=True)
        self.port, self.rate, self.mix = port, rate, mix
        self.stop = threading.Event()
        self.done = 0
        self.errors = 0
        self.max_behind = 0.0
        self.value = b"v" * 100

    def request(self, i):
        key = lambda n: b"bench:%d" % (n % 10000)
        if self.mix == "setget":
            return (b"SET", key(i), self.value) if i % 2 == 0 else (b"GET", key(i))
        if i % 10 < 8:
            return (b"SET", key(i), self.value) if i % 2 == 0 else (b"GET", key(i - 1))
        if i % 10 == 8:
            return (b"SET", b"bench:ttl:%d" % i, self.value, b"EX", b"2")
        return (b"DEL", key(i + 5001))

    def run(self):
        c = Resp(self.port)
        t0 = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            self.max_behind = max(self.max_behind, (due - self.done) / self.rate)
            while self.done < due and not self.stop.is_set():
                try:
                    c.call(*self.request(self.done))
                except Exception:
                    self.errors += 1
                    c.close()
                    time.sleep(0.1)
                    c = Resp(self.port)
                self.done += 1
            time.sleep(0.01)
        c.close()


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


def set_notifications(ports, mode):
    """The engines' keyspace notifications for `mode`: the checks need `Egx` (keyfleet's
    config sets it whenever they are on); without them an engine publishes none, so the
    off windows leave it unset, as a node with `[safety] enabled = false` would."""
    value = "" if mode == "off" else "Egx"
    for port in ports:
        c = Resp(port)
        c.call("CONFIG", "SET", "notify-keyspace-events", value)
        c.close()


def run_phase(name, window, rounds, modes, engines, workers, groups, settle, ports, load=None, perf_dir=None):
    """`rounds` rounds of one window per mode: per window, each engine's CPU, that of its
    worker threads (`workers`: node -> tids), the wake-ups of its workers and of its
    other threads, and the CPU of the daemons running in it. With `perf_dir`, each
    window is also profiled: each engine's CPU outside KeyDB's lock spin and in it.
    `groups`: mode -> the daemon pids running in that mode."""
    def worker_cpu():
        return {n: run_seconds(engines[n], workers[n]) for n in engines}

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
            set_notifications(ports, mode)
            signal_all(running, signal.SIGCONT)
            wait_stopped(running, False)
            time.sleep(settle)
            e0 = {n: run_seconds(pid) for n, pid in engines.items()}
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
            e1 = {n: run_seconds(pid) for n, pid in engines.items()}
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    ap.add_argument("--idle-window", type=float, default=60, help="seconds per idle window")
    ap.add_argument("--load-window", type=float, default=30, help="seconds per load window")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (one window per mode each) per phase")
    ap.add_argument("--rate", type=int, default=2000, help="requests per second in the load phase")
    ap.add_argument("--mix", choices=["churn", "setget"], default="churn",
                    help="the load: SET/GET with TTLs and DELs (churn), or SET/GET alone (setget, as before 2026-12-08)")
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
    ap.add_argument("--pin", action="store_true",
                    help="pin every engine's worker threads to one CPU and its other threads to another")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        sys.exit("--pin needs two CPUs")
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
        ports = [int(n["engine_addr"].rsplit(":", 1)[1]) for n in fleet["nodes"]]
        port1 = ports[0]
        workers = {n: worker_threads(pid) for n, pid in engines.items()}
        if args.pin:
            for n, pid in engines.items():
                pin(pid, workers[n], cpus[0], cpus[1])
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
                         ports, perf_dir=perf_dir)
        load = Load(port1, args.rate, args.mix)
        load.start()
        time.sleep(max(args.settle, 3))  # the keyspace fills, replication settles
        rows += run_phase("load", args.load_window, args.rounds, modes, engines, workers, groups, args.settle,
                          ports, load, perf_dir)
        load.stop.set()
        load.join(5)
        # Continue every dev daemon again: their links and state must be intact.
        signal_all(daemons + [p.pid for p in extra], signal.SIGCONT)
        set_notifications(ports, "on")
        idle = summarise(rows, "idle", modes, names, args.idle_window)
        loaded = summarise(rows, "load", modes, names, args.load_window)
        if args.json:
            print(json.dumps({"keyfleet": version, "engine": os.environ["KEYFLEET_KEYDB_SERVER"],
                              "rate": args.rate, "mix": args.mix, "pinned": args.pin, "load_errors": load.errors, "load_max_behind_s": load.max_behind, "idle": idle, "load": loaded,
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
        said_mix = {"churn": "SET/GET with TTLs and DELs", "setget": "SET/GET"}[args.mix]
        print_summary(f"load ({args.rate} req/s {said_mix} on node1, replicated)", loaded, modes)
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
