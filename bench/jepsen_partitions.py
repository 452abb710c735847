#!/usr/bin/env python3
"""A Jepsen-style run: writers on every node of a KeyDB multi-master `keyfleet dev
--partitionable` fleet (3 nodes) while a nemesis cuts nodes off and heals them; then what
the fleet kept, and what the daemons' safety figures said meanwhile.

Each writer (one thread and one connection per node, to that node's engine directly, so
writes are accepted on every side of a cut) makes, every iteration n, one pipeline of:
  SET w:NODE:n n            unique keys, append-only: an acknowledged one missing at the
                            end is a lost write;
  INCR c:shared             the shared counter: acknowledged INCRs summed over the writers
                            against its final value (increments lost to last-write-wins);
  SET r:K NODE:n            K random in 0..9: which write each register kept;
and now and then DEL d:K (K in 0..199; the 200 keys are made on node1 before the run and
checked on every node): an acknowledged DEL whose key exists at the end is a resurrected
delete. Nothing writes a d: key after the start.
The nemesis runs `keyfleet dev partition` on one or two random nodes (two cut every link),
waits 2-8 s, `keyfleet dev heal`, waits 2-8 s, and again. Once a second every daemon's
GET /api/v1/safety and GET /api/v1/fleet are sampled. After the run: heal, the writers
stop, and every node is read (DBSIZE, SCAN and MGET of every key but keyfleet's own
canaries) until all three hold the same keys and values, or --converge-timeout.

Usage: bench/jepsen_partitions.py [--keyfleet target/release/keyfleet] [--duration 60]
       [--rate 100] [--del-probability 0.01] [--cut-min 2] [--cut-max 8] [--seed S]
       [--converge-timeout 60] [--no-nemesis] [--keep] [--json]
--no-nemesis is the control run: the same writers, no partition. The fleet's directory
(configs, engine and daemon logs) is removed at the end unless --keep, or an engine was
found down.
Engine: $KEYFLEET_KEYDB_SERVER (a keydb-server; required). Everything on 127.0.0.1.
"""
import argparse, http.client, json, os, random, shutil, signal, subprocess, sys, tempfile, threading, time
from urllib.parse import urlsplit

from common import Resp, RespError, start_dev, stop_dev
from jepsen_analysis import REGISTERS, analyse, report

DKEYS = 200


def engine_port(node):
    return int(node["engine_addr"].rsplit(":", 1)[1])


class Writer(threading.Thread):
    def __init__(self, name, port, rate, p_del, seed, t0):
        super().__init__(daemon=True, name=f"writer-{name}")
        self.node, self.port, self.rate, self.p_del = name, port, rate, p_del
        self.rng = random.Random(seed)
        self.t0 = t0
        self.stop = threading.Event()
        self.acked_w = []          # (n, t_sent) of every acknowledged SET w:NODE:n
        self.unknown_w = 0         # sent, no answer (timeout, connection lost): may or may not exist
        self.failed_w = 0          # an error reply: not written
        self.incr_ok = self.incr_unknown = self.incr_failed = 0
        self.registers = []        # (k, n, t_sent, t_acked) of acknowledged SET r:k
        self.deletes = []          # (k, reply, t_acked) of acknowledged DEL d:k
        self.errors = {}           # error reply or exception text -> count
        self.iterations = 0

    def error(self, text):
        text = text.split(" ")[0] if text.startswith(("-", "LOADING", "ERR", "READONLY", "MASTERDOWN")) else text
        self.errors[text] = self.errors.get(text, 0) + 1

    def run(self):
        conn = None
        start = time.monotonic()
        n = 0
        while not self.stop.is_set():
            # Paced: iteration n starts at n / rate seconds.
            ahead = start + n / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            n += 1
            k = self.rng.randrange(REGISTERS)
            cmds = [(b"SET", f"w:{self.node}:{n}", n), (b"INCR", b"c:shared"), (b"SET", f"r:{k}", f"{self.node}:{n}")]
            dk = self.rng.randrange(DKEYS) if self.rng.random() < self.p_del else None
            if dk is not None:
                cmds.append((b"DEL", f"d:{dk}"))
            t_sent = time.time() - self.t0
            try:
                if conn is None:
                    conn = Resp(self.port, timeout=2.0)
                replies = conn.pipeline(cmds)
            except (OSError, ConnectionError) as e:
                # No answer: each command may or may not have been applied.
                self.error(type(e).__name__)
                self.unknown_w += 1
                self.incr_unknown += 1
                if conn:
                    conn.close()
                conn = None
                time.sleep(0.05)
                continue
            t_acked = time.time() - self.t0
            self.iterations += 1
            w, incr, reg = replies[0], replies[1], replies[2]
            if w == "OK":
                self.acked_w.append((n, t_sent))
            else:
                self.failed_w += 1
                self.error(str(w))
            if isinstance(incr, int):
                self.incr_ok += 1
            else:
                self.incr_failed += 1
                self.error(str(incr))
            if reg == "OK":
                self.registers.append((k, n, t_sent, t_acked))
            else:
                self.error(str(reg))
            if dk is not None:
                if isinstance(replies[3], int):
                    self.deletes.append((dk, replies[3], t_acked))
                else:
                    self.error(str(replies[3]))
        if conn:
            conn.close()


