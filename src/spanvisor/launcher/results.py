"""What a coding-agent CLI's machine-readable output says of how its run
ended, read by ``spanvisor run`` while the user still sees the run.

* Claude Code ``-p``: unless the user chose an ``--output-format``, the
  launcher asks for ``stream-json`` (with ``--verbose``, which it requires)
  and prints the result line's ``result`` text itself, which is what the
  default text format prints; so the user sees the usual output and the
  launcher reads ``is_error``, ``subtype`` and ``terminal_reason``. A user's
  own ``stream-json`` or ``json`` is passed through untouched and read too.
* Codex ``exec --json`` (only when the user asked for it: its default
  output is for people): each JSONL event is passed through. The last
  ``turn.failed`` or ``turn.completed`` says how the run ended; an
  ``error`` event alone does not (Codex also sends one for a stream it
  reconnects, "Reconnecting... 1/5", and then completes), but its message
  is the error when no ``turn.failed`` says one or the exit code is not 0.
  An API's error body (OpenAI's ``{"error": {"message", "type"}}``, which
  Codex passes on as it came) reads as ``type: message``.
* Gemini CLI ``-p``: unless the user chose an ``--output-format``, the
  launcher asks for ``stream-json`` and prints the assistant's text as it
  streams (what the default text format prints), then reads the ``result``
  event (``status`` success or error, the error's message). A user's own
  ``json`` (one document: ``response``, or ``error``) or ``stream-json`` is
  passed through untouched and read too.
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
* Anything else: passed through as is; the exit code alone tells the end.

How a run ended (:func:`end_of`) is then read per CLI, never an exit
without a result as success: a signal (one the launcher forwarded or sent
for a cancel, a CLI killed by one, an exit code of 128 + a stopping
signal) is ``cancelled`` for every CLI; Claude Code interrupted by SIGINT
exits 0 with no result (its stream says "[Request interrupted by user]")
or with a result whose ``terminal_reason`` is ``aborted_streaming`` (or
``aborted_tools``): cancelled; Gemini CLI's worker exits 0 with no result when signalled:
cancelled; Codex's ``exec --json`` with no turn result is an error, but
for an exit code of 1 with no error said, which is how an interrupted
Codex may end: cancelled.

Every line a stream-reading mode parses is also handed to the reader's
``tap`` (the launcher's :mod:`.stream`, which reports
OpenCode's and Cline's calls and steps).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spanvisor.clis import registry
from spanvisor.launcher.start import Mode, plan

# What a CLI reads as its user stopping it: exit codes 128 + SIGHUP, SIGINT,
# SIGKILL, SIGTERM (a shell's way of saying "killed by").
_STOP_CODES = {129: "SIGHUP", 130: "SIGINT", 137: "SIGKILL", 143: "SIGTERM"}


@dataclass
class ResultReader:
    """What the output said so far."""

    mode: Mode
    failed: bool = False
    error: str | None = None
    saw_result: bool = False
    # Claude Code's stream said the user interrupted it (SIGINT).
    interrupted: bool = False
    _json_buffer: list[str] = field(default_factory=list)
    # Gemini CLI's text as printed so far (does it end with a newline).
    _said_newline: bool = True
    # Each line's JSON, handed on as it is read (run_stream.py).
    tap: Callable[[dict[str, Any]], object] | None = None

    def line(self, text: str) -> str | None:
        """Read one line of the CLI's stdout; what to show the user (None: nothing)."""
        if self.mode in MODES:
            return line(self, text)
        if self.mode in ("claude-json", "gemini-json"):
            self._json_buffer.append(text)
            return text
        doc = _object(text)
        if self.mode in ("gemini-text", "gemini-stream"):
            return self._gemini(doc, text)
        if self.mode in ("claude-text", "claude-stream"):
            shown: str | None = text if self.mode == "claude-stream" else None
            if doc is None:
                return text  # not ours to hide
            if doc.get("type") == "user" and _interrupted(doc):
                self.interrupted = True
            if doc.get("type") == "result":
                self._claude_result(doc)
                if self.mode == "claude-text":
                    result = doc.get("result")
                    shown = (result if isinstance(result, str) else "") + "\n"
            return shown
        if self.mode == "codex-json" and doc is not None:
            self._codex(doc)
        return text

    def _codex(self, doc: dict[str, Any]) -> None:
        kind = doc.get("type")
        err = doc.get("error")
        msg = err.get("message") if isinstance(err, dict) else doc.get("message")
        said = _gist(msg) if isinstance(msg, str) and msg.strip() else None
        if kind == "error":
            self.error = said or self.error
        elif kind == "turn.failed":
            self.saw_result, self.failed = True, True
            self.error = said or self.error or "the turn failed"
        elif kind == "turn.completed":
            self.saw_result, self.failed = True, False

    def _gemini(self, doc: dict[str, Any] | None, text: str) -> str | None:
        """A line of Gemini CLI's stream-json: the assistant's text shown (in
        the launcher's text mode), the result read."""
        if doc is None:
            return text if self.mode == "gemini-stream" or text.strip() else None  # not ours to hide
        kind = doc.get("type")
        if kind == "result":
            self._gemini_result(doc)
        if self.mode == "gemini-stream":
            return text
        if kind == "message" and doc.get("role") == "assistant" and isinstance(doc.get("content"), str):
            said: str = doc["content"]
            if said:
                self._said_newline = said.endswith("\n")
            return said or None
        if kind == "result":
            if self.failed and self.error:
                print(f"Error: {self.error}", file=sys.stderr, flush=True)
            return None if self._said_newline else "\n"
        return None

    def _gemini_result(self, doc: dict[str, Any]) -> None:
        self.saw_result = True
        err = doc.get("error")
        if doc.get("status") not in (None, "success") or err:
            self.failed = True
            msg = err.get("message") if isinstance(err, dict) else err
            self.error = _gist(msg) if isinstance(msg, str) and msg.strip() else "the result says error"

    def finish(self) -> None:
        if self.mode in ("claude-json", "gemini-json"):
            doc = _leading_object("".join(self._json_buffer))
            if doc is not None and self.mode == "claude-json":
                self._claude_result(doc)
            elif doc is not None and ("response" in doc or "error" in doc):
                self._gemini_result({"status": "error" if doc.get("error") else "success", "error": doc.get("error")})

    def _claude_result(self, doc: dict[str, Any]) -> None:
        self.saw_result = True
        subtype = doc.get("subtype")
        reason = doc.get("terminal_reason")
        if isinstance(reason, str) and reason.startswith("aborted"):
            # error_during_execution / aborted_streaming (or _tools): stopped
            # by SIGINT while it streamed or ran a tool; not a failure.
            self.interrupted = True
        if doc.get("is_error") is True or (isinstance(subtype, str) and subtype != "success"):
            self.failed = True
            reason = doc.get("terminal_reason")
            result = doc.get("result")
            parts = [str(x) for x in (subtype if subtype != "success" else None, reason) if x]
            text = result if isinstance(result, str) and result else None
            self.error = ": ".join([*parts, text] if text else parts) or "the result says is_error"


