"""How Qwen Code, GitHub Copilot CLI, OpenCode and Cline say how their run
ended, read by ``spanvisor run`` (:mod:`spanvisor.cli.run_result` reads the
first three CLIs' and calls in here).

* Qwen Code ``-p``: Claude Code's ``stream-json`` (``result`` with
  ``is_error``, ``subtype``; an error's message in ``error.message``), its
  ``json`` one array of those lines. Unless the user chose an
  ``--output-format``, the launcher asks for ``stream-json`` and prints the
  result's text, as Qwen Code's text output does.
* Copilot CLI ``-p``: ``--output-format json`` lines; ``result`` (its
  ``exitCode``) ends a run, ``session.error`` says why one failed; a signal
  leaves no ``result`` and exit status 0. Unless the user chose a format,
  the launcher asks for ``json`` and prints the assistant's messages.
* OpenCode ``run``: ``--format json`` lines; an ``error`` line (its
  ``data.message``) fails a run; a ``step_finish`` whose reason is not
  ``tool-calls`` ends one. Unless the user chose a format, the launcher
  asks for ``json`` and prints the text parts, as its text output does.
* Cline: ``--json`` lines; ``run_result`` (``finishReason`` completed,
  error, aborted) ends a run; ``run_aborted`` says who stopped it: a signal
  (``local_abort``) or a hook's cancel (``external_abort``). Unless
  the user chose ``--json``, the launcher asks for it and prints the
  agent's text and the run's error.

Every line a stream-reading mode parses is also handed to the reader's
``tap`` (the launcher's :mod:`spanvisor.cli.run_stream`, which reports
OpenCode's and Cline's calls and steps).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class LineReader(Protocol):
    """What this module reads and sets of :class:`spanvisor.cli.run_result.ResultReader`
    (a protocol: that module imports this one)."""

    @property
    def mode(self) -> str: ...

    failed: bool
    error: str | None
    saw_result: bool
    interrupted: bool
    tap: Callable[[dict[str, Any]], object] | None


MODES = frozenset(
    {
        "qwen-text",
        "qwen-stream",
        "copilot-text",
        "copilot-json",
        "opencode-text",
        "opencode-json",
        "cline-text",
        "cline-json",
    }
)
# What each CLI's exit 0 without a word of how it ended means (measured:
# each exits 0 when a signal stops it, none when it finishes).
NO_RESULT = {
    "qwen": ("error", "exited without a result"),
    "copilot": ("cancelled", "ended without a result (it exits 0 when it is signalled)"),
    "opencode": ("cancelled", "ended without finishing its last step"),
    "cline": ("cancelled", "ended without a run result (it exits 0 when it is signalled)"),
}
NAMES = {"qwen": "Qwen Code", "copilot": "Copilot CLI", "opencode": "OpenCode", "cline": "Cline"}


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _object(text: str) -> dict[str, Any] | None:
    s = text.strip()
    if not s.startswith("{"):
        return None
    try:
        doc = json.loads(s)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _option(args: Sequence[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def plan(cli: str, argv: list[str]) -> tuple[list[str], str] | None:
    """``argv`` with what the launcher adds, and its mode; None: not one of these CLIs' runs."""
    if cli == "qwen" and ("-p" in argv or "--prompt" in argv):
        fmt = _option(argv, "--output-format", "-o")
        if fmt is None:
            return [argv[0], "--output-format", "stream-json", *argv[1:]], "qwen-text"
        return (argv, "qwen-stream") if fmt == "stream-json" else (argv, "passthrough")
    if cli == "copilot" and ("-p" in argv or "--prompt" in argv):
        fmt = _option(argv, "--output-format")
        if fmt is None:
            return [argv[0], "--output-format", "json", *argv[1:]], "copilot-text"
        return (argv, "copilot-json") if fmt == "json" else (argv, "passthrough")
    if cli == "opencode" and "run" in argv[1:2]:
        fmt = _option(argv, "--format")
        if fmt is None:
            return [argv[0], "run", "--format", "json", *argv[2:]], "opencode-text"
        return (argv, "opencode-json") if fmt == "json" else (argv, "passthrough")
    if cli == "cline" and not _interactive_cline(argv):
        if "--json" in argv:
            return argv, "cline-json"
        return [argv[0], "--json", *argv[1:]], "cline-text"
    return None


_CLINE_COMMANDS = {"auth", "config", "plugin", "skill", "connect", "mcp", "doctor", "history", "h", "hook", "schedule"}


def _interactive_cline(argv: list[str]) -> bool:
    rest = argv[1:]
    return "-i" in rest or "--tui" in rest or "--acp" in rest or bool(rest and rest[0] in _CLINE_COMMANDS)


