#!/usr/bin/env python3
"""Fuzzes the daemon's API from its OpenAPI document with schemathesis, against live
daemons on loopback:

  1. a token-guarded daemon on a real engine, with the token;
  2. the same daemon without it (every route but /healthz must answer 401);
  3. node 1 of a two-node `keyfleet dev` fleet (logs shipped to s3s-fs, upgrades on),
     so the routes that need those have something to answer about.

Each run must generate at least --min-cases cases and end with none failing: no 5xx but
documented 503s, every status, content type, header and body as the document says.

  scripts/fuzz-api.py [--examples N] [--min-cases N] [--seed S]

It needs `schemathesis` (4.x, from PyPI) on PATH or in KEYFLEET_SCHEMATHESIS,
redis-server, and the keyfleet binary (KEYFLEET_BIN, else target/debug/keyfleet).
"""
import argparse, glob, json, os, random, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "src", "api", "openapi.json")
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance",
])
# 503 is documented on every route (a class over its limit, readiness); any other 5xx
# fails the run.
CONFIG = '[checks.not_a_server_error]\nexpected-statuses = ["2XX", "3XX", "4XX", "503"]\n'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def dev_base(nodes):
    """A base port for `keyfleet dev` whose engine (P, P+1, ...) and API (P+100, ...) ports
    are all free, below the ephemeral range so no outgoing connection takes one meanwhile."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        if all(port_free(base + off + i) for off in (0, 100) for i in range(nodes)):
            return base
    sys.exit("fuzz-api: no free ports for the dev fleet")


def wait_http(port, timeout=60, log=None, proc=None):
    end = time.time() + timeout
    while time.time() < end and (proc is None or proc.poll() is None):
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/1.0 200"):
                    return
        except OSError:
            time.sleep(0.1)
    tail = open(log).read()[-3000:] if log else ""
    gone = f" (it exited with {proc.returncode})" if proc is not None and proc.poll() is not None else ""
    sys.exit(f"fuzz-api: nothing answered on port {port} within {timeout}s{gone}\n{tail}")


def schemathesis(work, name, base, token, args):
    """One schemathesis run; returns (generated cases, exit code)."""
    exe = os.environ.get("KEYFLEET_SCHEMATHESIS") or shutil.which("schemathesis")
    config = os.path.join(work, "schemathesis.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    report = os.path.join(work, f"report-{name}")
    cmd = [exe, "--config-file", config, "run", DOC, "--url", base, "--checks", CHECKS,
           "--max-examples", str(args.examples), "--seed", str(args.seed),
           "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-color",
           "--request-timeout", "10", "--generation-database", "none",
           "--report", "json", "--report-dir", report]
    if token:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    # In the work directory: schemathesis keeps a cache of its own where it runs.
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    reports = glob.glob(os.path.join(report, "*.json"))
    if not reports:
        print(out.stdout[-4000:], out.stderr[-4000:], sep="\n")
        sys.exit(f"fuzz-api: {name}: schemathesis wrote no report (exit {out.returncode})")
    data = json.load(open(reports[0]))
    cases = data["test_cases"]
    failed = cases["with_failures"] + cases["errored"]
    print(f"fuzz-api: {name}: {cases['generated']} cases, {failed} failing "
          f"(schemathesis exit {out.returncode}, {data['running_time']:.1f}s)")
    if out.returncode != 0 or failed:
        print(out.stdout[-20000:])
    return cases["generated"], out.returncode == 0 and failed == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=int(os.environ.get("KEYFLEET_FUZZ_EXAMPLES", 30)),
                    help="cases per operation and phase (default 30, KEYFLEET_FUZZ_EXAMPLES)")
    ap.add_argument("--min-cases", type=int, default=1000, help="fewest cases per run (1000)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("KEYFLEET_FUZZ_SEED", 1)))
    args = ap.parse_args()
    keyfleet = os.environ.get("KEYFLEET_BIN") or os.path.join(ROOT, "target", "debug", "keyfleet")
    for tool in (keyfleet, "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"fuzz-api: {tool} not found")
    if not (os.environ.get("KEYFLEET_SCHEMATHESIS") or shutil.which("schemathesis")):
        sys.exit("fuzz-api: schemathesis not found (pip install schemathesis==4.32.5)")
    procs = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="keyfleet-fuzz-") as work:
        try:
            engine, api = free_port(), free_port()
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(engine), "--save", "", "--dir", work],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            token = "fuzz-" + os.urandom(8).hex()
            with open(os.path.join(work, "token"), "w") as f:
                f.write(token)
            with open(os.path.join(work, "node.toml"), "w") as f:
                f.write(f'node_name = "solo"\nstate_dir = "{work}/state"\n'
                        f'[engine]\nkind = "redis"\nport = {engine}\n'
                        f'[api]\nlisten = "127.0.0.1:{api}"\ntoken_file = "{work}/token"\n')
            log = open(os.path.join(work, "daemon.log"), "w")
            procs.append(subprocess.Popen([keyfleet, "daemon", "--config", f"{work}/node.toml"],
                                          stdout=log, stderr=log))
            wait_http(api, log=os.path.join(work, "daemon.log"), proc=procs[-1])
            base = f"http://127.0.0.1:{api}"
            runs = [("with-token", base, token), ("without-token", base, None)]
            dev_dir, base = os.path.join(work, "dev"), dev_base(2)
            dev_log = open(os.path.join(work, "dev.log"), "w")
            dev_cmd = [keyfleet, "dev", "--nodes", "2", "--dir", dev_dir, "--base-port", str(base)]
            if not shutil.which("s3s-fs"):
                dev_cmd.append("--no-s3")
            procs.append(subprocess.Popen(dev_cmd, stdout=dev_log, stderr=dev_log))
            wait_http(base + 100, timeout=120, log=os.path.join(work, "dev.log"), proc=procs[-1])
            runs.append(("dev-fleet", f"http://127.0.0.1:{base + 100}", None))
            for name, url, tok in runs:
                cases, passed = schemathesis(work, name, url, tok, args)
                if cases < args.min_cases:
                    print(f"fuzz-api: {name}: only {cases} cases, fewer than {args.min_cases}")
                    passed = False
                ok = ok and passed
            if open(os.path.join(work, "daemon.log")).read().count(token):
                print("fuzz-api: the token appeared in the daemon's log")
                ok = False
        finally:
            # `keyfleet dev` stops its own engines and daemons on SIGTERM.
            for p in reversed(procs):
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
