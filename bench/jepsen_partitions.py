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

REGISTERS, DKEYS = 10, 200


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


def in_cut(t, node, cuts):
    return any(a <= t <= b and node in nodes for a, b, nodes in cuts)


def analyse(writers, nemesis, sampler, snaps, end, names):
    cuts = nemesis.cuts(end)
    res = {"per_node": {}}
    acked_incr = sum(w.incr_ok for w in writers)
    unknown_incr = sum(w.incr_unknown for w in writers)
    all_regs = [(k, w.node, n, ts, ta) for w in writers for (k, n, ts, ta) in w.registers]
    deleted = {}
    for w in writers:
        for k, reply, t in w.deletes:
            deleted.setdefault(k, []).append((w.node, reply, t))
    for name, snap in snaps.items():
        lost, lost_in_cut, by_writer = [], 0, {}
        for w in writers:
            for n, t in w.acked_w:
                if f"w:{w.node}:{n}".encode() not in snap:
                    lost.append(f"w:{w.node}:{n}")
                    lost_in_cut += in_cut(t, w.node, cuts)
                    by_writer[w.node] = by_writer.get(w.node, 0) + 1
        counter = snap.get(b"c:shared")
        counter = int(counter) if counter is not None else None
        regs = {}
        for k in range(REGISTERS):
            v = snap.get(f"r:{k}".encode())
            writes = sorted((x for x in all_regs if x[0] == k), key=lambda x: x[4])
            entry = {"value": v.decode() if v else None, "writes": len(writes)}
            if v:
                node, n = v.decode().split(":")
                mine = [x for x in writes if x[1] == node and x[2] == int(n)]
                if mine:
                    s = mine[0]
                    entry["written_at"] = round(s[3], 3)
                    # Writes to k sent after the survivor was acknowledged: later by any clock.
                    entry["later_writes_lost"] = sum(1 for x in writes if x[3] > s[4])
                    entry["survivor_in_cut"] = in_cut(s[3], node, cuts)
                    entry["last_acked"] = writes[-1][1] == node and writes[-1][2] == int(n)
                else:
                    entry["unacknowledged_survivor"] = True
            regs[k] = entry
        resurrected = []
        for k, dels in sorted(deleted.items()):
            if f"d:{k}".encode() in snap:
                resurrected.append({"key": f"d:{k}", "deletes": [
                    {"by": n, "reply": r, "t": round(t, 3), "by_node_cut": in_cut(t, n, cuts)} for n, r, t in dels]})
        w_keys = sum(1 for k in snap if k.startswith(b"w:"))
        res["per_node"][name] = {
            "keys": len(snap), "w_keys": w_keys, "lost_writes": len(lost), "lost_by_writer": by_writer,
            "lost_keys": lost, "lost_written_in_cut": lost_in_cut,
            "counter": counter, "registers": regs, "resurrected": resurrected}
    res["acked_w"] = sum(len(w.acked_w) for w in writers)
    res["unknown_w"] = sum(w.unknown_w for w in writers)
    res["acked_incr"] = acked_incr
    res["unknown_incr"] = unknown_incr
    res["acked_deletes"] = sum(len(w.deletes) for w in writers)
    res["deleted_keys"] = len(deleted)
    res["writer_errors"] = {w.node: w.errors for w in writers}
    res["cuts"] = [{"from": round(a, 2), "to": round(b, 2), "nodes": n} for a, b, n in cuts]
    res["safety"] = safety_figures(sampler, cuts, names)
    return res


