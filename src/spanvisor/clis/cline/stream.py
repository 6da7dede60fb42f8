"""What Cline prints, as the launcher reports it (it exports telemetry only
to its vendor): ``--json`` lines, ``usage`` after each model call (cached
input inside its input, its cost a running total), ``content_start`` and
``content_end`` of a tool, ``error``. The model is the command's
``-m``/``--model``, else its ``providers.json`` (the provider the command
names, else the last one used)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import option
from spanvisor.clis.output import as_dict
from spanvisor.clis.stream import Report, ns_of_iso, num, read_json, tool_input


def read(report: Report, doc: dict[str, Any]) -> None:
    task = doc.get("taskId")
    if isinstance(task, str) and task:
        report.session = task
    at = ns_of_iso(doc.get("ts"))
    event = as_dict(doc.get("event"))
    kind = event.get("type") if doc.get("type") == "agent_event" else None
    if kind == "usage":
        total = event.get("totalCost")
        cost = None
        if isinstance(total, int | float) and not isinstance(total, bool):
            cost = float(total) - report.notes.get("cost_so_far", 0.0)
            report.notes["cost_so_far"] = float(total)
        # Cline counts cached input inside inputTokens (its own pricing
        # takes the fresh input as inputTokens - cacheRead - cacheWrite).
        cached, written = num(event, "cacheReadTokens"), num(event, "cacheWriteTokens")
        fresh = max(0, num(event, "inputTokens") - cached - written)
        report.call(at, fresh, cached, written, num(event, "outputTokens"), cost, None)
    elif kind == "content_start" and event.get("contentType") == "tool":
        report.notes.setdefault("tool_inputs", {})[str(event.get("toolCallId"))] = (event.get("input"), at)
    elif kind == "content_end" and event.get("contentType") == "tool":
        given, _ = report.notes.setdefault("tool_inputs", {}).pop(str(event.get("toolCallId")), (None, at))
        outputs = event.get("output")
        outputs = outputs if isinstance(outputs, list) else []
        failed = any(isinstance(o, dict) and o.get("success") is False for o in outputs) or bool(event.get("error"))
        attrs = {
            "tool_name": event.get("toolName"),
            "tool_input": _shown_input(given),
            "success": not failed,
            "error": str(event.get("error") or "a command failed") if failed else None,
            "duration_ms": event.get("durationMs"),
        }
        report.say("tool_call", attrs, at)
    elif kind == "error":
        err = as_dict(event.get("error"))
        klass = event.get("errorClass")
        said = f"API error ({klass}): " if isinstance(klass, str) and klass else "error: "
        report.say("warning", {"message": said + str(err.get("message") or "unknown")}, at)
    else:
        report.say("life", {}, at)


def model(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
    del cwd
    given = option(argv[1:], "-m", "--model")
    if given:
        return given
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    data = option(argv[1:], "--data-dir")
    folder = Path(data) if data else Path(option(argv[1:], "--config") or home / ".cline") / "data"
    doc = read_json(folder / "settings" / "providers.json")
    if not isinstance(doc, dict):
        return None
    provider = option(argv[1:], "-P", "--provider") or doc.get("lastUsedProvider")
    entry = (doc.get("providers") or {}).get(provider) if isinstance(doc.get("providers"), dict) else None
    settings = entry.get("settings") if isinstance(entry, dict) else None
    chosen = settings.get("model") if isinstance(settings, dict) else None
    return chosen if isinstance(chosen, str) and chosen else None


def _shown_input(given: Any) -> str:
    """A Cline tool's input as its step shows it: a ``run_commands`` call's
    commands one after another (Cline runs each, in order), else the input."""
    commands = as_dict(given).get("commands")
    if isinstance(commands, list) and commands and all(isinstance(c, str) for c in commands):
        return tool_input({"command": "; ".join(commands)})
    return tool_input(given)
