"""The coding-agent CLIs, installed from the project's own files: ``npm ci``
from ``npm/package-lock.json`` (exact versions, integrity hashes) into
``npm/node_modules`` when it is missing or was installed from another
lockfile. One install at a time (pytest-xdist workers share the folder);
the registry is the only network it needs, and a hung install fails in
minutes, not at CI's limit.

``TEST_CLIS_DIR`` (a folder; unset: ``tests/codingagents/npm``) runs the
matrix against the CLIs installed in another npm project's
``node_modules`` instead, used as it is (nothing installed there): ``make
test-clis-latest`` installs each CLI's newest release into
``.clis-latest`` (:mod:`tests.codingagents.latest`) and points this at it."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import missing, require

NPM_DIR = Path(__file__).parent / "npm"
CLIS_DIR_ENV = "TEST_CLIS_DIR"
# The folder whose node_modules the matrix runs (the pinned one unless told).
OTHER_DIR = Path(os.environ[CLIS_DIR_ENV]).resolve() if os.environ.get(CLIS_DIR_ENV) else None
MODULES = (OTHER_DIR or NPM_DIR) / "node_modules"
BIN = MODULES / ".bin"
# Written after a successful install: the lockfile's digest it came from.
STAMP = MODULES / ".spanvisor-lock-sha256"
INSTALL_TIMEOUT_S = 900.0
INSTALL = "apt-get install nodejs npm (.ci/run installs them)"


def _lock_digest() -> str:
    return hashlib.sha256((NPM_DIR / "package-lock.json").read_bytes()).hexdigest()


def _fresh() -> bool:
    return STAMP.is_file() and STAMP.read_text().strip() == _lock_digest()


def install() -> Path:
    """The folder of the CLIs' executables (``claude``, ``codex``, ``gemini``)."""
    if OTHER_DIR is not None:
        if not BIN.is_dir():
            missing(f"the coding-agent CLIs in {CLIS_DIR_ENV}={OTHER_DIR} (no {BIN})")
        return BIN
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            missing(tool, INSTALL)
    npm = require("npm")
    # Outside the folder (npm ci empties node_modules; the tree stays clean).
    key = hashlib.sha256(str(NPM_DIR.resolve()).encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"spanvisor-npm-{key}.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not _fresh():
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=NPM_DIR,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                missing(f"the coding-agent CLIs (npm ci did not finish in {INSTALL_TIMEOUT_S:.0f} s)")
            if done.returncode != 0:
                missing(f"the coding-agent CLIs (npm ci exited {done.returncode}: {done.stderr[-2000:]})")
            STAMP.write_text(_lock_digest())
    return BIN


if __name__ == "__main__":
    # ``make test`` installs the CLIs in the background while lint and the
    # type check run (a minute of npm ci a fresh clone would otherwise pay
    # inside the first CLI test); the tests wait for it on its lock, and an
    # install that failed here is tried again, and said, by the first of them.
    try:
        print(f"coding-agent CLIs: ready in {install()}")
    except BaseException as exc:  # pytest's skip and fail outside pytest
        print(f"coding-agent CLIs: not installed here ({exc}); the tests try again")
