#!/usr/bin/env python3
"""Benchmark: ship 256 MiB of engine log to a local S3 server, keyfleet against
`gzip` then `rclone copy` of the same bytes to the same server, same run.

The log is real engine output: an engine at `loglevel verbose` is driven with client
connects and DEBUG LOG lines until it has written a few MiB, and that text is then
repeated with every line's timestamp moved forward, to the size asked for (so no two
lines are the same and zstd's window sees no copy).

keyfleet: the text is the active engine.log of a daemon with [logs]; the clock runs from
POST /api/v1/logs/flush until GET /api/v1/logs shows nothing pending (rotation, closing
after writer_grace, zstd, multipart upload, confirmation). CPU is the daemon's
utime+stime over that span, peak RSS its VmHWM. It runs twice: with writer_grace = 0s
(no engine writes the copied file, and /proc shows no holder), which is the pipeline's
throughput, and with the default 2s, a fixed wait per rotation that a steady stream of
segments overlaps with the work on earlier ones.
gzip+rclone: `gzip -6 -c engine.log > engine.log.gz`, then `rclone copy` of the .gz to
the same bucket; CPU and peak RSS from getrusage of the two children.
The S3 server's own CPU is reported for both.

Usage: bench/logship_bench.py [--mib 256] [--keyfleet target/release/keyfleet] [--runs 3]
Needs: s3s-fs, rclone, gzip, an engine (KEYFLEET_KEYDB_SERVER or redis-server).
"""
import argparse, http.client, json, os, re, resource, shutil, socket, subprocess, sys, tempfile, time

from common import ACCESS, BUCKET, SECRET, cpu_seconds, free_port, rclone_env, start_s3, status_kib, wait_port


def api(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path)
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    return r.status, body


def real_log(engine, work, mib):
    """A few MiB of what the engine really writes, then tiled to `mib` MiB."""
    kind_keydb = bool(os.environ.get("KEYFLEET_KEYDB_SERVER"))
    port = free_port()
    sample = os.path.join(work, "sample.log")
    debug = [] if kind_keydb else ["--enable-debug-command", "local"]
    p = subprocess.Popen([engine, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--loglevel", "verbose", "--logfile", sample, *debug], stdout=subprocess.DEVNULL)
    wait_port(port)
    try:
        i = 0
        while os.path.getsize(sample) < 4 << 20:
            # Each connection logs "Accepted ..." and "Client closed connection" lines.
            for _ in range(50):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"PING\r\n")
                s.recv(64)
                s.close()
            cmds = "".join(f"DEBUG LOG \"request {i}-{j} user=app key=session:{i * 97 + j} took {j % 13} ms\"\r\n" for j in range(200))
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(cmds.encode())
            got = b""
            while got.count(b"\r\n") < 200:
                got += s.recv(65536)
            s.close()
            i += 1
    finally:
        p.terminate()
        p.wait()
    lines = open(sample, encoding="utf-8", errors="replace").read().splitlines()
    out = os.path.join(work, "engine.log")
    stamp = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d\d\d)")
    target = mib << 20
    written = 0
    with open(out, "w") as f:
        tile = 0
        while written < target:
            for n, line in enumerate(lines):
                # Move the time of day forward so every tile's lines differ.
                ms = tile * 3_600_000 + n
                line = stamp.sub(f"{ms // 3_600_000 % 24:02}:{ms // 60_000 % 60:02}:{ms // 1000 % 60:02}.{ms % 1000:03}", line, 1)
                line = f"{line} #{tile}\n"
                f.write(line)
                written += len(line)
                if written >= target:
                    break
            tile += 1
    return out, len(lines)


