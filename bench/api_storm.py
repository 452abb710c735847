#!/usr/bin/env python3
"""The API under hostile load (issue 11): one token-guarded daemon with two peer daemons,
each on its own redis-server. Against the first, at once:

  - 1,100 idle connections, made without a token (connect-only, half-sent heads and
    kept-alive ones), held open;
  - 500 concurrent `GET /api/v1/fleet` with the token, repeated --rounds times;
  - a prober in a process of its own: an authenticated `GET /api/v1/node` every 20 ms
    on a fresh connection, 100 times.

It reports the prober's p50/p99 during the storm and, as the reference, in a quiet run
before it (the ratio is the figure to quote), how the storm's requests ended (answered,
shed with 503, hung past the client's 10 s timeout, closed unanswered), the requests the
peers received, and the daemon's peak RSS (VmHWM). The daemon gets the file limit of
systemd's default unit (1024), as in the issue's lockout.

Usage: bench/api_storm.py [--keyfleet target/release/keyfleet] [--rounds 10]
"""
import argparse, asyncio, multiprocessing, os, resource, shutil, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, status_kib, wait_port

TOKEN = "bench-" + os.urandom(6).hex()


def start_node(keyfleet, work, name, peers, procs):
    """A redis-server and a daemon named `name`; returns its API port."""
    engine, api = peers[name]
    procs.append(subprocess.Popen(["redis-server", "--port", str(engine), "--save", "", "--dir", work],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    lines = [f'node_name = "{name}"', f'state_dir = "{work}/{name}"', "[engine]", 'kind = "redis"',
             f"port = {engine}", 'primary = "node1"', "[api]", f'listen = "127.0.0.1:{api}"',
             f'token_file = "{work}/token"']
    for other, (e, a) in peers.items():
        if other != name:
            lines += ["[[peers]]", f'name = "{other}"', 'address = "127.0.0.1"',
                      f"engine_port = {e}", f"api_port = {a}"]
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    p = subprocess.Popen([keyfleet, "daemon", "--config", path], preexec_fn=limit,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{name}.log"), "w"))
    procs.append(p)
    wait_port(api)
    return p


def get(port, path, token=TOKEN, timeout=10.0):
    """One request on a fresh connection: (status, seconds)."""
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split()[1]), time.perf_counter() - t


def probe(port, n, out):
    times, codes = [], []
    for _ in range(n):
        try:
            code, took = get(port, "/api/v1/node")
        except OSError:
            code, took = 0, 10.0
        times.append(took)
        codes.append(code)
        time.sleep(0.02)
    out.put((times, codes))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def storm_request(port):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        w.write(f"GET /api/v1/fleet HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        data = await asyncio.wait_for(r.read(), 10)
        w.close()
        if not data:
            return "closed"
        code = int(data.split()[1])
        return "answered" if code == 200 else f"shed {code}" if code == 503 else f"status {code}"
    except asyncio.TimeoutError:
        return "hung"
    except (ConnectionError, OSError):
        return "closed"


async def storm(port, rounds):
    idle = []
    for i in range(1100):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        if i % 3 == 1:
            w.write(b"GET /api/v1/node HTTP/1.1\r\nHost: x\r\n")
        elif i % 3 == 2:
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.append(w)
    outcomes = {}
    for _ in range(rounds):
        for o in await asyncio.gather(*(storm_request(port) for _ in range(500))):
            outcomes[o] = outcomes.get(o, 0) + 1
    for w in idle:
        w.close()
    return len(idle), outcomes


def metric(port, name):
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(f"GET /metrics HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return sum(float(l.rsplit(" ", 1)[1]) for l in data.decode().splitlines() if l.startswith(name))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("api_storm: redis-server is not on PATH")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    procs = []
    with tempfile.TemporaryDirectory(prefix="keyfleet-storm-") as work:
        with open(os.path.join(work, "token"), "w") as f:
            f.write(TOKEN)
        try:
            peers = {n: (free_port(), free_port()) for n in ("node1", "node2", "node3")}
            daemon = start_node(args.keyfleet, work, "node1", peers, procs)
            for n in ("node2", "node3"):
                start_node(args.keyfleet, work, n, peers, procs)
            api = peers["node1"][1]
            peer_apis = [peers[n][1] for n in ("node2", "node3")]
            time.sleep(2)
            q = multiprocessing.Queue()
            probe(api, 100, q)
            quiet, _ = q.get()
            before = sum(metric(p, 'keyfleet_http_requests_total{route="/api/v1/node"') for p in peer_apis)
            prober = multiprocessing.Process(target=probe, args=(api, 100, q))
            started = time.time()
            prober.start()
            held, outcomes = asyncio.run(storm(api, args.rounds))
            during, codes = q.get()
            prober.join()
            took = time.time() - started
            after = sum(metric(p, 'keyfleet_http_requests_total{route="/api/v1/node"') for p in peer_apis)
            hwm = status_kib(daemon.pid, "VmHWM")
            rss = status_kib(daemon.pid, "VmRSS")
            evicted = metric(api, 'keyfleet_http_connections_closed_total{reason="evicted"}')
            refused = metric(api, "keyfleet_http_connections_refused_total")
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait()
    storm_total = 500 * args.rounds
    print(f"idle connections held: {held} of 1100; storm: {storm_total} fleet requests in {took:.1f}s")
    print(f"storm outcomes: {dict(sorted(outcomes.items()))}")
    print(f"fan-out requests the two peers received during the storm: {after - before:.0f} "
          f"(vs {2 * storm_total} without sharing)")
    print(f"connections evicted: {evicted:.0f}, refused at the cap: {refused:.0f}")
    q50, q99 = percentile(quiet, 50) * 1e3, percentile(quiet, 99) * 1e3
    d50, d99 = percentile(during, 50) * 1e3, percentile(during, 99) * 1e3
    print(f"authenticated /api/v1/node, quiet: p50 {q50:.1f} ms, p99 {q99:.1f} ms")
    print(f"authenticated /api/v1/node, during the storm: p50 {d50:.1f} ms, p99 {d99:.1f} ms "
          f"(p99 ratio {d99 / q99:.1f}x), statuses {sorted(set(codes))}")
    print(f"daemon peak RSS (VmHWM): {hwm / 1024:.1f} MiB, RSS after: {rss / 1024:.1f} MiB")
    ok = d99 < 100 and hwm < 20 * 1024 and outcomes.get("hung", 0) == 0 and set(codes) == {200}
    print("targets (p99 < 100 ms, peak RSS < 20 MiB, none hung, every probe 200):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
