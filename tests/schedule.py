"""pytest plugin: the order the suite's files start in, and how many files
of real coding-agent CLIs run at once.

With ``--dist loadfile`` pytest-xdist hands each free worker the next file
of the collection (``--no-loadscope-reorder`` keeps our order). A run ends
when its last file does, so the longest files go first, as a scheduler would
place them knowing each file's time (``tests/file_seconds.json``, measured
by a run of the suite: ``python -m tests.schedule --junit FILE``).

The real CLIs (``tests/codingagents/test_*``: Node.js processes, several at
once per file) are what loads the machine most. At most
``TEST_CLI_FILES`` of their files (2 by default) run at once, and a file
that starts seven at once runs alone (:data:`WHOLE_FILES`): a worker
that gets a third waits for a slot, before its first test's deadline starts,
and the order is planned so that it rarely has to. The slots are
``flock``\\ s on files named after the checkout, so two runs of the same
checkout share them and two checkouts do not.

Loaded from ``tests/conftest.py``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import heapq
import json
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Generator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(__file__).with_name("file_seconds.json")
CLI_FILES = "tests/codingagents/test_"
# CLI files that start several CLIs at once (seven, in a fixture each row
# shares): each takes every slot, so no other CLI file runs beside it. Beside
# another on a loaded 2-core machine, a session's Slack parent once took
# over two minutes to show (the fresh-clone runs of 2026-11-27).
WHOLE_FILES = frozenset({"tests/codingagents/test_stop_more.py", "tests/codingagents/test_stop.py"})
# A file the table does not know yet (a new one) is planned at this many seconds.
UNKNOWN_S = 5.0


def cli_slots() -> int:
    return max(1, int(os.environ.get("TEST_CLI_FILES", "2")))


def is_cli_file(path: str) -> bool:
    return path.startswith(CLI_FILES)


def slots_of(path: str, slots: int) -> int:
    """How many CLI slots ``path`` takes: none, one, or all (:data:`WHOLE_FILES`)."""
    return 0 if not is_cli_file(path) else slots if path in WHOLE_FILES else 1


def plan(seconds: dict[str, float], files: list[str], workers: int, slots: int) -> list[str]:
    """The start order of ``files`` on ``workers`` workers: each worker, when
    free, takes the longest file left that may run then (a CLI file only while
    fewer than ``slots`` run), as xdist will hand them out."""
    left = sorted(files, key=lambda f: (-seconds.get(f, UNKNOWN_S), f))
    free = [(0.0, w) for w in range(max(1, workers))]
    cli_ends: list[float] = []
    order: list[str] = []
    while left:
        now, worker = heapq.heappop(free)
        running = [e for e in cli_ends if e > now]
        pick = next((f for f in left if len(running) + slots_of(f, slots) <= slots), left[0])
        start = now
        need = slots_of(pick, slots)
        if need and len(running) + need > slots:  # only CLI files left: it waits for its slots
            start = sorted(running)[len(running) + need - slots - 1]
        end = start + seconds.get(pick, UNKNOWN_S)
        cli_ends.extend([end] * need)
        left.remove(pick)
        order.append(pick)
        heapq.heappush(free, (end, worker))
    return order


def _weights() -> dict[str, float]:
    try:
        loaded = json.loads(WEIGHTS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def _file_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    files = list(dict.fromkeys(_file_of(i) for i in items))
    rank = {f: n for n, f in enumerate(plan(_weights(), files, workers, cli_slots()))}
    items.sort(key=lambda i: rank[_file_of(i)])  # stable: a file's tests keep their order


class _Slot:
    """The CLI slot this process holds, for the file it is running. The slots
    are lock files in ``folder``: by default one per checkout, shared by the
    suite's workers (a test of the slots gives its own, or it would wait for
    the suite's CLI files)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.file: str | None = None
        self.handles: list[IO[bytes]] = []
        key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
        self.folder = folder or Path(tempfile.gettempdir()) / f"spanvisor-test-cli-slots-{key}"

    def take(self, file: str) -> None:
        folder = self.folder
        folder.mkdir(exist_ok=True)
        if slots_of(file, cli_slots()) > 1:
            # Every slot, in order, each waited for: the holders of one give
            # theirs back when their file ends, and a process that takes one
            # never waits for a second while holding it.
            for n in range(cli_slots()):
                handle = (folder / f"slot-{n}").open("ab")
                fcntl.flock(handle, fcntl.LOCK_EX)
                self.handles.append(handle)
            self.file = file
            return
        while True:
            for n in range(cli_slots()):
                handle = (folder / f"slot-{n}").open("ab")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    continue
                self.file, self.handles = file, [handle]
                return
            time.sleep(0.2)

    def give_back(self) -> None:
        for handle in self.handles:
            handle.close()  # closing the file releases its flock
        self.file, self.handles = None, []


_slot = _Slot()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    file = _file_of(item)
    if is_cli_file(file) and _slot.file != file:
        _slot.give_back()
        _slot.take(file)
    try:
        yield
    finally:
        # Module fixtures are torn down with the file's last test: the
        # slot is given back once its CLIs are gone.
        if _slot.file is not None and (nextitem is None or _file_of(nextitem) != _slot.file):
            _slot.give_back()


def _from_junit(path: Path) -> dict[str, float]:
    """Seconds per file from a JUnit XML report (setup, call and teardown)."""
    per_file: dict[str, float] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "")
        parts = module.split(".")
        # classname is the module's dotted path, then a class name if any.
        while parts and not (ROOT / Path(*parts)).with_suffix(".py").is_file():
            parts.pop()
        if not parts:
            continue
        file = Path(*parts).with_suffix(".py").as_posix()
        per_file[file] = per_file.get(file, 0.0) + float(case.get("time", "0") or 0)
    return per_file


def main() -> None:
    parser = argparse.ArgumentParser(description="Write tests/file_seconds.json from a run's JUnit XML report.")
    parser.add_argument("--junit", type=Path, required=True, help="pytest --junitxml=FILE of a whole run")
    args = parser.parse_args()
    seconds = _from_junit(args.junit)
    WEIGHTS.write_text(json.dumps({f: round(s, 1) for f, s in sorted(seconds.items())}, indent=1) + "\n")
    print(f"{len(seconds)} files, {sum(seconds.values()):.0f} s in all, written to {WEIGHTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
