"""How ``spanvisor run`` stops the CLI it runs: when someone cancels the
session's task (Slack's Cancel, ``spanvisor cancel``, the control API), and
when the launcher itself is told to stop.

**Following the task.** :class:`CancelWatch` long-polls the control API of
the endpoint the task reports to (``GET /v1/control/tasks/{id}?wait=``:
it answers as soon as a decision is recorded, on any replica) for the
launcher's own run of the task (its run id is derived from the task's ids,
so a task id used before never hands this session an older run's cancel).
An endpoint that is a Collector, not ``spanvisor serve``, has no control
API: ``SPANVISOR_CONTROL_URL`` names the one to follow; without one the
session cannot be cancelled from afar, said once on stderr.

**Stopping.** What a terminal's Ctrl-C does, then firmer: SIGINT to the CLI's
process group and every process under it (Gemini CLI's parent ignores
signals and waits for its worker, which a signal to the parent alone never
reaches; Copilot CLI's and Qwen Code's wrappers pass no signal on), then
SIGTERM after :data:`INT_GRACE_S`, then SIGKILL after :data:`TERM_GRACE_S`.
Measured with the pinned CLIs kept busy by a model that does not answer,
each ends on the SIGINT within a tenth of a second (Claude Code exits 0,
Codex 1, Gemini CLI's worker 0): the whole stop fits in 2 s of the
decision with room to spare.

**What detached.** The launcher adopts the session's orphans
(:class:`.run_procs.Adoption`): a process of the session that left both the
CLI's group and its tree (``setsid`` then a double fork) is re-parented to
the launcher instead of init. A stop signals those too, even once the CLI
itself has exited, and when the CLI ends, what it left running is stopped
the same way (SIGTERM, then SIGKILL): the session's processes end with the
session, so nothing it started goes on unsupervised. The launcher reaps
them as they exit (:class:`Reaper`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from spanvisor.control.client import HttpSource
from spanvisor.control.feed import TaskFeed
from spanvisor.events import Decision
from spanvisor.launcher.procs import Adoption, tree
from spanvisor.launcher.start import signal_group

INT_GRACE_S = 0.8
TERM_GRACE_S = 0.6


def signal_tree(proc: subprocess.Popen[Any], signum: int) -> None:
    """``signum`` to the CLI's process group (the launcher starts it in one
    of its own: a wrapper that passes no signal on is no shield) and to
    every process under it that left the group, as a terminal's key sends
    it to its foreground group."""
    if proc.poll() is not None:
        return
    signal_group(proc, signum, tree(proc.pid))


class Stopper:
    """Stops the CLI once, in the background: SIGINT, SIGTERM, SIGKILL; and,
    when the launcher adopts the session's orphans, what detached from it."""

    def __init__(self, proc: subprocess.Popen[Any], adoption: Adoption | None = None) -> None:
        self.proc = proc
        self.adoption = adoption if adoption is not None else Adoption()
        self.why: str | None = None  # what asked for the stop (said on the task)
        self.decision: Decision | None = None  # the cancel, when a person's
        self.last_signal: int | None = None
        self.swept = 0  # processes the CLI left running, stopped once it ended
        # Re-entrant: a signal handler on the main thread may stop while the
        # main thread itself is inside stop() (launcher/signals.py).
        self._lock = threading.RLock()

    @property
    def stopping(self) -> bool:
        return self.why is not None

    def stop(self, why: str, decision: Decision | None = None, start: int = signal.SIGINT) -> bool:
        """Begin stopping (False: already begun)."""
        with self._lock:
            if self.why is not None:
                return False
            self.why, self.decision = why, decision
        threading.Thread(target=self._run, args=(start,), name="spanvisor-run-stop", daemon=True).start()
        return True

    def _run(self, start: int) -> None:
        steps: list[tuple[int, float]] = [
            (signal.SIGINT, INT_GRACE_S),
            (signal.SIGTERM, TERM_GRACE_S),
            (signal.SIGKILL, 0),
        ]
        for signum, grace in steps[[int(s) for s, _ in steps].index(int(start)) :]:
            if not self._signal(signum, record=True):
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._left():
                time.sleep(0.02)
        # SIGKILL cannot be ignored, but a process forked meanwhile escaped it.
        for _ in range(3):
            if not self._left():
                return
            self._signal(signal.SIGKILL)
            time.sleep(0.05)

    def _signal(self, signum: int, record: bool = False) -> bool:
        """``signum`` to the CLI's tree and what detached; False: nothing is left."""
        orphans = self.adoption.orphans(self.proc.pid)
        if self.proc.poll() is not None and not orphans:
            return False
        if record:
            self.last_signal = signum
        signal_tree(self.proc, signum)
        for pid in orphans:
            try:
                os.kill(pid, signum)
            except OSError:
                pass  # gone meanwhile
        return True

    def _left(self) -> bool:
        return self.proc.poll() is None or bool(self.adoption.orphans(self.proc.pid))

    def sweep_once_ended(self, drained: threading.Event, within_s: float) -> None:
        """Once the CLI has exited, what it left holding its output open (a
        detached child keeps the pipe, so the output never ends and the
        launcher would wait for that child) is stopped after ``within_s``
        unless the output ended by then."""

        def watch() -> None:
            self.proc.wait()
            if not drained.wait(within_s):
                self.swept += self.sweep()

        threading.Thread(target=watch, name="spanvisor-run-sweep", daemon=True).start()

    def sweep(self) -> int:
        """Once the CLI has ended: what it left running (adopted orphans) is
        stopped, SIGTERM then SIGKILL; how many there were."""
        if not (left := self.adoption.orphans(self.proc.pid)):
            return 0
        for signum, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 0.0)):
            for pid in self.adoption.orphans(self.proc.pid):
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.adoption.orphans(self.proc.pid):
                time.sleep(0.02)
        return len(left)


