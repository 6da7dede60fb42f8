"""Claude Code in its interactive UI, at a terminal the test holds (a
pseudo-terminal): the permission dialog a person answers there. Its first
start is made quiet by the settings a person's first run leaves behind
(onboarding done, the folder trusted, the API key accepted)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

from tests.codingagents.served import MODEL

API_KEY = "sk-ant-matrix-dummy"


def first_run_done(home: Path, work: Path, key: str = API_KEY) -> None:
    """``~/.claude.json`` as a person's first run leaves it."""
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "theme": "dark",
        "numStartups": 3,
        "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []},
        "projects": {str(work): {"hasTrustDialogAccepted": True, "allowedTools": []}},
    }
    (home / ".claude.json").write_text(json.dumps(state))


class Terminal:
    """A CLI on a pseudo-terminal: what it drew (read on a thread), keys typed."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, rows: int = 40, cols: int = 120) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.master = master
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True
        )
        os.close(slave)
        self.drawn = bytearray()
        self._reader = threading.Thread(target=self._read, name="claude-tty", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.drawn += data

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def said(self) -> str:
        return bytes(self.drawn[-4000:]).decode("utf-8", "replace")

    def drawn_after(self, first: bytes, then: bytes) -> bool:
        """Whether ``then`` was drawn after the last ``first``."""
        drawn = bytes(self.drawn)
        at = drawn.rfind(first)
        return at >= 0 and then in drawn[at + len(first) :]

    def stop(self, timeout: float = 30, presses: int = 1) -> int | None:
        """Ctrl-C twice at once, as a person quits (the CLI's SessionEnd
        hooks run); with ``presses`` more than one, pressed again while it
        still runs (Codex: a Ctrl-C that lands in a turn still ending only
        interrupts it, and a person presses again). Killed (its whole
        session) after ``timeout``."""
        deadline = time.monotonic() + timeout
        for press in range(presses):
            if self.proc.poll() is not None:
                break
            self.type(b"\x03\x03")
            try:
                self.proc.wait(max(0.1, (deadline - time.monotonic()) / (presses - press)))
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: whatever it started goes too
            self.proc.wait(10)
        try:
            os.close(self.master)
        except OSError:
            pass
        self._reader.join(5)
        return self.proc.returncode


def argv(bin_dir: Path, prompt: str, settings: Path) -> list[str]:
    """Claude Code's interactive UI on ``prompt`` (no ``-p``: a call that
    needs permission is asked at the terminal)."""
    return [str(bin_dir / "claude"), "--model", MODEL, "--settings", str(settings), prompt]
