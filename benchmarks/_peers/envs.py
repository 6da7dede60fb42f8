"""Each peer in a virtual environment of its own under ``.bench-peers/``.

The peers pin dependencies that clash with spanvisor's and with each other's
(Phoenix and MLflow each bring their own SQLAlchemy, FastAPI and
OpenTelemetry ranges), so none goes into the project's venv. An environment
is made once, with the pinned version from PyPI, and kept: a stamp file
names what was installed, and an environment without its stamp (an install
that was interrupted) is made again from scratch.

The paths are stable, ``<repo>/.bench-peers/<name>/``: ``bench_agent_thread.py``
runs with ``.bench-peers/agent-sdks/bin/python`` to import Langfuse's and
Logfire's SDKs, which is why that environment holds spanvisor too.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".bench-peers"


@dataclass(frozen=True)
class Env:
    name: str
    requirements: tuple[str, ...]  # pip arguments, pinned
    what: str

    @property
    def path(self) -> Path:
        return HOME / self.name

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def stamp(self) -> Path:
        digest = hashlib.sha256("\n".join(self.requirements).encode()).hexdigest()[:12]
        return self.path / f".installed-{digest}"


PHOENIX_VERSION = "20.26.1"
MLFLOW_VERSION = "3.17.2"
LANGFUSE_VERSION = "5.0.4"
LOGFIRE_VERSION = "5.4.0"

ENVS = {
    "phoenix": Env("phoenix", (f"arize-phoenix=={PHOENIX_VERSION}",), f"Arize Phoenix {PHOENIX_VERSION}"),
    "mlflow": Env("mlflow", (f"mlflow=={MLFLOW_VERSION}",), f"MLflow {MLFLOW_VERSION}"),
    # For bench_agent_thread.py's (l) and (g): the SDKs beside spanvisor
    # itself (editable: the benchmark imports the working tree's source).
    "agent-sdks": Env(
        "agent-sdks",
        (f"langfuse=={LANGFUSE_VERSION}", f"logfire=={LOGFIRE_VERSION}", "-e", str(ROOT)),
        f"Langfuse {LANGFUSE_VERSION} and Logfire {LOGFIRE_VERSION} SDKs, with spanvisor",
    ),
}

# pip's lines worth showing while an install runs: a slow install is
# otherwise minutes of silence.
_PROGRESS = ("Collecting ", "Downloading ", "Installing collected", "Successfully installed", "ERROR", "error:")


def ensure(env: Env) -> Path:
    """The environment's ``bin/``, installed first unless its stamp is there."""
    if env.stamp.exists():
        return env.bin
    print(f"installing {env.what} into {env.path.relative_to(ROOT)} (once; kept for later runs) …", flush=True)
    started = time.monotonic()
    if env.path.exists():
        shutil.rmtree(env.path)  # an interrupted install: start clean
    # The base interpreter even when this one runs in a venv (venv does that).
    subprocess.run([sys.executable, "-m", "venv", str(env.path)], check=True)
    cmd = [str(env.bin / "pip"), "install", "--progress-bar", "off", "--disable-pip-version-check", *env.requirements]
    collected = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            if line.startswith("Collecting "):
                collected += 1
                if collected % 10 == 0:
                    print(f"  … {collected} packages resolved ({time.monotonic() - started:.0f} s)", flush=True)
            elif line.startswith(_PROGRESS[2:]):
                print(f"  {line.rstrip()[:160]}", flush=True)
    if proc.returncode:
        raise SystemExit(f"pip install of {env.what} failed:\n" + "\n".join(tail))
    env.stamp.touch()
    print(f"  {env.what} installed in {time.monotonic() - started:.0f} s", flush=True)
    return env.bin


def main(argv: list[str] | None = None) -> int:
    """``python -m`` style entry for ``make bench-peers``: install the named
    environments (default all) and say where they are."""
    names = (argv if argv is not None else sys.argv[1:]) or list(ENVS)
    for name in names:
        env = ENVS[name]
        where = ensure(env)
        print(f"{env.what}: {where.relative_to(ROOT)}/python")
    return 0
