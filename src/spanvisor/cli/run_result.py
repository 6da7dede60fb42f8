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
* Qwen Code, Copilot CLI, OpenCode, Cline: :mod:`.run_result_more`.
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
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spanvisor.cli import run_result_more as more
from spanvisor.cli.run_start import Mode, plan

# What a CLI reads as its user stopping it: exit codes 128 + SIGHUP, SIGINT,
# SIGKILL, SIGTERM (a shell's way of saying "killed by").
_STOP_CODES = {129: "SIGHUP", 130: "SIGINT", 137: "SIGKILL", 143: "SIGTERM"}
_CLI_NAMES = {"claude-code": "Claude Code", "codex": "Codex", "gemini": "Gemini CLI", **more.NAMES}


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
        if self.mode in more.MODES:
            return more.line(self, text)
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
            doc = _object("".join(self._json_buffer))
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
    name = _CLI_NAMES.get(cli, program)
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
    if (unsaid := more.without_result(reading.mode, program, code)) is not None:
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


__all__ = ["Mode", "ResultReader", "end_of", "plan", "signal_name"]
