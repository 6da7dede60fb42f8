"""``make test-stress``: the suite on a machine busier than CI's, and which
tests fail only because of that.

The suite runs as ``make unit`` does, beside ``--burners`` processes that
each spin a core (on this 2-core machine four of them and the suite's own
load make a load average near 8). Every few seconds the load average is
sampled. Then every test that failed is run again, alone and without the
burners (pytest's ``--last-failed``): one that passes then failed only under
load, and is named as such. A test that fails both ways is an ordinary
failure. The exit status is 0 only when nothing failed under load.

Not part of ``make test`` or CI (it doubles the suite's time); run it before
resolving an issue and give its report in the note.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAILED = re.compile(r"^FAILED (\S+)")


def _burn() -> None:
    while True:
        pass


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def _plain(nodeid: str) -> str:
    """The node id without an ``@group`` suffix (pytest-xdist's loadgroup
    adds one where it works), so one process can run it again."""
    at, bracket = nodeid.rfind("@"), nodeid.rfind("]")
    return nodeid[:at] if at > bracket else nodeid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burners", type=int, default=4, help="processes spinning a core beside the suite")
    ap.add_argument("--workers", default=os.environ.get("TEST_WORKERS", "4"), help="pytest-xdist workers")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest (default: the whole suite)")
    args = ap.parse_args()

    import multiprocessing

    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            samples.append(_load())

    threading.Thread(target=sample, daemon=True).start()
    pytest = [sys.executable, "-m", "pytest"]
    env = {**os.environ, "TEST_EXAMPLES": os.environ.get("TEST_EXAMPLES", "0.4")}
    started = time.monotonic()
    print(f"stress: the suite beside {args.burners} CPU burners, {args.workers} workers", flush=True)
    proc = subprocess.Popen(
        [*pytest, "-q", "-n", str(args.workers), "--dist", "loadfile", "--no-loadscope-reorder", *args.pytest_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    failed: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            m = FAILED.match(line)
            nodeid = m and _plain(m.group(1))
            if nodeid and nodeid not in failed:
                failed.append(nodeid)
        code = proc.wait()
    finally:
        done.set()
        for b in burners:
            if b.pid is not None:
                os.kill(b.pid, signal.SIGKILL)
    took = time.monotonic() - started
    peak = max(samples, default=0.0)
    mean = sum(samples) / len(samples) if samples else 0.0
    print(f"\nstress: pytest exited {code} after {took:.0f} s; load average mean {mean:.1f}, peak {peak:.1f}")
    if code == 0:
        print("stress: no test failed under load")
        return 0
    print(f"stress: {len(failed)} failed under load; each again, alone, without the burners:", flush=True)
    again = subprocess.run(
        [*pytest, "-q", "-n", "0", "-rf", *failed], check=False, cwd=ROOT, env=env, capture_output=True, text=True
    )
    sys.stdout.write(again.stdout)
    alone = {_plain(m.group(1)) for line in again.stdout.splitlines() if (m := FAILED.match(line))}
    for title, which in (
        ("fail only under load (they pass alone)", [n for n in failed if n not in alone]),
        ("fail alone too (ordinary failures)", [n for n in failed if n in alone]),
    ):
        print(f"stress: {len(which)} {title}" + (":" if which else ""))
        for nodeid in which:
            print(f"  {nodeid}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
