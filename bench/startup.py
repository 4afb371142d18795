"""Time from starting `python -m botlite serve` to the first 200 on /healthz, and
the idle RSS of that process 10 s later. Prints one JSON line.

The baseline, measured in the same run, is a bare interpreter importing the same
libraries (huey, peewee, bottle, waitress): the ratio shows what botlite's own
start-up costs on top.

    python bench/startup.py [--runs 5] [--idle 10]
"""
import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def _rss_mb(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS for %d" % pid)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthz_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def one_start(idle):
    with tempfile.TemporaryDirectory() as data_dir:
        port = _free_port()
        url = "http://127.0.0.1:%d/healthz" % port
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "botlite", "serve", "--port", str(port),
             "--data-dir", data_dir, "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = started + 30
            while not _healthz_ok(url):
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise RuntimeError("serve did not become healthy")
                time.sleep(0.005)
            ready_ms = (time.perf_counter() - started) * 1000
            rss = None
            if idle:
                time.sleep(idle)  # measuring idleness, not waiting for a condition
                rss = _rss_mb(proc.pid)
            return ready_ms, rss
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def baseline_ms():
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import huey, peewee, bottle, waitress"], check=True)
    return (time.perf_counter() - started) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    ready = []
    rss = None
    for i in range(args.runs):
        ms, measured = one_start(args.idle if i == 0 else 0)
        ready.append(ms)
        rss = measured if measured is not None else rss
    base = statistics.median(baseline_ms() for _ in range(args.runs))
    median = statistics.median(ready)
    print(json.dumps({
        "bench": "startup", "runs": args.runs,
        "healthz_ready_ms_median": round(median, 1),
        "healthz_ready_ms_max": round(max(ready), 1),
        "idle_rss_mb": round(rss, 1), "idle_seconds": args.idle,
        "baseline_import_ms_median": round(base, 1),
        "ready_vs_baseline_ratio": round(median / base, 2),
    }))


if __name__ == "__main__":
    main()
