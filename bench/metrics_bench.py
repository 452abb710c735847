#!/usr/bin/env python3
"""Benchmark: keyfleet's daemon against redis_exporter on the same engine node, same run.

Measures, for each of the two processes scraping one engine:
  - /metrics latency (median, p90) over N scrapes, interleaved so both see the same load;
  - CPU time per scrape (utime+stime from /proc, divided by the scrapes);
  - resident memory idle (before any scrape) and after the scrapes.
Also measures keyfleet's start-to-READY=1 (sd_notify) with the engine already up.

With --ship, keyfleet's daemon also ships its logs to an s3s-fs started here (a [logs]
table; the engine logs into its log directory), and after the scrapes one
`logs flush` is made and the RSS read again once idle.

Usage: bench/metrics_bench.py [--scrapes N] [--keyfleet target/release/keyfleet] [--ship] [--rss-runs N]
Engine: $KEYFLEET_KEYDB_SERVER if set, else redis-server. Exporter: prometheus-redis-exporter
(Debian) or redis_exporter on PATH. Everything listens on 127.0.0.1 ports picked here.
"""
import argparse, http.client, os, shutil, socket, statistics, subprocess, sys, tempfile, time

from common import cpu_seconds, free_port, start_s3, status_kib, wait_port, write_keys

def rss_kib(pid):
    return status_kib(pid, "VmRSS")

def scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t = time.perf_counter()
    c.request("GET", "/metrics")
    body = c.getresponse().read()
    dt = time.perf_counter() - t
    c.close()
    return dt, len(body)

