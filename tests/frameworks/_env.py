"""Frameworks that cannot share the suite's environment, each run in a venv of
its own.

A venv is made on demand from a pinned requirements file
(``envs/<name>.txt``) plus this checkout of spanvisor (editable), kept in
the user's cache folder under a digest of what it was made from, so a
second run reuses it. One install at a time (pytest-xdist workers share the
folder); a venv that cannot be made skips the test, or fails it under CI.

A scenario (``envs/<framework>_scenario.py``) runs in that venv's Python
through ``envs/_drive.py``, every case on every path in one process: on the
processor and exporter paths spanvisor runs inside the venv (with that
venv's OpenTelemetry) and the driver writes the events it made, read back
here; on the paths through spanvisor's receiver (serve, stamped) the driver
sends OTLP/HTTP to a receiver in this process, as the in-suite tests do.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spanvisor.codec import event_from_dict
from spanvisor.events import Event
from spanvisor.testing import InMemorySink
from spanvisor_console import ConsoleSink

from ..conftest import missing
from ._harness import PATHS, Serve
from ._harness import Path as RunPath

ENVS = Path(__file__).parent / "envs"
ROOT = Path(__file__).parents[2]
INSTALL_TIMEOUT_S = 900.0
RUN_TIMEOUT_S = 120.0


def _checkout() -> str:
    """This checkout's place (the editable install points at it): each
    checkout has venvs of its own, and remakes only its own."""
    return hashlib.sha256(str(ROOT.resolve()).encode()).hexdigest()[:8]


def _digest(name: str) -> str:
    """What a venv is made from: its pins, what the editable install of
    spanvisor takes from pyproject.toml (its dependencies and entry points,
    not the rest, so an unrelated edit does not remake a 1 GB venv) and
    Python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    made_of = [project.get(k) for k in ("dependencies", "entry-points", "scripts")]
    h = hashlib.sha256((ENVS / f"{name}.txt").read_bytes())
    h.update(json.dumps([made_of, sys.version_info[:2]], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spanvisor" / "framework-envs"


def _checkout_of(venv: Path) -> Path | None:
    """The checkout a venv's editable install of spanvisor points at (pip
    records it), or ``None`` when the venv does not say."""
    for record in venv.glob("lib/python*/site-packages/spanvisor-*.dist-info/direct_url.json"):
        try:
            url = json.loads(record.read_text()).get("url", "")
        except (OSError, ValueError):
            return None
        return Path(url.removeprefix("file://")) if url.startswith("file://") else None
    return None


def _drop_orphans(cache: Path) -> None:
    """Remove the venvs of checkouts that are gone: each is a GB, and every
    fresh clone that ran the suite (CI's, a reviewer's) left one behind.
    A venv that does not say where it points is left alone; one whose lock
    is held (being made or used) too."""
    for venv in cache.iterdir():
        if not venv.is_dir():
            continue
        checkout = _checkout_of(venv)
        if checkout is None or (checkout / "pyproject.toml").is_file():
            continue
        lock = cache / f"{venv.name.rsplit('-', 1)[0]}.lock"
        try:
            with lock.open("w") as held:
                # Held: that checkout is installing or using it right now.
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(venv, ignore_errors=True)
        except OSError:
            continue


def venv_python(name: str) -> Path:
    """The Python of venv ``name``, made first if needed."""
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    _drop_orphans(cache)
    mine = f"{name}-{_checkout()}"
    target = cache / f"{mine}-{_digest(name)}"
    python = target / "bin" / "python"
    stamp = target / ".spanvisor-complete"
    with (cache / f"{mine}.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if stamp.is_file():
            return python
        # This checkout's venv of an earlier pin set, or a broken try; another
        # checkout's (a second clone running its tests now) is left alone.
        for old in cache.glob(f"{mine}-*"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        env = {**os.environ, "SPANVISOR_COMPILE": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        steps = [
            [sys.executable, "-m", "venv", str(target)],
            [str(python), "-m", "pip", "install", "-q", "-r", str(ENVS / f"{name}.txt"), "-e", str(ROOT)],
        ]
        for step in steps:
            try:
                done = subprocess.run(
                    step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env, check=False
                )
            except subprocess.TimeoutExpired:
                missing(f"the {name} venv ({step[2]} did not finish in {INSTALL_TIMEOUT_S:.0f} s)")
            if done.returncode != 0:
                missing(f"the {name} venv ({' '.join(step[:4])} exited {done.returncode}: {done.stderr[-2000:]})")
        stamp.write_text(_digest(name))
    return python


@dataclass(frozen=True)
class EnvRun:
    """What spanvisor made of one case of a scenario on one path."""

    events: list[Event]
    console: str
    # {"output": ...} or {"error_type": ..., "error_message": ...}
    result: dict[str, str]
    # Every span in end order: name, ids, parent, kind, status, attributes.
    spans: list[dict[str, Any]]
    # On ``processor``: what the run's first tool call saw mid-run (envs/_live.py).
    live: list[dict[str, Any]]


Runs = dict[tuple[RunPath, str], EnvRun]


def run_scenario(env: str | None, scenario: str, cases: tuple[str, ...]) -> Runs:
    """Every case of ``envs/<scenario>.py`` on every path, in one process of
    venv ``env`` (``None``: this Python, for a framework of the suite's
    environment that traces only to the global provider)."""
    python = venv_python(env) if env is not None else Path(sys.executable)
    # A receiver per run on the paths that send OTLP: each run's events apart.
    remote = [(path, case) for path in PATHS for case in cases if path in ("serve", "stamped")]
    memories = {run: InMemorySink() for run in remote}
    consoles = {run: io.StringIO() for run in remote}
    serves: dict[tuple[RunPath, str], Serve] = {}
    runs: Runs = {}
    try:
        for run in remote:
            serves[run] = Serve([memories[run], ConsoleSink(stream=consoles[run], interval_s=3600)])
        with tempfile.TemporaryDirectory(prefix="spanvisor-env-") as out:
            args = [str(python), str(ENVS / "_drive.py"), scenario, out]
            for path in PATHS:
                for case in cases:
                    url = serves[path, case].url if (path, case) in serves else ""
                    args.append(f"{path}:{case}" + (f"={url}" if url else ""))
            done = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=ENVS, check=False)
            assert done.returncode == 0, f"{scenario} exited {done.returncode}:\n{done.stderr[-6000:]}"
            for path in PATHS:
                for case in cases:
                    base = Path(out, f"{path}-{case}")
                    if (path, case) in serves:
                        assert serves[path, case].force_flush(10_000)
                        events = list(memories[path, case].events)
                        card = consoles[path, case].getvalue()
                    else:
                        lines = base.with_suffix(".events.jsonl").read_text().splitlines()
                        events = [event_from_dict(json.loads(line)) for line in lines]
                        card = base.with_suffix(".console.txt").read_text()
                    result = json.loads(base.with_suffix(".result.json").read_text())
                    spans = [json.loads(x) for x in base.with_suffix(".spans.jsonl").read_text().splitlines()]
                    live = json.loads(base.with_suffix(".live.json").read_text())
                    runs[path, case] = EnvRun(events, card, result, spans, live)
    finally:
        for serve in serves.values():
            serve.close()
    return runs


def paths_failing(reason: str, *failing: RunPath) -> pytest.MarkDecorator:
    """Every path, those in ``failing`` a strict xfail for ``reason``:
    spanvisor shows the run wrongly there, and the test says what is right."""
    marks = pytest.mark.xfail(strict=True, reason=reason)
    return pytest.mark.parametrize("path", [pytest.param(p, marks=marks) if p in failing else p for p in PATHS])


if __name__ == "__main__":
    # ``make test`` makes the venvs named (else all) in the background while
    # lint and the type check run; the tests wait for each on its lock.
    for arg in sys.argv[1:] or sorted(p.stem for p in ENVS.glob("*.txt")):
        venv_python(arg)
        print(f"venv {arg}: ready")
