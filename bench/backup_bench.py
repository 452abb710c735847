#!/usr/bin/env python3
"""Benchmark: back up and restore an engine of 1M keys (DEBUG POPULATE), keyfleet against
`redis-cli --rdb FILE` (or `keydb-cli`) then `rclone copy` to the same S3 server, and the
reverse for restore, same run.

keyfleet backup: POST /api/v1/backups until GET /api/v1/backups/{id} says complete
(BGSAVE, the RDB read from the data directory, zstd, multipart upload, manifest).
keyfleet restore: POST /api/v1/backups/{id}/restore into an empty engine until
GET /api/v1/restores says complete (ranged GETs, zstd, checksums, a full sync the
engine loads). CPU is the daemon's utime+stime over the span, peak RSS its VmHWM,
reset before each operation (clear_refs 5).
Reference backup: `CLI --rdb FILE` (the engine forks and streams an RDB to it, as to a
replica) then `rclone copy FILE` to the bucket. Reference restore: `rclone copy` of that
file back, then an engine started on it, until it answers with loading:0. CPU and peak
RSS of the tools (the CLI, rclone) from `/usr/bin/time`; the engine's own work (fork,
load) is in neither figure, and in both wall times.

Usage: bench/backup_bench.py [--keys 1000000] [--keyfleet target/release/keyfleet] [--runs 3]
Needs: s3s-fs, rclone, /usr/bin/time, an engine (KEYFLEET_KEYDB_SERVER or redis-server)
and its CLI (keydb-cli beside keydb-server, or redis-cli).
"""
import argparse, http.client, json, os, shutil, socket, subprocess, sys, tempfile, time

from common import BUCKET, cpu_seconds, free_port, rclone_env, start_s3, status_kib, wait_port, write_keys


