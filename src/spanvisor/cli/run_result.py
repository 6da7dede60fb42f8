"""What a coding-agent CLI's machine-readable output says of how its run
ended, read by ``spanvisor run`` while the user still sees the run.

* Claude Code ``-p``: unless the user chose an ``--output-format``, the
  launcher asks for ``stream-json`` (with ``--verbose``, which it requires)
  and prints the result line's ``result`` text itself, which is what the
  default text format prints; so the user sees the usual output and the
  launcher reads ``is_error``, ``subtype`` and ``terminal_reason``. A user's
  own ``stream-json`` or ``json`` is passed through untouched and read too.
* Codex ``exec --json`` (only when the user asked for it: its default
  output is for people): each JSONL event is passed through; ``turn.failed``
  and ``error`` events give the error.
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
            kind = doc.get("type")
            if kind in ("turn.failed", "error"):
                self.failed = True
                err = doc.get("error")
                msg = err.get("message") if isinstance(err, dict) else doc.get("message")
                self.error = str(msg) if msg else str(kind)
            elif kind == "turn.completed":
                self.saw_result = True
        return text

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
