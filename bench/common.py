"""Helpers the benchmark scripts share: loopback ports, /proc figures of a process, the
local S3 server (s3s-fs) with its keys, for keyfleet and for rclone, a small RESP client,
and a `keyfleet dev` fleet started and stopped for a benchmark."""
import ctypes, json, os, random, signal, socket, subprocess, sys, time

# The local store's keys and bucket, the same in every benchmark.
ACCESS, SECRET, BUCKET = "AKBENCH", "benchsecret0123456789", "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listening on {port}")


def cpu_seconds(pid, tid=None):
    """utime + stime of `pid` (or of its thread `tid`), in seconds."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid, key):
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM, ...)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])


def start_s3(data):
    """s3s-fs on a free loopback port, serving `data` with BUCKET in it: (process, port)."""
    os.makedirs(os.path.join(data, BUCKET), exist_ok=True)
    port = free_port()
    p = subprocess.Popen(["s3s-fs", "--host", "127.0.0.1", "--port", str(port), "--access-key", ACCESS,
                          "--secret-key", SECRET, data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def write_keys(work):
    """The store's keys in WORK/ak and WORK/sk, for a daemon's *_file settings."""
    for name, value in (("ak", ACCESS), ("sk", SECRET)):
        with open(os.path.join(work, name), "w") as f:
            f.write(value)


def rclone_env(s3_port):
    """The environment for `rclone ... bench:BUCKET/...` against the local store."""
    env = {**os.environ,
           "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
           "RCLONE_CONFIG_BENCH_ENDPOINT": f"http://127.0.0.1:{s3_port}",
           "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ACCESS, "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET,
           "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true", "RCLONE_CONFIG": "/dev/null"}
    # rclone 1.60's AWS SDK refuses a custom CA bundle with its own transport; plain http here.
    env.pop("AWS_CA_BUNDLE", None)
    return env


class RespError(Exception):
    """An error reply (`-ERR ...`)."""


class Resp:
    """A minimal RESP2 client on one loopback connection. `call` raises RespError on an
    error reply; `pipeline` returns error replies as RespError values in its list."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb")

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def read(self):
        line = self.rf.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("connection closed")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError(f"not a RESP reply: {line[:40]!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        r = self.read()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.read() for _ in commands]

    def close(self):
        try:
            self.rf.close()
            self.sock.close()
        except OSError:
            pass


def _die_with_parent():
    # PR_SET_PDEATHSIG (1): `keyfleet dev` gets SIGTERM if this script dies, even by SIGKILL.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _ports_free(ports):
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def start_dev(keyfleet, directory, nodes=3, partitionable=False, timeout=90):
    """`keyfleet dev --no-s3` on free loopback ports with its files in `directory`, in a
    session of its own (Ctrl-C here reaches only this script, which stops it):
    (process, fleet.json as a dict). Its output goes to DIRECTORY/dev.out."""
    for _ in range(50):
        base = random.randrange(20000, 40000)
        if _ports_free([base + i for i in range(nodes)] + [base + 100 + i for i in range(nodes)]):
            break
    else:
        sys.exit("no free block of loopback ports for the dev fleet")
    cmd = [keyfleet, "dev", "--nodes", str(nodes), "--no-s3", "--base-port", str(base), "--dir", directory]
    if partitionable:
        cmd.append("--partitionable")
    out = open(os.path.join(directory, "dev.out"), "w")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True, preexec_fn=_die_with_parent)
    path = os.path.join(directory, "fleet.json")
    end = time.time() + timeout
    while time.time() < end:
        if p.poll() is not None:
            sys.exit(f"keyfleet dev exited ({p.returncode}):\n" + open(os.path.join(directory, "dev.out")).read())
        if os.path.exists(path):
            try:
                return p, json.load(open(path))
            except ValueError:
                pass  # being written
        time.sleep(0.2)
    stop_dev(p, None)
    sys.exit(f"keyfleet dev: no fleet.json in {directory} after {timeout} s")


def stop_dev(p, fleet):
    """Continues any stopped child of the fleet (a stopped process does not act on
    SIGTERM), then stops `dev`, which stops every child."""
    if p is None or p.poll() is not None:
        return
    for n in (fleet or {}).get("nodes", []):
        for pid in (n["engine_pid"], n["daemon_pid"]):
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