class Reaper:
    """Collects the session's adopted orphans as they exit, every
    ``every_s`` (:meth:`.run_procs.Adoption.reap`)."""

    def __init__(self, adoption: Adoption, cli_pid: int, every_s: float = 1.0) -> None:
        self.adoption, self.cli_pid, self.every_s = adoption, cli_pid, every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spanvisor-run-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            self.adoption.reap(self.cli_pid)

    def close(self) -> None:
        self._done.set()
        self._thread.join(5.0)
        self.adoption.reap(self.cli_pid)


def who(decision: Decision) -> str:
    return decision.actor_name or decision.actor_id or "someone"


def cancelled_text(decision: Decision) -> str:
    """``Cancelled by alice: wrong branch``."""
    return f"Cancelled by {who(decision)}" + (f": {decision.comment}" if decision.comment else "")


class CancelWatch:
    """Follows one run of a task for a cancel; calls ``on_cancel`` once."""

    def __init__(
        self,
        task_id: str,
        run_id: str,
        url: str,
        token: str | None,
        on_cancel: Callable[[Decision], object],
    ) -> None:
        self.source = HttpSource(url, token, request_timeout_s=5.0)
        self.feed = TaskFeed(task_id, lambda: self.source, run_id)
        self.on_cancel = on_cancel
        self._said = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._start, name="spanvisor-run-cancel", daemon=True)

    def start(self) -> None:
        self._thread.start()  # the first read may wait on the network: never the CLI's start

    def _start(self) -> None:
        self.feed.on_cancel(self._fire)
        # Said once if the control API does not answer as one (a Collector, a
        # wrong URL): the session then runs on, uncancellable from afar.
        deadline = time.monotonic() + 30.0
        while not self._said and time.monotonic() < deadline and self.feed.cancel is None:
            if self.source.answered or self._closed.wait(1.0):
                return
        if not self.source.answered and not self._said and self.feed.cancel is None:
            self._said = True
            print(
                f"spanvisor run: no control API answers at {self.source.url} ({self.source.last_failure}); "
                "a cancel cannot stop this session (set SPANVISOR_CONTROL_URL to spanvisor serve)",
                file=sys.stderr,
                flush=True,
            )

    def _fire(self) -> None:
        d = self.feed.cancel
        if d is not None:
            self.on_cancel(d)

    def close(self) -> None:
        self._closed.set()  # the session ended: nothing left to say about its control API
        self.feed.close()
        if self._thread.is_alive():
            self._thread.join(5.0)


__all__ = [
    "INT_GRACE_S",
    "TERM_GRACE_S",
    "CancelWatch",
    "Reaper",
    "Stopper",
    "cancelled_text",
    "signal_tree",
    "tree",
    "who",
]