def line(r: LineReader, text: str) -> str | None:
    """One stdout line of these CLIs' modes; what to show the user."""
    doc = _object(text)
    if doc is None:
        return text if not r.mode.endswith("-text") or text.strip() else None
    if r.tap is not None:
        try:
            r.tap(doc)
        except Exception:  # what the launcher reports never stops it reading the end
            pass
    cli = r.mode.split("-", 1)[0]
    shown = _READ[cli](r, doc)
    return text if not r.mode.endswith("-text") else shown


def _qwen(r: LineReader, doc: dict[str, Any]) -> str | None:
    if doc.get("type") != "result":
        return None
    r.saw_result = True
    err = doc.get("error")
    msg = err.get("message") if isinstance(err, dict) else None
    if doc.get("is_error") is True or doc.get("subtype") not in (None, "success"):
        r.failed = True
        parts = [str(x) for x in (doc.get("subtype"), msg or doc.get("result")) if isinstance(x, str) and x]
        r.error = ": ".join(parts) or "the result says is_error"
        return None
    said = doc.get("result")
    return (said if isinstance(said, str) else "") + "\n"


def _copilot(r: LineReader, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    data = _dict(doc.get("data"))
    if kind == "session.error":
        r.failed = True
        msg = data.get("message")
        r.error = " ".join(msg.split()) if isinstance(msg, str) and msg.strip() else "the session failed"
    elif kind == "abort":
        r.interrupted = True
    elif kind == "result":
        r.saw_result = True
        code = doc.get("exitCode")
        if isinstance(code, int) and code != 0:
            r.failed = True
            r.error = r.error or f"its result says exit code {code}"
    elif kind == "assistant.message" and isinstance(data.get("content"), str) and data["content"].strip():
        return str(data["content"]).rstrip("\n") + "\n"
    return None


def _opencode(r: LineReader, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    part = _dict(doc.get("part"))
    if kind == "error":
        r.saw_result, r.failed = True, True
        err = _dict(doc.get("error"))
        data = _dict(err.get("data"))
        msg = data.get("message") or err.get("message") or err.get("name")
        status = data.get("statusCode")
        said = msg if isinstance(msg, str) and msg.strip() else "the run failed"
        name = err.get("name")
        r.error = (f"{name}: {said}" if isinstance(name, str) and name else said) + (
            f" (HTTP {status})" if status else ""
        )
        return None
    if kind == "step_finish" and part.get("reason") not in ("tool-calls", None):
        r.saw_result = True
    if kind == "text" and isinstance(part.get("text"), str) and part["text"].strip():
        return str(part["text"]).strip() + "\n"
    return None


def _cline(r: LineReader, doc: dict[str, Any]) -> str | None:
    kind = doc.get("type")
    if kind == "run_aborted":
        if doc.get("reason") == "local_abort":
            r.interrupted = True  # a signal (SIGTERM: it finished the command it ran first)
        else:
            # A hook's cancel (the gate's answer to a denied call that is not
            # a shell command, or to a failure): the run was stopped, not finished.
            r.saw_result, r.failed = True, True
            r.error = "its PreToolUse hook stopped the run (the gate denied a call, or could not answer)"
        return None
    if kind == "error" and isinstance(doc.get("message"), str):
        r.error = r.error or " ".join(doc["message"].split())
        return None
    if kind == "run_result":
        r.saw_result = True
        reason = doc.get("finishReason")
        if reason == "aborted":
            r.failed = True
            r.error = r.error or "its run was aborted"
        elif reason != "completed":
            r.failed = True
            said = doc.get("text")
            r.error = (said if isinstance(said, str) and said.strip() else None) or r.error or f"finish reason {reason}"
            if r.mode == "cline-text":
                print(f"Error: {r.error}", file=sys.stderr, flush=True)
        return None
    event = _dict(doc.get("event"))
    if kind == "agent_event" and event.get("type") == "content_end" and event.get("contentType") == "text":
        said = event.get("text")
        return str(said).rstrip("\n") + "\n" if isinstance(said, str) and said.strip() else None
    return None


_READ = {"qwen": _qwen, "copilot": _copilot, "opencode": _opencode, "cline": _cline}


def without_result(mode: str, program: str, code: int) -> tuple[str, str | None, str] | None:
    """(status, error, message) of one of these CLIs' runs that exited 0
    without a word of how it ended; None for other modes."""
    cli = mode.split("-", 1)[0]
    if mode not in MODES or code != 0:
        return None
    status, said = NO_RESULT[cli]
    if status == "error":
        return "error", f"{program} {said}", "Failed"
    return status, None, f"{NAMES[cli]} {said}"


__all__ = ["MODES", "line", "plan", "without_result"]
