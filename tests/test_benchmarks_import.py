"""Every benchmark a document names still imports.

The benchmarks run only by hand (``benchmarks/README.md``), so a rename in
one script can break another's import unnoticed: ``bench_tool_to_slack.py``
once imported ``pct`` from ``bench_fleet.py`` after it had moved. Importing
each one (its ``main`` does not run) catches that, in a fresh interpreter
with ``benchmarks/`` first on the path, as running a script puts it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT_ALL = """
import importlib, pathlib, sys
sys.path[:0] = [".", ".."]
bad = []
for p in sorted(pathlib.Path(".").glob("bench_*.py")):
    try:
        importlib.import_module(p.stem)
    except BaseException as exc:
        bad.append(f"{p.name}: {exc!r}")
print("\\n".join(bad))
"""


def test_every_benchmark_script_imports() -> None:
    bench = ROOT / "benchmarks"
    assert list(bench.glob("bench_*.py")), "no benchmark scripts found"
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=bench, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", "benchmarks that no longer import:\n" + proc.stdout
