"""What a KeyDB engine's threads do, read from outside it: which threads are its workers,
how often each thread wakes, and (with perf) how much of its CPU is lock spinning.

KeyDB 6.3.4 runs each command on a worker thread (an event loop waiting in epoll_wait);
while any worker is awake its time thread updates the cached clock in a tight loop, and
both spin on fastlocks, so a wake-up costs the engine far more than the command it
serves.
"""
import os, subprocess, sys, time


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


def run_seconds(pid, tids=None):
    """CPU time of `pid`'s threads `tids` (all of them by default), in seconds, from the
    scheduler's own count (/proc/PID/task/TID/schedstat, nanoseconds): /proc's utime and
    stime are rounded to 10 ms ticks, which is noise beside a window's few seconds."""
    total = 0
    for tid in all_threads(pid) if tids is None else tids:
        try:
            total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended
    return total / 1e9


def all_threads(pid):
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def pin(pid, workers, worker_cpu, other_cpu):
    """Pins the engine `pid`'s worker threads to `worker_cpu` and its other threads (the
    time thread, bio and jemalloc threads) to `other_cpu`, so its worker and its time
    thread never share a core, as on a host of its own. Unpinned on a 2-core machine
    shared by three engines, KeyDB 6.3.4's engines move between two levels of CPU use
    (the whole fleet's doubles for tens of seconds, then halves again, whatever they
    serve), which is most of the noise of an unpinned run."""
    for tid in all_threads(pid):
        try:
            os.sched_setaffinity(tid, {worker_cpu if tid in workers else other_cpu})
        except ProcessLookupError:
            pass


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
