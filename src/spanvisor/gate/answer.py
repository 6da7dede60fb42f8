"""The gate's one answer to its CLI, written once whatever happens after.

An allow is the CLI's allow JSON and exit status 0; a deny (a policy's, a
person's, nobody deciding in time) is the CLI's deny JSON and exit status
0, as each CLI documents it, or its adapter's deny status (Factory Droid's
2, with the reason on stderr: another hook's allow wins over its JSON, not
over that). Every failure is a block: the deny JSON, the
reason on stderr and exit status 2 (each CLI reads 2 as "block, show
stderr to the model"; any other status lets Claude Code and Gemini CLI run
the call), or for Cline, which runs a call on any non-zero status, its
stopping answer and 0 (:func:`spanvisor.gate.contracts.block_status`). An
answer that cannot be written is a block too.

The first answer stands, from any thread (the launcher's backstop may
answer while its worker still runs), and ``release`` is called with it at
once: the deciding child tells its waiting parent to exit (so the CLI goes
on) before anything optional runs, the launcher sends its reply.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from spanvisor.gate import contracts as gc


class Answer:
    """What the hook says; the first answer stands."""

    def __init__(
        self,
        cli: gc.Cli | None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        release: Callable[[int], None] | None = None,
    ) -> None:
        self.cli = cli
        self.event: str | None = None
        self.code: int | None = None
        # The process's own streams, unless the answer goes elsewhere (the
        # launcher answers a hook over its socket).
        self.stdout = stdout
        self.stderr = stderr
        self.release = release
        # Where what follows a released answer runs (the audit note's
        # delivery): here, or the launcher's workers, so that a kept-alive
        # connection's next call never waits for it.
        self.later: Callable[[Callable[[], object]], object] | None = None
        # A last look before an allow (the session's task cancelled): the
        # reason to deny instead, else None. What it denied stays in vetoed.
        self.veto: Callable[[], str | None] | None = None
        self.vetoed: str | None = None
        self._lock = threading.Lock()

    @property
    def given(self) -> bool:
        """Whether the answer is out (nothing after it may change it)."""
        return self.code is not None

    def allow(self, reason: str) -> int:
        if self.veto is not None and self.code is None:
            try:
                why = self.veto()
            except Exception:  # a look that fails vetoes nothing
                why = None
            if why:
                self.vetoed = why
                return self.deny(why)
        return self._write("allow", reason)

    def deny(self, reason: str) -> int:
        code = gc.deny_status(self.cli)
        return self._write("deny", reason, code, failed=code != gc.EXIT_ALLOW)  # a status says it on stderr too

    def block(self, reason: str) -> int:
        return self._write("deny", reason, gc.block_status(self.cli), failed=True)

    def relay(self, code: int, stdout: str, stderr: str) -> int:
        """Another gate's answer (the system gate's), written as it was given."""
        with self._lock:
            if self.code is not None:
                return self.code
            self.code = code
            try:
                out = self.stdout or sys.stdout
                out.write(stdout)
                out.flush()
                if stderr:
                    err = self.stderr or sys.stderr
                    err.write(stderr)
                    err.flush()
            except BaseException:  # an answer that cannot be written is a block
                self.code = gc.EXIT_BLOCK
        self._release()
        return self.code

    def neutral(self, doc: Mapping[str, Any]) -> int:
        """A reply that decides nothing (to a turn's or the session's end):
        ``doc`` and exit status 0, even when it cannot be written (no
        output is as neutral: a block there would keep the agent going)."""
        return self._write("allow", "", gc.EXIT_ALLOW, neutral=doc)

    def _write(
        self,
        answer: gc.Answer,
        reason: str,
        code: int = gc.EXIT_ALLOW,
        failed: bool = False,
        neutral: Mapping[str, Any] | None = None,
    ) -> int:
        with self._lock:
            if self.code is not None:
                return self.code
            self.code = self._say(answer, reason, code, failed) if neutral is None else self._say_neutral(neutral)
        self._release()
        return self.code

    def _release(self) -> None:
        """Tell the waiting parent (or the launcher's caller) the answer:
        best effort, and tried a second time when the first was cut short
        (the hook's backstop is one SIGALRM, raised in whatever runs then;
        the hook's process releases once more with the standing answer on
        its way out, :func:`spanvisor.cli.entry._decide`)."""
        if self.release is None or self.code is None:
            return
        for _ in range(2):
            try:
                self.release(self.code)
                return
            except BaseException:
                continue

    def _say_neutral(self, doc: Mapping[str, Any]) -> int:
        try:
            out = self.stdout or sys.stdout
            out.write(json.dumps(doc) + "\n")
            out.flush()
        except BaseException:
            pass
        return gc.EXIT_ALLOW

    def _say(self, answer: gc.Answer, reason: str, code: int, failed: bool) -> int:
        self.code = code
        try:
            if self.cli is not None:
                event = self.event or gc.default_event(self.cli)
                out = self.stdout or sys.stdout
                out.write(json.dumps(gc.reply(self.cli, event, answer, reason)) + "\n")
                out.flush()
        except BaseException:  # an answer that cannot be written is a block
            # (exit status 2 for every CLI: for Cline, whose block must be an
            # answer on stdout, the hook's wrapper script answers for it)
            self.code, failed = gc.EXIT_BLOCK, True
        if failed:
            try:
                err = self.stderr or sys.stderr
                err.write(reason + "\n")
                err.flush()
            except BaseException:
                pass
        return self.code


__all__ = ["Answer"]
