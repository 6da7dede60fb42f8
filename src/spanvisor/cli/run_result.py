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
* Anything else: passed through as is; the exit code alone tells the end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["passthrough", "claude-text", "claude-stream", "claude-json", "codex-json"]


@dataclass
class ResultReader:
    """What the output said so far."""

    mode: Mode
    failed: bool = False
    error: str | None = None
    saw_result: bool = False
    _json_buffer: list[str] = field(default_factory=list)

    def line(self, text: str) -> str | None:
        """Read one line of the CLI's stdout; what to show the user (None: nothing)."""
        if self.mode == "claude-json":
            self._json_buffer.append(text)
            return text
        doc = _object(text)
        if self.mode in ("claude-text", "claude-stream"):
            shown: str | None = text if self.mode == "claude-stream" else None
            if doc is None:
                return text  # not ours to hide
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

    def finish(self) -> None:
        if self.mode == "claude-json":
            doc = _object("".join(self._json_buffer))
            if doc is not None:
                self._claude_result(doc)

    def _claude_result(self, doc: dict[str, Any]) -> None:
        self.saw_result = True
        subtype = doc.get("subtype")
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


def plan(cli: str, args: Sequence[str]) -> tuple[list[str], Mode]:
    """The CLI's arguments with what the launcher adds, and how to read its stdout."""
    argv = list(args)
    if cli == "claude-code" and ("-p" in argv or "--print" in argv):
        fmt = _option(argv, "--output-format")
        if fmt is None:
            extra = ["--output-format", "stream-json"] + ([] if "--verbose" in argv else ["--verbose"])
            return [argv[0], *extra, *argv[1:]], "claude-text"
        if fmt == "stream-json":
            return argv, "claude-stream"
        if fmt == "json":
            return argv, "claude-json"
    if cli == "codex" and "--json" in argv:
        return argv, "codex-json"
    return argv, "passthrough"


__all__ = ["Mode", "ResultReader", "plan"]
