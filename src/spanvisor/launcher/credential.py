"""The launcher's word on its task: a secret of the session that the CLI it
runs cannot read (issue 63; what the tracker does with it:
:mod:`spanvisor.tracking.launcherend`).

Minted at start, held in the launcher's memory only: never in the CLI's
environment, argv or files. The CLI runs as the same user, who may read
another process's environment (``/proc/PID/environ``) and, where ptrace is
not restricted, its memory; a process that is not *dumpable* has both kept
from other processes of its user (``prctl(PR_SET_DUMPABLE, 0)``; root
still reads them). The flag is the launcher's alone: the CLI, started with
``exec``, is dumpable as usual.
"""

from __future__ import annotations

import hashlib
import secrets
import sys

_PR_SET_DUMPABLE = 4


class SessionSecret:
    """The secret, and the key the task's start record names."""

    __slots__ = ("_secret", "key")

    def __init__(self) -> None:
        self._secret = secrets.token_hex(32)
        self.key = hashlib.sha256(self._secret.encode("ascii")).hexdigest()

    @property
    def proof(self) -> str:
        """What the launcher's end of the task carries."""
        return self._secret

    def __repr__(self) -> str:  # never the secret, in a traceback or a log
        return f"SessionSecret(key={self.key[:12]}…)"


def keep_from_the_session() -> bool:
    """Make this process not dumpable (Linux): the CLI and whatever it
    starts cannot read its memory or environment. False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


__all__ = ["SessionSecret", "keep_from_the_session"]
