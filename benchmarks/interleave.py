"""Before and after on the same machine, interleaved: one benchmark run
alternately against two revisions of spanvisor, so that what the machine's
load does to one it does to the other.

    .venv/bin/python benchmarks/interleave.py --before dc4be43 --rounds 2 \\
        --grep 'tracked|spans/s' -- bench_ingest.py --quick

Each revision is checked out once (``git archive``) under
``build/interleave/<sha>`` and run with the project's venv, its own
``src`` and ``plugins`` first on ``PYTHONPATH`` (so the same installed
dependencies serve both; the entry points name the same modules). The
script run is each revision's own copy of ``benchmarks/<script>``. Rounds
alternate the order (before then after, after then before, …). Every run's
output is printed as it comes under a header; ``--grep`` then collects the
matching lines of each run into one summary at the end.

``--after`` is a revision too, or (the default) the working tree as it is.
``--after-path DIR`` puts DIR ahead of the after side's source (e.g.
``build/compiled/site``, what ``make compiled`` builds) to compare the pure
Python before with the compiled after.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def checkout(rev: str) -> tuple[str, Path]:
    """``rev``'s tree under build/interleave/<sha>, extracted once."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    where = ROOT / "build" / "interleave" / sha[:12]
    if not (where / ".complete").exists():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
        (where / ".complete").touch()
    return sha[:12], where


def run_one(label: str, tree: Path, extra: list[str], script: str, args: list[str]) -> list[str]:
    env = dict(os.environ)
    paths = [*extra, str(tree / "src"), str(tree / "plugins")]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-u", str(tree / "benchmarks" / script), *args]
    print(f"\n== {label}: {' '.join(cmd[2:])}", flush=True)
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
    if p.returncode:
        lines.append(f"(exit status {p.returncode})")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--before", required=True, help="the revision to compare against (a commit, tag or branch)")
    ap.add_argument("--after", help="a revision; default: the working tree as it is")
    ap.add_argument("--after-path", action="append", default=[], help="a directory ahead of the after side's source")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating (default 2)")
    ap.add_argument("--grep", help="a regular expression: the matching lines of each run, summed up at the end")
    ap.add_argument("script", help="a script in benchmarks/ (e.g. bench_ingest.py), then its own options after --")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    ns = ap.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    before_sha, before_tree = checkout(ns.before)
    if ns.after:
        after_sha, after_tree = checkout(ns.after)
    else:
        dirty = " + changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
        after_sha, after_tree = _git("rev-parse", "--short=12", "HEAD") + dirty, ROOT
    sides = [(f"before {before_sha}", before_tree, []), (f"after {after_sha}", after_tree, ns.after_path)]
    load = os.getloadavg()
    print(f"# {ns.script} {' '.join(args)}: {ns.rounds} rounds, load at start {load[0]:.2f}", flush=True)
    results: list[tuple[str, list[str]]] = []
    for r in range(ns.rounds):
        for label, tree, extra in sides if r % 2 == 0 else sides[::-1]:
            results.append(
                (f"round {r + 1}, {label}", run_one(f"round {r + 1}, {label}", tree, extra, ns.script, args))
            )
    if ns.grep:
        pattern = re.compile(ns.grep)
        print(f"\n# summary ({ns.grep!r}), in the order run; load at the end {os.getloadavg()[0]:.2f}")
        for label, lines in results:
            print(f"## {label}")
            for line in lines:
                if pattern.search(line):
                    print(f"    {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
