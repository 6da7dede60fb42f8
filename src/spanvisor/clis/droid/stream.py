"""What ``droid exec -o stream-json`` prints, as the launcher reports it:
``system`` (``init``: the session and its model), ``tool_call`` and
``tool_result`` (a finished tool call, matched by ``id``), ``error``, and
``completion``, whose ``usage`` is the whole run's tokens (it names no
call of its own): said as one model call at the run's end. The model is the
command's ``-m``; a custom model (``custom:<name>-<n>``) is the ``model`` of
the ``n``-th of the user's ``customModels`` (``~/.factory/settings.json``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spanvisor.clis.output import as_dict
from spanvisor.clis.stream import Report, flag, ns_of_ms, num, read_json, tool_input

MAX_CALLS = 256


def read(report: Report, doc: dict[str, Any]) -> None:
    sid = doc.get("session_id")
    if isinstance(sid, str) and sid:
        report.session = sid
    at = ns_of_ms(doc.get("timestamp"))
    kind = doc.get("type")
    calls: dict[str, Any] = report.notes.setdefault("calls", {})
    if kind == "tool_call":
        report.tool_ran(at)
        if isinstance(doc.get("id"), str) and len(calls) < MAX_CALLS:
            calls[doc["id"]] = (doc.get("toolName"), doc.get("parameters"), doc.get("timestamp"))
    elif kind == "tool_result":
        key = doc.get("id")
        name, params, started = (
            calls.pop(key, (doc.get("toolId"), None, None)) if isinstance(key, str) else (doc.get("toolId"), None, None)
        )
        ended = doc.get("timestamp")
        ms = ended - started if isinstance(started, int) and isinstance(ended, int) and ended >= started else None
        failed = doc.get("isError") is True
        value = doc.get("value")
        said = as_dict(doc.get("error")).get("message")  # a failed tool's (its value is then unset)
        attrs = {
            "tool_name": name,
            "tool_input": tool_input(params),
            "success": not failed,
            "error": (said if isinstance(said, str) else value if isinstance(value, str) else None) if failed else None,
            "duration_ms": ms,
        }
        report.say("tool_call", attrs, at)
    elif kind == "completion":
        usage = as_dict(doc.get("usage"))
        fresh, cached = num(usage, "input_tokens"), num(usage, "cache_read_input_tokens")
        written, output = num(usage, "cache_creation_input_tokens"), num(usage, "output_tokens")
        report.call(at, fresh, cached, written, output, None, doc.get("durationMs"))
    elif kind == "error" and doc.get("source") == "agent_loop":
        said = doc.get("message")
        report.say("warning", {"message": f"API error: {said if isinstance(said, str) else 'unknown'}"}, at)
    else:
        report.say("life", {}, at)


def model_of(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    given = flag(argv[1:], "-m", "--model")
    if not given or not given.startswith("custom:"):
        return given or None
    index = given.rsplit("-", 1)[-1]
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    doc = read_json(home / ".factory" / "settings.json")
    models = doc.get("customModels") if isinstance(doc, dict) else None
    if not index.isdigit() or not isinstance(models, list) or int(index) >= len(models):
        return given
    model = models[int(index)].get("model") if isinstance(models[int(index)], dict) else None
    return model if isinstance(model, str) and model else given
