"""Helpers the benchmark scripts share: loopback ports, /proc figures of a process, and
the local S3 server (s3s-fs) with its keys, for keyfleet and for rclone."""
import os, socket, subprocess, sys, time

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


def cpu_seconds(pid):
    """utime + stime of `pid`, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
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
