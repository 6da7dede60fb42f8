"""The process table as ``spanvisor run`` reads it: who runs under whom, and
the session's orphans the launcher adopts.

**Adoption.** On Linux the launcher becomes the subreaper of the session it
starts (``PR_SET_CHILD_SUBREAPER``): a process that leaves the CLI's group
and tree (``setsid``, then a double fork) is re-parented to the launcher
instead of init, so a stop still finds it (:mod:`.run_stop`). The session's
orphans are the launcher's children other than the CLI that were not its
children before the CLI started: a program that runs the launcher inside
its own process (a test, a host) keeps its own children out of it. The
launcher gives the role back when the session ends.

Only the standard library: the launcher imports this before the CLI starts.
"""

from __future__ import annotations

import os
import subprocess
import sys

# prctl(2) options.
_SET_SUBREAPER, _GET_SUBREAPER = 36, 37


def children() -> dict[int, list[int]]:
    """Every process's children, by parent pid (Linux: /proc; else ``ps``)."""
    kids: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        names = []
    if names:
        for d in names:
            if not d.isdigit():
                continue
            fields = stat_fields(int(d))
            if len(fields) > 1 and fields[1].isdigit():
                kids.setdefault(int(fields[1]), []).append(int(d))
        return kids
    try:
        ps = ["ps", "-A", "-o", "pid=,ppid="]
        out = subprocess.run(ps, capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return kids
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            kids.setdefault(int(parts[1]), []).append(int(parts[0]))
    return kids


def stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command's name (state, ppid, …), or []."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return []  # gone meanwhile


def under(roots: list[int], kids: dict[int, list[int]]) -> list[int]:
    """``roots`` and every process under them, parents first."""
    out, seen, i = list(roots), set(roots), 0
    while i < len(out):
        for k in kids.get(out[i], ()):
            if k not in seen:
                seen.add(k)
                out.append(k)
        i += 1
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and every process under it, parents first."""
    return under([pid], children())


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def _identity(pid: int) -> tuple[int, str]:
    """A process as it cannot be mistaken for a later one with its pid: its start time."""
    fields = stat_fields(pid)
    return pid, fields[19] if len(fields) > 19 else ""


class Adoption:
    """The launcher as the subreaper of the session it starts, or not (off
    Linux, or refused): then a stop reaches the CLI's group and tree only."""

    def __init__(self) -> None:
        self.on = False
        self._was = False
        self._before: frozenset[tuple[int, str]] = frozenset()

    @classmethod
    def begin(cls) -> Adoption:
        """Adopt from now on; what this process runs already stays its own."""
        adoption = cls()
        if not sys.platform.startswith("linux"):
            return adoption
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            was = ctypes.c_int(0)
            libc.prctl(_GET_SUBREAPER, ctypes.byref(was), 0, 0, 0)
            if int(libc.prctl(_SET_SUBREAPER, 1, 0, 0, 0)) != 0:
                return adoption
        except (OSError, AttributeError):
            return adoption
        adoption.on, adoption._was = True, bool(was.value)
        adoption._before = frozenset(_identity(p) for p in children().get(os.getpid(), ()))
        return adoption

    def orphans(self, cli_pid: int, kids: dict[int, list[int]] | None = None) -> list[int]:
        """The session's processes the launcher adopted, and what runs under
        them (zombies left out): its children but the CLI and those it had
        before the CLI started."""
        if not self.on:
            return []
        kids = children() if kids is None else kids
        mine = [p for p in kids.get(os.getpid(), ()) if p != cli_pid and _identity(p) not in self._before]
        return [p for p in under(mine, kids) if running(p)]

    def reap(self, cli_pid: int) -> None:
        """Collect the adopted orphans that exited (a subreaper's zombies are
        its own to collect); never the CLI, nor a child this process had
        before (``subprocess`` waits for those)."""
        if not self.on:
            return
        for pid in children().get(os.getpid(), ()):
            if pid != cli_pid and _identity(pid) not in self._before:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except OSError:
                    pass  # reaped meanwhile

    def end(self) -> None:
        """Give the role back (a process that ran the launcher goes on as it was)."""
        if not self.on:
            return
        self.on = False
        if self._was:
            return
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_SET_SUBREAPER, 0, 0, 0, 0)
        except (OSError, AttributeError):
            pass


__all__ = ["Adoption", "children", "running", "stat_fields", "tree", "under"]