def safety_figures(sampler, cuts, names):
    links = sorted({l for s in sampler.samples for l in s["ages"]})
    max_age = {l: max((s["ages"].get(l) or 0) for s in sampler.samples) for l in links}
    max_lag = {l: max((s["lags"].get(l) or 0) for s in sampler.samples) for l in links}
    longest_cut = {}
    for l in links:
        a, b = l.split("->")
        d = [e - s for s, e, nodes in cuts if a in nodes or b in nodes]
        longest_cut[l] = max(d) if d else 0.0
    fleet_disagree, safety_disagree = [], []
    wrong = []
    for s in sampler.samples:
        fa = s["fleet_atomic"]
        if len(fa) == len(names) and len(set(fa.values())) > 1:
            fleet_disagree.append({"t": round(s["t"], 2), "values": fa})
        sa = s["safety_atomic"]
        if len(sa) == len(names) and len(set(sa.values())) > 1:
            safety_disagree.append({"t": round(s["t"], 2), "values": sa})
        # Well inside a cut (1.5 s after it was applied, 0.5 s before the heal): one node
        # cut means the first node by name of the other two; two cut means none.
        for a, b, nodes in cuts:
            if a + 1.5 <= s["t"] <= b - 0.5:
                rest = [n for n in names if n not in nodes]
                want = rest[0] if len(rest) >= 2 else None
                for node, got in fa.items():
                    if got != want:
                        wrong.append({"t": round(s["t"], 2), "cut": nodes, "daemon": node, "said": got, "expected": want})
    last = sampler.samples[-1]["ages"] if sampler.samples else {}
    # Up -> not up transitions of each link in the samples (1 s apart: a flap shorter than
    # that can be missed here, never invented).
    seen_flaps = {}
    for l in links:
        states = [s["links"].get(l) for s in sampler.samples if l in s["links"]]
        seen_flaps[l] = sum(1 for a, b in zip(states, states[1:]) if a == "up" and b != "up")
    return {"samples": len(sampler.samples), "sample_errors": sum(len(s["errors"]) for s in sampler.samples),
            "max_canary_age": max_age, "final_canary_age": last, "seen_flaps": seen_flaps, "max_lag": max_lag, "longest_cut": longest_cut,
            "fleet_atomic_seen": sorted({str(v) for s in sampler.samples for v in s["fleet_atomic"].values()}),
            "fleet_atomic_disagreements": fleet_disagree, "safety_atomic_disagreements": safety_disagree,
            "fleet_atomic_wrong_in_cut": wrong}


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


