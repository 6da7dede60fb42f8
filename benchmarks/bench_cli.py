"""What a short ``spanvisor`` command costs to start: wall time and CPU.

    .venv/bin/python benchmarks/bench_cli.py [--runs 30] [--against OTHER_VENV/bin/spanvisor]

Runs each command ``--runs`` times, round-robin across the commands (and
across the two scripts with ``--against``), so that the machine's load falls
on all alike; for each: the median wall time from spawn to exit and the
median CPU (user + system, from the child's rusage). ``python -c pass``
(the same interpreter, ``-S`` not given) is the floor: no command starts
sooner. Commands that need no server: ``version`` (the configuration and
the parser), ``approvals --help``, ``tasks --help`` (a plugin's command),
``check --help``. Every run may read and write bytecode (the warm-up
writes it), whatever ``PYTHONDONTWRITEBYTECODE`` says. With ``--against``, the ratio of this venv's medians to
the other script's, from the same run: to compare two revisions, install
the other in its own venv (entry points are read from the installed
metadata, so ``PYTHONPATH`` alone cannot stand in for a revision here).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (["version"], ["approvals", "--help"], ["tasks", "--help"], ["check", "--help"])


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--spanvisor", default=str(Path(sys.executable).parent / "spanvisor"))
    ap.add_argument("--against", help="another spanvisor console script, measured in the same rounds")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as home:
        # No configuration of the user's, no token files: the commands' own cost.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
        env["HOME"] = home
        # Bytecode written and read, as an installed wheel's is: with
        # PYTHONDONTWRITEBYTECODE set a source tree with no __pycache__
        # compiles every module on every run (twice the time).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        scripts = {"this": args.spanvisor, **({"other": args.against} if args.against else {})}
        cases: dict[tuple[str, str], list[str]] = {("this", "python -c pass"): [sys.executable, "-c", "pass"]}
        for label, script in scripts.items():
            for cmd in COMMANDS:
                cases[(label, " ".join(cmd))] = [script, *cmd]
        for argv in cases.values():
            _once(argv, env)  # warm the page cache and the bytecode
        got: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for key, argv in cases.items():
                got[key].append(_once(argv, env))

    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.1f} at the end, {args.runs} runs each")
    print(f"{'script':6} {'command':18} {'wall p50 ms':>12} {'CPU p50 ms':>11}")
    med: dict[tuple[str, str], tuple[float, float]] = {}
    for (label, name), runs in got.items():
        wall = statistics.median(w for w, _ in runs) * 1000
        cpu = statistics.median(c for _, c in runs) * 1000
        med[(label, name)] = (wall, cpu)
        print(f"{label:6} {name:18} {wall:12.1f} {cpu:11.1f}")
    if args.against:
        print("this / other, same rounds:")
        for cmd in COMMANDS:
            name = " ".join(cmd)
            (w1, c1), (w2, c2) = med[("this", name)], med[("other", name)]
            print(f"  {name:18} wall {w1 / w2:.2f}x  CPU {c1 / c2:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