def run_keyfleet(keyfleet, grace, work, log, s3_port, run):
    d = os.path.join(work, f"kf{run}-{grace}")
    os.makedirs(os.path.join(d, "logs"))
    shutil.copyfile(log, os.path.join(d, "logs", "engine.log"))
    open(os.path.join(d, "ak"), "w").write(ACCESS)
    open(os.path.join(d, "sk"), "w").write(SECRET)
    kport = free_port()
    config = os.path.join(d, "node.toml")
    with open(config, "w") as f:
        f.write(f'node_name = "bench{run}"\nstate_dir = "{d}/state"\n[engine]\nkind = "redis"\nport = {free_port()}\n'
                f'[api]\nlisten = "127.0.0.1:{kport}"\n'
                f'[logs]\ndir = "{d}/logs"\nmax_local_bytes = "1GiB"\nwriter_grace = "{grace}"\n[logs.rotate]\nmax_size = "512MiB"\n'
                f'[logs.s3]\nendpoint = "http://127.0.0.1:{s3_port}"\nbucket = "{BUCKET}"\n'
                f'access_key_id_file = "{d}/ak"\nsecret_access_key_file = "{d}/sk"\n')
    p = subprocess.Popen([keyfleet, "daemon", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(kport)
        time.sleep(0.5)
        cpu0 = cpu_seconds(p.pid)
        t0 = time.perf_counter()
        code, ticket = api(kport, "POST", "/api/v1/logs/flush")
        assert code == 202, ticket
        while True:
            _, st = api(kport, "GET", "/api/v1/logs")
            if st["oldest_pending_seq"] is None:
                break
            if st.get("failing"):
                sys.exit(f"keyfleet failed: {st['last_error']}")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(p.pid) - cpu0
        peak = status_kib(p.pid, "VmHWM")
        shipped = st["sources"][0]["uploaded_bytes"]
        return wall, cpu, peak, shipped
    finally:
        p.terminate()
        p.wait()


def run_gzip_rclone(work, log, s3_port, run):
    gz = os.path.join(work, f"engine{run}.log.gz")
    env = rclone_env(s3_port)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(gz, "wb") as out:
        subprocess.run(["gzip", "-6", "-c", log], stdout=out, check=True)
    subprocess.run(["rclone", "copy", "--s3-no-check-bucket", gz, f"bench:{BUCKET}/rclone{run}/"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of children is the largest child so far: run this before any bigger child.
    return wall, cpu, after.ru_maxrss, os.path.getsize(gz)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    args = ap.parse_args()
    engine = os.environ.get("KEYFLEET_KEYDB_SERVER") or shutil.which("redis-server")
    for tool in ("s3s-fs", "rclone", "gzip"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} on PATH")
    if not engine:
        sys.exit("needs an engine: KEYFLEET_KEYDB_SERVER or redis-server")
    work = tempfile.mkdtemp(prefix="logship-bench-")
    s3 = None
    try:
        log, distinct = real_log(engine, work, args.mib)
        size = os.path.getsize(log)
        s3, s3_port = start_s3(os.path.join(work, "s3"))
        print(f"engine log: {size / 2**20:.0f} MiB from {engine} ({distinct} real lines, tiled with moved timestamps)")
        print(f"{'run':<4}{'tool':<14}{'wall s':>8}{'MiB/s':>8}{'CPU s':>8}{'peak RSS MiB':>14}{'stored MiB':>12}{'server CPU s':>14}")
        rows = {"gzip+rclone": [], "keyfleet": [], "keyfleet 2s": []}
        for run in range(args.runs):
            # gzip+rclone first in each run: ru_maxrss of children only grows.
            for name, fn in (("gzip+rclone", run_gzip_rclone),
                             ("keyfleet", lambda *a: run_keyfleet(args.keyfleet, "0s", *a)),
                             ("keyfleet 2s", lambda *a: run_keyfleet(args.keyfleet, "2s", *a))):
                scpu = cpu_seconds(s3.pid)
                wall, cpu, peak, stored = fn(work, log, s3_port, run)
                scpu = cpu_seconds(s3.pid) - scpu
                rows[name].append((wall, cpu, peak))
                print(f"{run:<4}{name:<14}{wall:>8.2f}{size / 2**20 / wall:>8.1f}{cpu:>8.2f}{peak / 1024:>14.1f}"
                      f"{stored / 2**20:>12.1f}{scpu:>14.2f}")
        med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
        kw, kc, _ = med["keyfleet"]
        gw, gc, _ = med["gzip+rclone"]
        lw, lc, _ = med["keyfleet 2s"]
        print(f"median ratios keyfleet vs gzip+rclone: throughput {gw / kw:.1f}x, CPU {kc / gc:.2f}x "
              f"(with the default writer_grace of 2s counted in: {gw / lw:.1f}x, CPU {lc / gc:.2f}x)")
    finally:
        if s3:
            s3.terminate()
            s3.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