def ready_time(keyfleet, config, runs):
    times = []
    for _ in range(runs):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(10)
        t = time.perf_counter()
        p = subprocess.Popen([keyfleet, "daemon", "--config", config], env={**os.environ, "NOTIFY_SOCKET": path},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while b"READY=1" not in s.recv(4096):
            pass
        times.append(time.perf_counter() - t)
        p.terminate(); p.wait(); s.close(); shutil.rmtree(d)
    return times

def idle_rss_runs(keyfleet, config, port, runs):
    """keyfleet's VmRSS one second after it listens, over several starts: a single
    reading moves by a few hundred KiB from start to start on this machine."""
    out = []
    for _ in range(runs):
        p = subprocess.Popen([keyfleet, "daemon", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        time.sleep(1.0)
        out.append(rss_kib(p.pid))
        p.terminate(); p.wait()
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=500)
    ap.add_argument("--keyfleet", default="target/release/keyfleet")
    ap.add_argument("--ship", action="store_true", help="ship logs to a local s3s-fs")
    ap.add_argument("--rss-runs", type=int, default=9, help="daemon starts for the idle RSS median")
    args = ap.parse_args()
    engine = os.environ.get("KEYFLEET_KEYDB_SERVER") or shutil.which("redis-server")
    exporter = shutil.which("prometheus-redis-exporter") or shutil.which("redis_exporter")
    if not engine or not exporter:
        sys.exit("needs an engine (KEYFLEET_KEYDB_SERVER or redis-server) and prometheus-redis-exporter")
    kind = "keydb" if os.environ.get("KEYFLEET_KEYDB_SERVER") else "redis"
    work = tempfile.mkdtemp()
    eport, kport, xport = free_port(), free_port(), free_port()
    procs = []
    try:
        debug = [] if kind == "keydb" else ["--enable-debug-command", "local"]  # Redis 7 locks DEBUG
        logs_toml = ""
        logfile = []
        if args.ship:
            if not shutil.which("s3s-fs"):
                sys.exit("--ship needs s3s-fs on PATH")
            os.makedirs(os.path.join(work, "logs"))
            write_keys(work)
            s3, sport = start_s3(os.path.join(work, "s3"))
            procs.append(s3)
            logfile = ["--logfile", os.path.join(work, "logs", "engine.log")]
            logs_toml = (f'[logs]\ndir = "{work}/logs"\n[logs.s3]\nendpoint = "http://127.0.0.1:{sport}"\nbucket = "bench"\n'
                         f'access_key_id_file = "{work}/ak"\nsecret_access_key_file = "{work}/sk"\n')
        procs.append(subprocess.Popen([engine, "--port", str(eport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *debug, *logfile],
                                      stdout=subprocess.DEVNULL))
        wait_port(eport)
        # A small data set: 10k keys.
        subprocess.run(["redis-cli", "-p", str(eport), "DEBUG", "POPULATE", "10000"], check=True, stdout=subprocess.DEVNULL)
        config = os.path.join(work, "node.toml")
        with open(config, "w") as f:
            f.write(f'node_name = "bench"\nstate_dir = "{work}/state"\n[engine]\nkind = "{kind}"\nport = {eport}\n'
                    f'[api]\nlisten = "127.0.0.1:{kport}"\n{logs_toml}')
        ready = ready_time(args.keyfleet, config, 20)
        rss_runs = idle_rss_runs(args.keyfleet, config, kport, args.rss_runs)
        kf = subprocess.Popen([args.keyfleet, "daemon", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ex = subprocess.Popen([exporter, "-redis.addr", f"redis://127.0.0.1:{eport}", "-web.listen-address", f"127.0.0.1:{xport}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs += [kf, ex]
        wait_port(kport); wait_port(xport)
        time.sleep(1.0)
        idle = {"keyfleet": rss_kib(kf.pid), "redis_exporter": rss_kib(ex.pid)}
        for _ in range(20):  # warm-up, not measured
            scrape(kport); scrape(xport)
        lat = {"keyfleet": [], "redis_exporter": []}
        size = {}
        cpu0 = {"keyfleet": cpu_seconds(kf.pid), "redis_exporter": cpu_seconds(ex.pid)}
        for _ in range(args.scrapes):
            for name, port in (("keyfleet", kport), ("redis_exporter", xport)):
                dt, n = scrape(port)
                lat[name].append(dt)
                size[name] = n
        cpu = {"keyfleet": cpu_seconds(kf.pid) - cpu0["keyfleet"], "redis_exporter": cpu_seconds(ex.pid) - cpu0["redis_exporter"]}
        after = {"keyfleet": rss_kib(kf.pid), "redis_exporter": rss_kib(ex.pid)}
        shipped = None
        if args.ship:
            c = http.client.HTTPConnection("127.0.0.1", kport, timeout=10)
            c.request("POST", "/api/v1/logs/flush")
            assert c.getresponse().status == 202
            c.close()
            time.sleep(5)  # writer_grace, compression, upload; then idle again
            c = http.client.HTTPConnection("127.0.0.1", kport, timeout=10)
            c.request("GET", "/api/v1/logs")
            import json
            st = json.loads(c.getresponse().read())
            c.close()
            assert st["oldest_pending_seq"] is None and st["last_success_at"], st
            shipped = rss_kib(kf.pid)
        print(f"engine: {engine} ({kind}), {args.scrapes} scrapes each, interleaved"
              + (", keyfleet shipping its logs to s3s-fs" if args.ship else ""))
        print(f"{'':16}{'median ms':>10}{'p90 ms':>9}{'CPU ms/scrape':>15}{'RSS idle MiB':>14}{'RSS after MiB':>15}{'body KiB':>10}")
        for name in lat:
            q = statistics.quantiles(lat[name], n=10)
            print(f"{name:16}{statistics.median(lat[name])*1e3:>10.3f}{q[8]*1e3:>9.3f}{cpu[name]/args.scrapes*1e3:>15.3f}"
                  f"{idle[name]/1024:>14.1f}{after[name]/1024:>15.1f}{size[name]/1024:>10.1f}")
        def ratio(d):
            return d["keyfleet"] / d["redis_exporter"]
        medians = {name: statistics.median(v) for name, v in lat.items()}
        print(f"ratios keyfleet/redis_exporter: median latency {ratio(medians):.2f}, "
              f"CPU per scrape {ratio(cpu):.2f}, idle RSS {ratio(idle):.2f}")
        med = statistics.median(rss_runs)
        print(f"keyfleet idle RSS over {len(rss_runs)} starts: median {med/1024:.2f} MiB (min {min(rss_runs)/1024:.2f}, "
              f"max {max(rss_runs)/1024:.2f}), {med / idle['redis_exporter']:.2f} of redis_exporter's idle RSS")
        if shipped is not None:
            print(f"keyfleet RSS after a logs flush (all three sources shipped), idle: {shipped/1024:.1f} MiB, "
                  f"{shipped / idle['redis_exporter']:.2f} of redis_exporter's idle RSS")
        print(f"keyfleet start to READY=1 (engine up, 20 runs): median {statistics.median(ready)*1e3:.1f} ms, max {max(ready)*1e3:.1f} ms")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
