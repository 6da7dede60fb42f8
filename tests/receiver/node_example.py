"""The Node.js example's npm packages (docs/examples/node), installed by
``npm ci`` from its lockfile once per lockfile into
``~/.cache/spanvisor-tests/node/<hash>`` (outside the repository): a
finished install is renamed into place whole, and one install runs at a
time (a lock beside it), so the suite's background start (``make test``:
``python -m tests.receiver.node_example``, while lint and the type check
run) and test_live_node.py's setup share one. It needs only the standard
library, node and npm; outside pytest, a failure is printed and the test
tries again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "node"
NODE_MIN = (18, 19)  # what the pinned packages' engines accept
NODE_INSTALL = "apt-get install nodejs npm (Node.js 18.19 or later)"
FILES = ("package.json", "package-lock.json")


def missing(what: str, install: str | None = None) -> NoReturn:
    """tests.conftest's, imported when it is needed (a fail under CI, a skip elsewhere)."""
    from tests.conftest import missing as said

    said(what, install)


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spanvisor-tests" / "node"


def node() -> str:
    found = shutil.which("node")
    if found is None or shutil.which("npm") is None:
        missing("node and npm", NODE_INSTALL)
    out = subprocess.run([found, "--version"], check=False, capture_output=True, text=True, timeout=30).stdout
    m = re.match(r"v(\d+)\.(\d+)", out.strip())
    if m is None or (int(m.group(1)), int(m.group(2))) < NODE_MIN:
        missing(f"Node.js {NODE_MIN[0]}.{NODE_MIN[1]} or later (found {out.strip() or 'none'})", NODE_INSTALL)
    return found


def node_modules() -> Path:
    """The example's ``node_modules``, installed when it is not yet."""
    key = hashlib.sha256(b"".join((EXAMPLE / f).read_bytes() for f in FILES)).hexdigest()[:16]
    home = _cache() / key
    if (home / ".complete").is_file():
        return home / "node_modules"
    _cache().mkdir(parents=True, exist_ok=True)
    with (_cache() / f"{key}.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if (home / ".complete").is_file():  # made while this waited
            return home / "node_modules"
        _install(key, home)
    return home / "node_modules"


def _install(key: str, home: Path) -> None:
    staging = _cache() / f"{key}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for f in FILES:
        shutil.copy(EXAMPLE / f, staging / f)
    npm = ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"]
    try:
        done = subprocess.run(npm, cwd=staging, check=False, capture_output=True, text=True, timeout=300)
        said = [
            line
            for line in (done.stderr or done.stdout).splitlines()
            if line.strip() and not line.startswith("npm warn")
        ]
        why = "" if done.returncode == 0 else " | ".join(said[:3])[:400] or f"exit status {done.returncode}"
    except subprocess.TimeoutExpired:
        why = "no answer in 300 s"
    if why:
        shutil.rmtree(staging, ignore_errors=True)
        missing(
            f"the Node example's npm packages (npm ci: {why})", "npm ci in docs/examples/node, with the npm registry"
        )
    (staging / ".complete").touch()
    try:
        staging.rename(home)
    except OSError:  # an install of an older checkout got there first: as good
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    try:
        node()
        print(f"the Node example's packages: ready in {node_modules()}", flush=True)
    except BaseException as exc:  # pytest's skip and fail outside pytest
        print(f"the Node example's packages: not installed here ({exc}); its test tries again", flush=True)
