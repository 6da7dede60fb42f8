"""How long ``spanvisor serve`` takes to be ready, start after start.

    .venv/bin/python benchmarks/bench_ready.py [--starts 3] [--sinks prometheus,stream]

Starts a real ``spanvisor serve`` ``--starts`` times, one after the other,
on one fresh data dir (the sinks a default ``serve`` runs without
PostgreSQL or a terminal, as ``bench_memory.py``), and for each start
says the wall time from its launch to the first ``/readyz`` that answers
200, polled every 10 ms; the CPU that took (``serve``'s own and its
finished children's: the price table's process, ``/proc/<pid>/stat``); and
``serve``'s RSS then. The first start finds an empty data dir; the later
ones find what the earlier ones left there (the price table's cache file).
Each ``serve`` is stopped (SIGTERM) before the next starts. The median of
the later starts closes the run: the figure of an ordinary restart.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_with_children(pid: int) -> float:
    """User + system CPU of a process and of its children it has waited for."""
    f = _stat(pid)
    return sum(int(f[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1)) / 1024 if m else float("nan")


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start(data_dir: str, sinks: str) -> tuple[float, float, float]:
    """One serve: (seconds to ready, CPU seconds by then, RSS MB then)."""
    env = {
        **os.environ,
        "SPANVISOR_DATA_DIR": data_dir,
        "SPANVISOR_OPEN": "1",  # no token: the clients here send none
        "SPANVISOR_SINKS": sinks,
        "SPANVISOR_OTLP_BIND": "127.0.0.1",
        "SPANVISOR_OTLP_HTTP_PORT": "0",
        "SPANVISOR_OTLP_GRPC_PORT": "0",
        "SPANVISOR_ADMIN_PORT": "0",
    }
    log = Path(data_dir) / "serve.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spanvisor.cli", "serve"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        admin = None
        deadline = t0 + 120
        while time.perf_counter() < deadline and proc.poll() is None:
            if admin is None and (m := re.search(r"admin=(\d+)", log.read_text())):
                admin = int(m.group(1))
            if admin is not None and _ready(admin):
                took = time.perf_counter() - t0
                return took, cpu_with_children(proc.pid), rss_mb(proc.pid)
            time.sleep(0.01)
        raise RuntimeError("serve did not become ready:\n" + log.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=3, help="starts on one data dir (default 3)")
    ap.add_argument("--sinks", default="prometheus,stream", help="SPANVISOR_SINKS (default prometheus,stream)")
    ns = ap.parse_args()
    print(f"# load at start {os.getloadavg()[0]:.2f}", flush=True)
    later: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ready-") as data_dir:
        for k in range(ns.starts):
            took, cpu, rss = start(data_dir, ns.sinks)
            what = "first start (empty data dir)" if k == 0 else f"start {k + 1}"
            print(f"{what}: ready in {took:.2f} s, CPU {cpu:.2f} s, RSS {rss:.0f} MB", flush=True)
            if k:
                later.append((took, cpu))
    if later:
        print(
            f"later starts, median: ready in {statistics.median(t for t, _ in later):.2f} s, "
            f"CPU {statistics.median(c for _, c in later):.2f} s; load at the end {os.getloadavg()[0]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