def report(res, names):
    cuts = res["cuts"]
    one = sum(1 for c in cuts if len(c["nodes"]) == 1)
    print(f"jepsen_partitions: 3 KeyDB nodes, {res['duration']:.0f} s, {res['rate']:.0f} iterations/s per writer, seed {res['seed']}")
    if res["no_nemesis"]:
        print("nemesis: none (control run)")
    else:
        print(f"nemesis: {len(cuts)} partitions ({one} of one node, {len(cuts) - one} of two = every link cut), "
              f"cut {sum(c['to'] - c['from'] for c in cuts):.1f} s in all: "
              + ", ".join(f"{'+'.join(c['nodes'])} {c['from']:.1f}-{c['to']:.1f}" for c in cuts))
    failed = [e for e in res["nemesis"] if e["rc"] != 0]
    if failed:
        print(f"nemesis commands that failed: {len(failed)}, e.g. {failed[0]['action']} {failed[0]['nodes']}: {failed[0]['out']}")
    errors = {n: e for n, e in res["writer_errors"].items() if e}
    print(f"writers: {sum(res['iterations'].values())} iterations answered ({', '.join(f'{n} {v}' for n, v in res['iterations'].items())}), "
          f"{res['unknown_w']} unanswered, errors: {errors or 'none'}")
    for n, d in res["engines_down"].items():
        print(f"ENGINE DOWN at the end: {n} ({d['error']}; its process: {d['engine_state'] or 'gone'})")
    for line in res["dev_exits"]:
        print(f"  keyfleet dev: {line}")
    if res["converged"]:
        print(f"converged: yes, every node equal {res['converge_seconds']} s after the writers stopped "
              f"(DBSIZE {list(res['dbsize'].values())[0]})")
    else:
        print(f"converged: NO after {res['converge_seconds']} s: {res['differing_keys']} keys differ between nodes "
              f"(DBSIZE {', '.join(f'{n} {v}' for n, v in res['dbsize'].items())}): {', '.join(res['differing_sample'][:10])}")
    nodes = res["per_node"]
    show = [names[0]] if res["converged"] else [n for n in names if n in nodes]
    if not show:
        return
    label = "every node" if res["converged"] else None

    def per(f):
        return f"{label}: {f(nodes[show[0]])}" if label else ", ".join(f"{n} {f(nodes[n])}" for n in show)

    print(f"lost writes (acknowledged w: keys missing, of {res['acked_w']}): " + per(lambda r: r["lost_writes"]))
    for n in show:
        if nodes[n]["lost_writes"]:
            r = nodes[n]
            print(f"  {n}: by writer {r['lost_by_writer']}, {r['lost_written_in_cut']} written while their node was cut off")
    acked = res["acked_incr"]
    print(f"c:shared: {per(lambda r: r['counter'])}; acknowledged INCRs {acked} (+{res['unknown_incr']} unanswered); lost: "
          + per(lambda r: f"{acked - (r['counter'] or 0)} ({100 * (acked - (r['counter'] or 0)) / max(acked, 1):.1f}%)"))
    print("registers (value kept; * = the last acknowledged write to it, else how many acknowledged writes sent "
          "after it was acknowledged were lost, c = written while its node was cut off):")
    for k in range(REGISTERS):
        cells = []
        for n in show:
            e = nodes[n]["registers"][k]
            mark = "*" if e.get("last_acked") else f" -{e.get('later_writes_lost', '?')}" + ("c" if e.get("survivor_in_cut") else "")
            cells.append(f"{str(e['value']) + mark:<18}")
        print(f"  r:{k}  " + "".join(cells) + f"({nodes[show[0]]['registers'][k]['writes']} writes)")
    print(f"  kept the last acknowledged write: " + per(lambda r: f"{sum(1 for e in r['registers'].values() if e.get('last_acked'))}/{REGISTERS}"))
    print(f"resurrected deletes (of {res['deleted_keys']} d: keys deleted by {res['acked_deletes']} acknowledged DELs): "
          + per(lambda r: len(r["resurrected"])))
    seen = {}
    for n in show:
        for x in nodes[n]["resurrected"]:
            seen.setdefault(x["key"], (x, []))[1].append(n)
    for key, (x, on) in list(seen.items())[:10]:
        dels = ", ".join(f"{d['by']} at {d['t']:.1f} s{' (cut off)' if d['by_node_cut'] else ''} reply {d['reply']}" for d in x["deletes"])
        print(f"  {key}: deleted by {dels}; back on {', '.join(on)}")
    if len(seen) > 10:
        print(f"  ... {len(seen) - 10} more")
    s = res["safety"]
    print(f"safety API: {s['samples']} samples of each daemon, {s['sample_errors']} failed requests")
    print("  max canary_age_seconds per link (longest cut of that link): "
          + ", ".join(f"{l} {a:.1f} ({s['longest_cut'][l]:.1f})" for l, a in s["max_canary_age"].items()))
    print("  canary_age_seconds 3 s after the last heal: "
          + ", ".join(f"{l} {a:.1f}" for l, a in s["final_canary_age"].items() if a is not None))
    print("  max lag_seconds per link: " + ", ".join(f"{l} {a:.2f}" for l, a in s["max_lag"].items()))
    dis = s["fleet_atomic_disagreements"]
    print(f"  atomic_writes_node (/api/v1/fleet) seen: {', '.join(s['fleet_atomic_seen'])}; daemons differed in "
          f"{len(dis)} of {s['samples']} samples" + (f" (at {', '.join(str(d['t']) for d in dis[:8])} s)" if dis else ""))
    print(f"  atomic_writes_node (/api/v1/safety, each daemon's latest choice): differed in {len(s['safety_atomic_disagreements'])} samples")
    wrong = s["fleet_atomic_wrong_in_cut"]
    print(f"  /api/v1/fleet answers other than expected well inside a cut: {len(wrong)}" + (f", e.g. {wrong[:3]}" if wrong else ""))
    print(f"  full_syncs at the end: {', '.join(f'{n} {v}' for n, v in res['full_syncs'].items())}")
    flaps = {f"{peer}->{n}": v for n, d in res["link_flaps"].items() for peer, v in d.items()}
    print("  link_flaps per link (up->down seen in the samples; cuts of that link): " + ", ".join(
        f"{l} {flaps.get(l)} ({s['seen_flaps'].get(l)}; {sum(1 for c in cuts if set(l.split('->')) & set(c['nodes']))})"
        for l in sorted(flaps)))


if __name__ == "__main__":
    main()
