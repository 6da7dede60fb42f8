"""Signals to ``spanvisor run``: its CLI's, from just before the CLI starts.

SIGINT, SIGTERM and SIGHUP to the launcher are meant for its session: a
terminal's Ctrl-C where the launcher holds the terminal (the CLI has none),
a ``kill`` of the session. A SIGINT is the CLI's SIGINT first; once the
session's stopper exists, every signal starts the stopper's steps (SIGINT
or SIGTERM, then SIGKILL to the CLI's tree, within 2 s: :mod:`.stop`),
since some CLIs take a minute to act on a SIGINT (OpenCode, Qwen Code).

The handler is set just before the CLI starts. Between the CLI's start and
its stopper the launcher still sets up (its relay, its session: some
milliseconds, longer on a loaded machine); a signal then went to Python's
default (a SIGINT raised as KeyboardInterrupt there), and the CLI ran on
while the launcher waited for it. A signal that comes before the CLI runs
is held and passed to its group as it starts; every signal is kept, in
order (:attr:`Signals.got`), so the session starts its stopper from the
first and says which one ended the CLI.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from spanvisor.launcher import start as rs

CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Signals:
    """The launcher's handler of :data:`CAUGHT`, from its creation until
    :meth:`restore`."""

    def __init__(self) -> None:
        self.proc: Any = None  # the CLI, once it runs
        self.stopper: Any = None  # the session's Stopper, once it has one
        self.got: list[int] = []
        self.previous = {s: signal.signal(s, self._on) for s in CAUGHT}

    def _on(self, signum: int, _frame: FrameType | None) -> None:
        self.got.append(signum)
        if self.stopper is not None:
            start = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
            self.stopper.stop(f"the launcher got {signal.Signals(signum).name}", start=start)
        elif self.proc is not None:
            rs.signal_group(self.proc, signum if signum == signal.SIGINT else signal.SIGTERM)

    def started(self, proc: Any) -> None:
        """The CLI runs: what came meanwhile reaches its group now (once:
        the list is taken before the handler can pass on one of its own)."""
        held = list(self.got)
        self.proc = proc
        for signum in held:
            rs.signal_group(proc, signum if signum == signal.SIGINT else signal.SIGTERM)

    def stopping(self, stopper: Any) -> None:
        """The session's stopper: every signal from now on starts its steps,
        and so does the first that came before it."""
        self.stopper = stopper
        if self.got:
            first = self.got[0]
            start = signal.SIGINT if first == signal.SIGINT else signal.SIGTERM
            stopper.stop(f"the launcher got {signal.Signals(first).name}", start=start)

    def restore(self) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


__all__ = ["CAUGHT", "Signals"]
