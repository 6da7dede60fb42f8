"""What a coding-agent CLI's machine-readable output says of how its run
ended, read by ``spanvisor run`` while the user still sees the run.

Each CLI's adapter says which output the launcher asks for
(:meth:`~spanvisor.clis.adapter.Adapter.output_plan`: the CLI's own
machine-readable format, its text shown as its text output would show it,
or the user's own format passed through) and reads it
(:meth:`~spanvisor.clis.adapter.Adapter.read_output`, its ``output``
module); anything else is passed through as is, and the exit code alone
tells the end.

How a run ended (:func:`end_of`) is never an exit without a result read as
success: a signal (one the launcher forwarded or sent for a cancel, a CLI
killed by one, an exit code of 128 + a stopping signal) is ``cancelled``
for every CLI; a CLI that said its user interrupted it and exited 0 or 130
is ``cancelled``; an exit without a result is what the CLI's adapter says
it is (:meth:`~spanvisor.clis.adapter.Adapter.ended_unsaid`: each CLI
exits its own way when a signal stops it).

Every line that is a JSON object is also handed to the reader's ``tap``
(the launcher's :mod:`.stream`, which reports OpenCode's and Cline's calls
and steps). A pull request the output shows the session made
(:mod:`spanvisor.clis.pullrequest`) is handed to ``on_pull_request`` once
each time it changes: the launcher says it on the task as it learns it, and
its end says it again (:func:`with_results`): a task that ended takes no
later record, so what the output showed reaches the task with its end
whether or not the record got there first.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spanvisor.clis import registry
from spanvisor.clis.adapter import Adapter
from spanvisor.clis.output import PASSTHROUGH, RunOutput, json_object, split
from spanvisor.gate import otlp
from spanvisor.launcher.start import Mode, plan
from spanvisor.spans import conventions as cv

# What a CLI reads as its user stopping it: exit codes 128 + SIGHUP, SIGINT,
# SIGKILL, SIGTERM (a shell's way of saying "killed by").
_STOP_CODES = {129: "SIGHUP", 130: "SIGINT", 137: "SIGKILL", 143: "SIGTERM"}


@dataclass
class ResultReader(RunOutput):
    """What the output said so far, read through the CLI's adapter."""

    # Each line's JSON, handed on as it is read (:mod:`.stream`).
    tap: Callable[[dict[str, Any]], object] | None = None
    # The pull request the session made, each time it changes.
    on_pull_request: Callable[[str], object] | None = None
    told_pull_request: str | None = None

    def line(self, text: str) -> str | None:
        """Read one line of the CLI's stdout; what to show the user (None: nothing)."""
        adapter = _adapter(self.mode)
        if adapter is None:
            return text
        if self.tap is not None and (doc := json_object(text)) is not None:
            try:
                self.tap(doc)
            except Exception:  # what the launcher reports never stops it reading the end
                pass
        shown = adapter.read_output(self, text)
        self._tell()
        return shown

    def finish(self) -> None:
        adapter = _adapter(self.mode)
        if adapter is not None:
            adapter.output_done(self)
            self._tell()

    def _tell(self) -> None:
        made = self.pull_request
        if made is not None and made != self.told_pull_request and self.on_pull_request is not None:
            self.told_pull_request = made
            self.on_pull_request(made)


def with_results(request: dict[str, Any], reading: RunOutput) -> dict[str, Any]:
    """The task's end (the OTLP/JSON request of its ended root span,
    :meth:`spanvisor.hook.task.SessionTask.end_request`) saying, as its root's
    attributes, what the output showed the session made: its pull request.
    Said on the task as it was read, it is said again with the end: the
    record may be refused or its answer lost, and no record reaches a task
    that ended; the end carries it whether it is sent now or from the spool."""
    said = {cv.PULL_REQUEST: reading.pull_request} if reading.pull_request else {}
    if said:
        for resource in request.get("resourceSpans", ()):
            for scope in resource.get("scopeSpans", ()):
                for span in scope.get("spans", ()):
                    span.setdefault("attributes", []).extend(otlp.attributes(said))
    return request


def _adapter(mode: str) -> Adapter | None:
    cli, kind = split(mode)
    return registry.get(cli) if kind != PASSTHROUGH else None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def end_of(
    cli: str, program: str, code: int, reading: ResultReader, signalled: int | None = None
) -> tuple[str, str | None, str]:
    """(status, error, message) of a run that exited with ``code`` (negative:
    killed by that signal); ``signalled``: a signal the launcher sent it
    (forwarded, or to stop it for a cancel)."""
    adapter = registry.get(cli)
    name = adapter.title if adapter is not None else program
    if signalled is not None:
        return "cancelled", None, f"Stopped by {signal_name(signalled)}"
    if code < 0:
        return "cancelled", None, f"{name} was killed by {signal_name(-code)}"
    if reading.interrupted and code in (0, 130):
        return "cancelled", None, f"{name} was interrupted (SIGINT)"
    if reading.saw_result:
        if not reading.failed and code == 0:
            return "complete", None, "Finished"
        error = reading.error or f"{program} exited with code {code}"
        return "error", f"{error} (exit code {code})" if reading.error and code != 0 else error, "Failed"
    reads = reading.mode != "passthrough"
    if code in _STOP_CODES and (reads or code != 0):
        return "cancelled", None, f"{name} ended by {_STOP_CODES[code]} (exit code {code})"
    if adapter is not None and (unsaid := adapter.ended_unsaid(reading, program, code)) is not None:
        return unsaid
    if code == 0:
        return "complete", None, "Finished"
    said = f"{reading.error} (exit code {code})" if reading.error else f"{program} exited with code {code}"
    return "error", said, "Failed"


__all__ = ["Mode", "ResultReader", "end_of", "plan", "signal_name", "with_results"]
