"""Running a real coding-agent CLI: a clean environment (none of the
caller's keys, telemetry or spanvisor settings; HOME of its own; nothing
that would reach a vendor), a working folder of its own, a deadline, and
what it said. ``spanvisor run`` in front of it when asked."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Long enough for a loaded 2-core machine; a CLI that tries the internet
# (there is none) fails at this deadline instead of hanging the suite.
RUN_TIMEOUT_S = 240.0
SPANVISOR = [sys.executable, "-m", "spanvisor.cli"]


def hook_command(cli: str) -> str:
    """The hook command line a CLI's settings name: this interpreter's spanvisor."""
    return " ".join(shlex.quote(a) for a in [*SPANVISOR, "hook", cli])


def base_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT") if k in os.environ}
    env.update(HOME=str(home), TERM="dumb", NO_COLOR="1", XDG_CONFIG_HOME=str(home / ".config"))
    env.setdefault("LANG", "C.UTF-8")
    return env


@dataclass
class Ran:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    # When it was seen to exit (made once the CLI ended): what a test of its
    # end hooks waits from (endhooks.left_to_liveness).
    exited_at: float = field(default_factory=time.monotonic)

    def lines(self) -> list[dict[str, Any]]:
        """The JSON lines of its stdout (stream-json, --json)."""
        out = []
        for ln in self.stdout.splitlines():
            if ln.startswith("{"):
                try:
                    out.append(json.loads(ln))
                except ValueError:
                    continue
        return out

    def said(self) -> str:
        return f"{shlex.join(self.argv)} exited {self.code}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


@dataclass(frozen=True)
class Alone:
    """A session run alone (no launcher), once for its test file: the run id
    of its model's script and what the CLI said. A module fixture makes it,
    the test that reads it and the file's last test (liveness ends it) share
    it, so its liveness window runs while the file's other tests do."""

    run_id: str
    ran: Ran


class Running:
    """A CLI started in the background (a test answers its hook meanwhile)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait(self) -> Ran:
        try:
            out, err = self.proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            out, err = self.proc.communicate()
            said = f"{shlex.join(self.argv)} did not end in {RUN_TIMEOUT_S:.0f} s\n{out[-4000:]}\n{err[-4000:]}"
            raise AssertionError(said) from exc
        return Ran(self.argv, self.proc.returncode, out, err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def launched(argv: list[str], launcher: dict[str, str] | None) -> list[str]:
    """``argv`` under ``spanvisor run`` with ``launcher``'s options (an empty
    value: a flag alone), or as is."""
    if launcher is None:
        return argv
    options = [a for k, v in launcher.items() for a in ((f"--{k}", v) if v else (f"--{k}",))]
    return [*SPANVISOR, "run", *options, "--", *argv]


# The launcher's heartbeat in the matrix: far inside serve's liveness window
# (tests/codingagents/served.py), so a launched task stays live however long
# its CLI is silent on a busy machine, as SPANVISOR_HEARTBEAT promises.
LAUNCHER_HEARTBEAT = "1s"


def start(argv: list[str], env: dict[str, str], cwd: Path, launcher: dict[str, str] | None = None) -> Running:
    cwd.mkdir(parents=True, exist_ok=True)
    if launcher is not None and "SPANVISOR_HEARTBEAT" not in env:
        env = {**env, "SPANVISOR_HEARTBEAT": LAUNCHER_HEARTBEAT}
    return Running(launched(argv, launcher), env, cwd)


def run(argv: list[str], env: dict[str, str], cwd: Path, launcher: dict[str, str] | None = None) -> Ran:
    """Run ``argv`` in ``cwd`` to its end; with ``launcher`` (the options of
    ``spanvisor run``: endpoint, task id), under the launcher."""
    return start(argv, env, cwd, launcher).wait()