def api(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    return r.status, out


def command(port, *words):
    """One RESP command, its reply line(s) as text (enough for DEBUG, PING, INFO)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    req = f"*{len(words)}\r\n" + "".join(f"${len(str(w))}\r\n{w}\r\n" for w in words)
    s.sendall(req.encode())
    data = b""
    while True:
        chunk = s.recv(1 << 16)
        data += chunk
        if not chunk or data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
            break
        if data.startswith(b"$"):
            head, _, rest = data.partition(b"\r\n")
            if int(head[1:]) < 0 or len(rest) >= int(head[1:]) + 2:
                break
    s.close()
    return data.decode(errors="replace")


def start_engine(engine, port, directory, dbfilename="dump.rdb"):
    """An engine without persistence on `directory`, loaded; a diskless replica sync (the
    reference's --rdb) starts at once rather than after the default 5 s wait for more
    replicas, so the comparison is of the pipelines, not of that delay."""
    # Redis 7 allows DEBUG only when started so; KeyDB 6 allows it and knows no such option.
    debug = [] if "keydb" in os.path.basename(engine) else ["--enable-debug-command", "local"]
    p = subprocess.Popen([engine, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", directory, "--dbfilename", dbfilename, "--repl-diskless-sync-delay", "0", *debug], stdout=subprocess.DEVNULL)
    wait_port(port, 120)
    # "\r\nloading:0": Redis 7 also has async_loading.
    while "\r\nloading:0\r\n" not in command(port, "INFO", "persistence"):
        time.sleep(0.02)
    return p


def timed(cmd, env=None):
    """Runs `cmd` under /usr/bin/time: (CPU seconds, peak RSS KiB)."""
    out = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *cmd], env=env, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    user, sys_, rss = out.stderr.strip().splitlines()[-1].split()
    return float(user) + float(sys_), int(rss)


def reference_backup(cli, engine_port, work, s3_port, run):
    rdb = os.path.join(work, f"ref{run}.rdb")
    t0 = time.perf_counter()
    c1, m1 = timed([cli, "-p", str(engine_port), "--rdb", rdb])
    c2, m2 = timed(["rclone", "copy", "--s3-no-check-bucket", rdb, f"bench:{BUCKET}/ref{run}/"], rclone_env(s3_port))
    wall = time.perf_counter() - t0
    size = os.path.getsize(rdb)
    os.remove(rdb)
    return wall, c1 + c2, max(m1, m2), size


def reference_restore(engine, work, s3_port, run):
    down = os.path.join(work, f"down{run}")
    os.makedirs(down)
    port = free_port()
    t0 = time.perf_counter()
    cpu, peak = timed(["rclone", "copy", f"bench:{BUCKET}/ref{run}/ref{run}.rdb", down], rclone_env(s3_port))
    p = start_engine(engine, port, down, f"ref{run}.rdb")
    wall = time.perf_counter() - t0
    keys = command(port, "DBSIZE")
    p.terminate()
    p.wait()
    shutil.rmtree(down)
    return wall, cpu, peak, keys.strip()


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def keyfleet_backup(daemon, api_port):
    reset_peak(daemon.pid)
    cpu0, t0 = cpu_seconds(daemon.pid), time.perf_counter()
    status, started = api(api_port, "POST", "/api/v1/backups")
    assert status == 202, started
    while True:
        _, v = api(api_port, "GET", f"/api/v1/backups/{started['id']}")
        if v.get("state") in ("complete", "failed"):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    assert v["state"] == "complete", v
    return wall, cpu_seconds(daemon.pid) - cpu0, status_kib(daemon.pid, "VmHWM"), v["manifest"]


def keyfleet_restore(daemon, api_port, engine, work, backup_id, run):
    port = free_port()
    directory = os.path.join(work, f"target{run}")
    os.makedirs(directory)
    target = start_engine(engine, port, directory)
    reset_peak(daemon.pid)
    cpu0, t0 = cpu_seconds(daemon.pid), time.perf_counter()
    status, started = api(api_port, "POST", f"/api/v1/backups/{backup_id}/restore",
                          {"mode": "to", "target": f"127.0.0.1:{port}"})
    assert status == 202, started
    at = started["restore"]["requested_at"]
    while True:
        _, v = api(api_port, "GET", "/api/v1/restores")
        r = next(r for r in v["restores"] if r["backup"] == backup_id and r["requested_at"] == at)
        if r["outcome"] != "running":
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    assert r["outcome"] == "complete", r
    keys = command(port, "DBSIZE")
    target.terminate()
    target.wait()
    shutil.rmtree(directory)
    return wall, cpu_seconds(daemon.pid) - cpu0, status_kib(daemon.pid, "VmHWM"), keys.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    args = ap.parse_args()
    engine = os.environ.get("KEYFLEET_KEYDB_SERVER") or shutil.which("redis-server")
    if not engine:
        sys.exit("needs an engine: KEYFLEET_KEYDB_SERVER or redis-server")
    keydb = "keydb" in os.path.basename(engine)
    cli = os.path.join(os.path.dirname(engine), "keydb-cli") if keydb else shutil.which("redis-cli")
    for tool in ("s3s-fs", "rclone", "/usr/bin/time", cli):
        if not tool or not shutil.which(tool):
            sys.exit(f"needs {tool} on PATH")
    work = tempfile.mkdtemp(prefix="backup-bench-")
    procs = []
    try:
        s3, s3_port = start_s3(os.path.join(work, "s3"))
        procs.append(s3)
        engine_dir = os.path.join(work, "engine")
        os.makedirs(engine_dir)
        engine_port = free_port()
        procs.append(start_engine(engine, engine_port, engine_dir))
        populated = command(engine_port, "DEBUG", "POPULATE", str(args.keys), "key", "100")
        if not populated.startswith("+OK"):
            sys.exit(f"DEBUG POPULATE: {populated.strip()}")
        write_keys(work)
        api_port = free_port()
        config = os.path.join(work, "node.toml")
        with open(config, "w") as f:
            f.write(f'node_name = "bench"\nstate_dir = "{work}/state"\n'
                    f'[engine]\nkind = "{"keydb" if keydb else "redis"}"\nport = {engine_port}\n'
                    f'data_dir = "{engine_dir}"\n[api]\nlisten = "127.0.0.1:{api_port}"\n'
                    f'[backups]\nfleet = "bench"\n[backups.s3]\nendpoint = "http://127.0.0.1:{s3_port}"\n'
                    f'bucket = "{BUCKET}"\naccess_key_id_file = "{work}/ak"\n'
                    f'secret_access_key_file = "{work}/sk"\n')
        daemon = subprocess.Popen([args.keyfleet, "daemon", "--config", config],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(daemon)
        wait_port(api_port)
        print(f"engine: {engine}, {args.keys} keys (DEBUG POPULATE, 100-byte values)")
        print(f"{'run':<4}{'what':<22}{'wall s':>8}{'CPU s':>8}{'peak RSS MiB':>14}  detail")
        rows = {}

        def row(run, what, wall, cpu, peak, detail):
            rows.setdefault(what, []).append((wall, cpu, peak))
            print(f"{run:<4}{what:<22}{wall:>8.2f}{cpu:>8.2f}{peak / 1024:>14.1f}  {detail}", flush=True)

        for run in range(args.runs):
            wall, cpu, peak, size = reference_backup(cli, engine_port, work, s3_port, run)
            row(run, "backup: cli+rclone", wall, cpu, peak, f"RDB {size / 2**20:.1f} MiB uploaded")
            wall, cpu, peak, m = keyfleet_backup(daemon, api_port)
            row(run, "backup: keyfleet", wall, cpu, peak,
                f"RDB {m['rdb_bytes'] / 2**20:.1f} MiB, stored {m['stored_bytes'] / 2**20:.1f} MiB")
            wall, cpu, peak, keys = reference_restore(engine, work, s3_port, run)
            row(run, "restore: rclone+load", wall, cpu, peak, f"DBSIZE {keys}")
            wall, cpu, peak, keys = keyfleet_restore(daemon, api_port, engine, work, m["id"], run)
            row(run, "restore: keyfleet", wall, cpu, peak, f"DBSIZE {keys}")
        med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
        for op, ref in (("backup", "backup: cli+rclone"), ("restore", "restore: rclone+load")):
            kw, kc, kp = med[f"{op}: keyfleet"]
            rw, rc, rp = med[ref]
            print(f"median {op}: keyfleet/reference wall {kw / rw:.2f}, CPU {kc / rc:.2f}; "
                  f"keyfleet peak RSS {kp / 1024:.1f} MiB (reference tools {rp / 1024:.1f} MiB)")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