class Nemesis(threading.Thread):
    def __init__(self, keyfleet, dev_dir, names, seed, t0, low, high):
        super().__init__(daemon=True, name="nemesis")
        self.keyfleet, self.dir, self.names = keyfleet, dev_dir, names
        self.rng = random.Random(seed)
        self.t0, self.low, self.high = t0, low, high
        self.stop = threading.Event()
        self.events = []  # {"t", "action", "nodes", "rc", "out"}

    def dev(self, *words):
        t = time.time() - self.t0
        try:
            r = subprocess.run([self.keyfleet, "dev", *words, "--dir", self.dir], capture_output=True, text=True, timeout=20)
            rc, out = r.returncode, (r.stdout + r.stderr).strip()
        except subprocess.TimeoutExpired:
            rc, out = None, "timed out"
        return t, rc, out

    def heal(self):
        t, rc, out = self.dev("heal")
        self.events.append({"t": t, "done": time.time() - self.t0, "action": "heal", "nodes": [], "rc": rc, "out": out})

    def run(self):
        while not self.stop.is_set():
            nodes = sorted(self.rng.sample(self.names, self.rng.choice([1, 2])))
            t, rc, out = self.dev("partition", *nodes)
            self.events.append({"t": t, "done": time.time() - self.t0, "action": "partition", "nodes": nodes, "rc": rc, "out": out})
            self.stop.wait(self.rng.uniform(self.low, self.high))
            self.heal()
            if self.stop.wait(self.rng.uniform(self.low, self.high)):
                break

    def cuts(self, end):
        """[(start, end, nodes cut)] of every partition, by the times `dev` applied them."""
        out, cur = [], None
        for e in self.events:
            if e["action"] == "partition" and e["rc"] == 0:
                cur = (e["done"], e["nodes"])
            elif e["action"] == "heal" and cur:
                out.append((cur[0], e["done"], cur[1]))
                cur = None
        if cur:
            out.append((cur[0], end, cur[1]))
        return out


def http_json(url, path, timeout=3.0):
    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, json.loads(body) if body else None
    finally:
        c.close()


