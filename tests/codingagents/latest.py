"""``make test-clis-latest``: the real-CLI matrix (tests/codingagents)
against the newest release of each of the CLIs, to notice a release
that changed what the matrix proves before the pins are moved.

Each CLI's newest version is asked of the npm registry (``npm view PKG
version``, its ``latest`` tag), installed exactly into a folder of its own
(``.clis-latest`` unless told; tests/codingagents/npm, the pinned CLIs, is
never touched; a folder that already holds those versions is reused), and
the matrix runs once with ``TEST_CLIS_DIR`` pointing at it, on one worker
(``-n 1``) within a deadline. It prints the versions (pinned → newest), then
per CLI the tests that passed, failed or were skipped. Not part of ``make
test`` or CI: it needs the registry, and its result changes with it.

    python -m tests.codingagents.latest [--dir .clis-latest] [--timeout 3600] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINNED = Path(__file__).parent / "npm" / "package.json"
# The CLIs' packages, as the lockfile pins them (Cline, Kilo, Factory Droid: their platform binaries alone).
CLIS = {
    "claude": ("Claude Code", "@anthropic-ai/claude-code"),
    "codex": ("Codex CLI", "@openai/codex"),
    "gemini": ("Gemini CLI", "@google/gemini-cli"),
    "qwen": ("Qwen Code", "@qwen-code/qwen-code"),
    "copilot": ("Copilot CLI", "@github/copilot"),
    "opencode": ("OpenCode", "opencode-ai"),
    "cline": ("Cline", "@cline/cli-linux-x64"),
    "pi": ("pi", "@mariozechner/pi-coding-agent"),
    "kilo": ("Kilo", "@kilocode/cli-linux-x64"),
    "droid": ("Factory Droid", "@factory/cli-linux-x64"),
}
# Installed at the version of the CLI it goes with.
COMPANIONS = {"@opencode-ai/plugin": "opencode-ai"}
STAMP = ".spanvisor-latest.json"
NPM_TIMEOUT_S = 1200.0


def _npm(args: list[str], cwd: Path, timeout_s: float) -> str:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("make test-clis-latest: npm is not installed (apt-get install nodejs npm)")
    done = subprocess.run([npm, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        sys.exit(f"make test-clis-latest: npm {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def pinned() -> dict[str, str]:
    doc = json.loads(PINNED.read_text())
    return {**doc.get("dependencies", {}), **doc.get("optionalDependencies", {})}


def newest(folder: Path) -> dict[str, str]:
    """Each package's ``latest`` version on the registry."""
    found = {pkg: _npm(["view", pkg, "version"], folder, 120.0).strip() for _, pkg in CLIS.values()}
    for companion, of in COMPANIONS.items():
        found[companion] = found[of]
    return found


def install(folder: Path, versions: dict[str, str]) -> None:
    """``versions`` installed exactly into ``folder`` (kept when it already holds them)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "node_modules" / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == versions:
        return
    doc = {"name": "spanvisor-clis-latest", "version": "0.0.0", "private": True, "dependencies": versions}
    (folder / "package.json").write_text(json.dumps(doc, indent=2) + "\n")
    (folder / "package-lock.json").unlink(missing_ok=True)
    _npm(["install", "--no-audit", "--no-fund", "--loglevel=error"], folder, NPM_TIMEOUT_S)
    for pkg, version in versions.items():
        got = json.loads((folder / "node_modules" / pkg / "package.json").read_text()).get("version")
        if got != version:
            sys.exit(f"make test-clis-latest: {pkg} {version} was asked for, {got} is installed")
    stamp.write_text(json.dumps(versions))


def cli_of(case: ET.Element) -> str:
    """The CLI a test case runs (from its file or its parameters); ``shared`` for none."""
    raw = f"{case.get('classname', '')}.{case.get('name', '')}".lower()
    said = raw.replace("_", "")
    for key in ("claude", "codex", "gemini", "qwen", "copilot", "opencode", "cline", "kilo", "droid"):
        if key in said:
            return key
    # pi's name is in many words: its files (test_pi*) and its parameters ([pi], [pi-SIGINT]).
    if "test_pi" in raw or "[pi]" in raw or "[pi-" in raw:
        return "pi"
    return "shared"


def outcome(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def report(results: Path, old: dict[str, str], new: dict[str, str]) -> int:
    """Print the versions and the results per CLI; the count of failures."""
    by_cli: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    if results.is_file():
        for case in ET.parse(results).iter("testcase"):
            by_cli[cli_of(case)][outcome(case)].append(f"{case.get('classname', '')}::{case.get('name', '')}")
    failed = 0
    print("\nThe matrix against each CLI's newest release:")
    for key, (name, pkg) in CLIS.items():
        got = by_cli.get(key, {})
        counts = ", ".join(f"{len(got.get(o, []))} {o}" for o in ("passed", "failed", "skipped"))
        print(f"  {name:<12} {old.get(pkg, '?'):>10} → {new.get(pkg, '?'):<10} {counts}")
        for test in got.get("failed", []):
            print(f"      failed: {test}")
        failed += len(got.get("failed", []))
    shared = by_cli.get("shared", {})
    if shared:
        print(
            f"  (tests of no one CLI: {len(shared.get('passed', []))} passed, {len(shared.get('failed', []))} failed)"
        )
        for test in shared.get("failed", []):
            print(f"      failed: {test}")
        failed += len(shared.get("failed", []))
    if not results.is_file():
        print("  no results: pytest did not finish (its deadline?)")
        return 1
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make test-clis-latest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=str(ROOT / ".clis-latest"), help="where the newest CLIs are installed")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds the matrix may run")
    ap.add_argument("pytest_args", nargs="*", help="more arguments for pytest (after --)")
    args = ap.parse_args(argv)
    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    old, new = pinned(), newest(folder)
    print("make test-clis-latest: installing " + ", ".join(f"{p}@{v}" for p, v in new.items()), flush=True)
    install(folder, new)
    results = folder / "results.xml"
    results.unlink(missing_ok=True)
    env = {**os.environ, "TEST_CLIS_DIR": str(folder)}
    cmd = [sys.executable, "-m", "pytest", "tests/codingagents", "-n", "1", "-q", f"--junitxml={results}"]
    # A session of its own: at the deadline its workers and CLIs are stopped with it.
    proc = subprocess.Popen([*cmd, *args.pytest_args], cwd=ROOT, env=env, start_new_session=True)
    try:
        proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"make test-clis-latest: the matrix did not finish in {args.timeout:.0f} s", flush=True)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return 1 if report(results, old, new) else 0


if __name__ == "__main__":
    sys.exit(main())
