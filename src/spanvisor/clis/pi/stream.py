"""What pi prints, as the launcher reports it (it sends no telemetry):
``--mode json`` lines. Its first line names the session
(``{"type": "session", "id"}``); each assistant ``message_end`` is a
model call (``usage``: ``input`` fresh, ``cacheRead``, ``cacheWrite``,
``output``, ``cost.total`` in dollars; ``model`` and ``provider`` named
on the message); ``tool_execution_start`` and ``tool_execution_end``
(``isError``) a tool call; an assistant message that stopped on an
``error`` a warning; each turn's start a sign of life (not each line: it
prints every token it streams). The model is named per call; the command's
``--model provider/id`` names it before."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from spanvisor.clis.adapter import option
from spanvisor.clis.output import as_dict
from spanvisor.clis.stream import Report, ns_of_ms, num, tool_input


def read(report: Report, doc: dict[str, Any]) -> None:
    kind = doc.get("type")
    if kind == "session":
        sid = doc.get("id")
        if isinstance(sid, str) and sid:
            report.session = sid
        return
    now = time.time_ns()
    if kind == "message_end":
        message = as_dict(doc.get("message"))
        if message.get("role") != "assistant":
            return
        at = ns_of_ms(message.get("timestamp"))
        usage = as_dict(message.get("usage"))
        total = as_dict(usage.get("cost")).get("total")
        cost = float(total) if isinstance(total, int | float) and not isinstance(total, bool) else None
        model = message.get("model")
        report.call(
            at,
            num(usage, "input"),
            num(usage, "cacheRead"),
            num(usage, "cacheWrite"),
            num(usage, "output"),
            cost,
            None,
            model if isinstance(model, str) and model else None,
        )
        if message.get("stopReason") == "error":
            said = message.get("errorMessage")
            report.say("warning", {"message": "API error: " + (said if isinstance(said, str) else "unknown")}, at)
    elif kind == "tool_execution_start":
        report.tool_ran(now)
        report.notes.setdefault("tools", {})[str(doc.get("toolCallId"))] = (doc.get("args"), now)
    elif kind == "tool_execution_end":
        given, started = report.notes.setdefault("tools", {}).pop(str(doc.get("toolCallId")), (None, now))
        failed = doc.get("isError") is True
        result = as_dict(doc.get("result"))
        texts = [p.get("text") for p in result.get("content") or [] if isinstance(p, dict)]
        error = " ".join(t for t in texts if isinstance(t, str)).strip()[:300] if failed else None
        attrs = {
            "tool_name": doc.get("toolName"),
            "tool_input": tool_input(given),
            "success": not failed,
            "error": (error or "the tool failed") if failed else None,
            "duration_ms": (now - started) / 1e6,
        }
        report.say("tool_call", attrs, now)
    elif kind in ("agent_start", "turn_start"):
        # A sign of life per turn, not per line: it prints each streamed token.
        report.say("life", {}, now)


def model(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
    del env, cwd
    given = option(argv[1:], "--model")
    return given.split("/", 1)[1] if given and "/" in given else given or None