class Sampler(threading.Thread):
    """Every second: each daemon's /api/v1/safety and /api/v1/fleet."""

    def __init__(self, fleet, t0):
        super().__init__(daemon=True, name="sampler")
        self.nodes = fleet["nodes"]
        self.t0 = t0
        self.stop = threading.Event()
        self.samples = []  # {"t", "safety": {node: report}, "fleet_atomic": {node: name}, "errors": {...}}

    def one(self):
        s = {"t": time.time() - self.t0, "ages": {}, "lags": {}, "links": {}, "safety_atomic": {}, "fleet_atomic": {},
             "errors": {}}
        for n in self.nodes:
            name = n["name"]
            try:
                status, rep = http_json(n["api_url"], "/api/v1/safety")
                if status != 200:
                    raise ValueError(f"status {status}")
                s["safety_atomic"][name] = rep.get("atomic_writes_node")
                for p in rep.get("peers", []):
                    link = f"{p['peer']}->{name}"
                    s["ages"][link] = p.get("canary_age_seconds")
                    s["lags"][link] = p.get("lag_seconds")
            except Exception as e:
                s["errors"][f"{name} safety"] = str(e)
            try:
                status, f = http_json(n["api_url"], "/api/v1/fleet")
                if status != 200:
                    raise ValueError(f"status {status}")
                s["fleet_atomic"][name] = f.get("atomic_writes_node")
                for entry in f.get("nodes", []):
                    if entry.get("name") == name:
                        for l in entry.get("links") or []:
                            s["links"][f"{l['peer']}->{name}"] = l.get("status")
            except Exception as e:
                s["errors"][f"{name} fleet"] = str(e)
        self.samples.append(s)

    def run(self):
        start = time.monotonic()
        i = 0
        while not self.stop.is_set():
            self.one()
            i += 1
            self.stop.wait(max(0.0, start + i - time.monotonic()))


def snapshot(port):
    """Every key but keyfleet's own (the canaries change every second) with its value, and
    DBSIZE; by SCAN, never KEYS."""
    c = Resp(port, timeout=10)
    try:
        dbsize = c.call(b"DBSIZE")
        keys, cursor = [], b"0"
        for _ in range(1_000_000):
            cursor, batch = c.call(b"SCAN", cursor, b"COUNT", 1000)
            keys += [k for k in batch if not k.startswith(b"keyfleet:")]
            if cursor == b"0":
                break
        keys = sorted(set(keys))
        data = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for k, v in zip(chunk, c.call(b"MGET", *chunk)):
                data[k] = v
        # A key SCANned then deleted before MGET reads as None: leave it out.
        return dbsize, {k: v for k, v in data.items() if v is not None}
    finally:
        c.close()


def differing(snaps):
    every = set().union(*(s for s in snaps.values()))
    return sorted(k for k in every if len({s.get(k) for s in snaps.values()}) > 1)


def converge(fleet, timeout):
    """Polls every node until their snapshots are equal (and DBSIZE): (converged, seconds,
    snapshots, dbsizes, {node: error} of the engines that did not answer)."""
    start = time.monotonic()
    while True:
        snaps, sizes, down = {}, {}, {}
        for n in fleet["nodes"]:
            try:
                sizes[n["name"]], snaps[n["name"]] = snapshot(engine_port(n))
            except (OSError, ConnectionError, RespError) as e:
                down[n["name"]] = f"{type(e).__name__}: {e}"
        elapsed = time.monotonic() - start
        if not down and len(set(sizes.values())) == 1 and not differing(snaps):
            return True, elapsed, snaps, sizes, down
        if elapsed > timeout:
            return False, elapsed, snaps, sizes, down
        time.sleep(2)