def _gist(message: str) -> str:
    """An error message, with an API error body in it (after any prefix)
    read as ``type: message``; any other text as it is."""
    start = message.find("{")
    if start >= 0:
        try:
            doc, _ = json.JSONDecoder().raw_decode(message[start:])
        except ValueError:
            doc = None
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
            kind = err.get("type") or err.get("code")
            said = f"{kind}: {err['message']}" if isinstance(kind, str) and kind else err["message"]
            return (message[:start].strip() + " " + said).strip()
    return message.strip()


def _interrupted(doc: dict[str, Any]) -> bool:
    """A stream-json ``user`` message Claude Code writes when SIGINT stops it."""
    msg = doc.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    parts = content if isinstance(content, list) else [content]
    return any(
        isinstance(t, str) and t.startswith("[Request interrupted by user")
        for p in parts
        for t in ((p.get("text") if isinstance(p, dict) else p),)
    )


def _object(text: str) -> dict[str, Any] | None:
    s = text.strip()
    if not s.startswith("{"):
        return None
    try:
        doc = json.loads(s)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _leading_object(text: str) -> dict[str, Any] | None:
    """The one JSON document a ``json`` output holds, from its first ``{``,
    whatever follows it: a CLI's exporter may print after its result (Gemini
    CLI's "Export failed … Not Found" when its metrics have nowhere to go),
    and that must not make a finished run read as one without a result."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


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
    if (unsaid := without_result(reading.mode, program, code)) is not None:
        return unsaid
    if code == 0 and reading.mode.startswith("claude-"):
        return "error", f"{program} exited without a result", "Failed"
    if code == 0 and reading.mode.startswith("gemini-"):
        # Its worker exits 0, result unsaid, when a signal stops it (measured).
        return "cancelled", None, f"{name} ended without a result (its worker exits 0 when it is signalled)"
    if code == 1 and reading.mode == "codex-json" and not reading.error:
        # Measured: interrupted mid-turn, Codex exits 130 or 1 (by timing),
        # saying nothing; a failure of its own says an error or a failed turn.
        return "cancelled", None, f"{name} ended mid-turn with exit code 1 and no error (as it does when interrupted)"
    if code == 0 and reading.mode == "codex-json":
        return "error", f"{program} exited before its turn ended", "Failed"
    if code == 0:
        return "complete", None, "Finished"
    said = f"{reading.error} (exit code {code})" if reading.error else f"{program} exited with code {code}"
    return "error", said, "Failed"


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


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def line(r: ResultReader, text: str) -> str | None:
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


def _qwen(r: ResultReader, doc: dict[str, Any]) -> str | None:
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


def _copilot(r: ResultReader, doc: dict[str, Any]) -> str | None:
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


def _opencode(r: ResultReader, doc: dict[str, Any]) -> str | None:
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


def _cline(r: ResultReader, doc: dict[str, Any]) -> str | None:
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
    return status, None, f"{registry.need(cli).title} {said}"


__all__ = ["Mode", "ResultReader", "end_of", "plan", "signal_name"]