def process_state(pid):
    """A process's state letter from /proc, or None once it is gone (or a zombie, "Z")."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    ap.add_argument("--duration", type=float, default=60, help="seconds of writes and partitions")
    ap.add_argument("--rate", type=float, default=100, help="iterations per second per writer")
    ap.add_argument("--del-probability", type=float, default=0.01, help="chance of a DEL per iteration")
    ap.add_argument("--cut-min", type=float, default=2, help="shortest wait, cut or healed, in seconds")
    ap.add_argument("--cut-max", type=float, default=8, help="longest wait, cut or healed, in seconds")
    ap.add_argument("--converge-timeout", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-nemesis", action="store_true", help="a control run: the same writers, no partitions")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the fleet's directory (kept anyway when a run fails)")
    args = ap.parse_args()
    if not os.environ.get("KEYFLEET_KEYDB_SERVER"):
        sys.exit("set KEYFLEET_KEYDB_SERVER to a keydb-server")
    if args.duration <= 0 or args.rate <= 0 or not 0 < args.cut_min <= args.cut_max:
        sys.exit("--duration, --rate and the cut waits must be positive")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    keyfleet = os.path.abspath(args.keyfleet)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="jepsen-")
    dev_dir = os.path.join(work, "fleet")
    os.makedirs(dev_dir)
    dev = fleet = None
    threads = []
    ok = False
    try:
        dev, fleet = start_dev(keyfleet, dev_dir, partitionable=True)
        names = [n["name"] for n in fleet["nodes"]]
        ports = {n["name"]: engine_port(n) for n in fleet["nodes"]}
        # The d: keys, on node1, until every node has them.
        c = Resp(ports[names[0]])
        c.pipeline([(b"SET", f"d:{k}", 1) for k in range(DKEYS)])
        c.close()
        deadline = time.time() + 30
        while True:
            counts = {}
            for name, port in ports.items():
                c = Resp(port)
                counts[name] = sum(c.pipeline([(b"EXISTS", f"d:{k}") for k in range(DKEYS)]))
                c.close()
            if all(v == DKEYS for v in counts.values()):
                break
            if time.time() > deadline:
                sys.exit(f"the d: keys did not replicate: {counts}")
            time.sleep(0.2)
        t0 = time.time()
        rng = random.Random(seed)
        writers = [Writer(name, ports[name], args.rate, args.del_probability, rng.randrange(1 << 30), t0) for name in names]
        nemesis = Nemesis(keyfleet, dev_dir, names, rng.randrange(1 << 30), t0, args.cut_min, args.cut_max)
        sampler = Sampler(fleet, t0)
        threads = writers + [sampler] + ([] if args.no_nemesis else [nemesis])
        for t in threads:
            t.start()
        time.sleep(args.duration)
        nemesis.stop.set()
        if not args.no_nemesis:
            nemesis.join(30)
            nemesis.heal()
        end = time.time() - t0
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(10)
        # A few more samples after the heal: the canaries queued in the backlog arrive.
        time.sleep(3)
        sampler.stop.set()
        sampler.join(10)
        converged, took, snaps, sizes, down = converge(fleet, args.converge_timeout)
        dev_out = open(os.path.join(dev_dir, "dev.out")).read().splitlines()
        final_safety = {}
        for n in fleet["nodes"]:
            try:
                final_safety[n["name"]] = http_json(n["api_url"], "/api/v1/safety")[1]
            except Exception as e:
                final_safety[n["name"]] = {"error": str(e)}
        res = analyse(writers, nemesis, sampler, snaps, end, names)
        res.update({"engines_down": {n: {"error": e, "engine_state": process_state(
                        next(x["engine_pid"] for x in fleet["nodes"] if x["name"] == n))} for n, e in down.items()},
                    "dev_exits": [l for l in dev_out if "exited" in l],
                    "seed": seed, "no_nemesis": args.no_nemesis, "duration": args.duration, "rate": args.rate, "converged": converged,
                    "converge_seconds": round(took, 1), "dbsize": sizes, "differing_keys": len(differing(snaps)),
                    "differing_sample": [k.decode() for k in differing(snaps)[:20]],
                    "iterations": {w.node: w.iterations for w in writers},
                    "full_syncs": {n: r.get("full_syncs") for n, r in final_safety.items()},
                    "link_flaps": {n: {p["peer"]: p["link_flaps"] for p in r.get("peers", [])} for n, r in final_safety.items()},
                    "lag_p99": {n: {p["peer"]: p.get("lag_p99_seconds") for p in r.get("peers", [])} for n, r in final_safety.items()},
                    "workers": {n: {w["name"]: [w["state"], w["runs"], w["failures"]] for w in r.get("workers", [])} for n, r in final_safety.items()},
                    "nemesis": nemesis.events})
        if args.json:
            print(json.dumps(res, indent=2, default=str))
            return
        report(res, names)
        ok = not down
    finally:
        for t in threads:
            t.stop.set()
        stop_dev(dev, fleet)
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (the fleet's configs and logs are in {dev_dir})", file=sys.stderr)


if __name__ == "__main__":
    main()
