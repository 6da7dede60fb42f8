"""What ``droid exec -o stream-json`` prints, as the launcher reports it:
``system`` (``init``: the session and its model), ``tool_call`` and
``tool_result`` (a finished tool call, matched by ``id``), ``error``, and
``completion``, whose ``usage`` is the whole run's tokens (it names no
call of its own): said as one model call at the run's end; for a resumed
session (``-s``) the session's running total, so nothing is counted. The model is the
command's ``-m``; a custom model (``custom:<name>-<n>``, or an ``id`` of
its own) is the ``model`` of that entry of the user's ``customModels``
(``~/.factory/settings.json``), numbered as Droid does it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spanvisor.clis.adapter import option
from spanvisor.clis.output import as_dict
from spanvisor.clis.stream import Report, ns_of_ms, num, read_json, tool_input

MAX_CALLS = 256
# The apiKey values Droid reads as "not set" (its custom model is then left out).
# Its options that resume a session (--fork starts a new one, counted afresh).
RESUME = ("-s", "--session-id")
PLACEHOLDER_KEYS = ("YOUR_OPENAI_API_KEY", "YOUR_API_KEY")


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
        if option(report.argv[1:], *RESUME, joined=True):
            # A resumed session's usage is its running total, earlier runs'
            # included: this run's own tokens are not known, so none are counted.
            total = f"{num(usage, 'input_tokens')} input and {num(usage, 'output_tokens')} output tokens"
            said = f"Factory Droid reports a resumed session's running total ({total}): this run's are not counted"
            report.say("warning", {"message": said}, at)
            return
        fresh, cached = num(usage, "input_tokens"), num(usage, "cache_read_input_tokens")
        written, output = num(usage, "cache_creation_input_tokens"), num(usage, "output_tokens")
        model = report.notes.get("model")
        report.call(at, fresh, cached, written, output, None, doc.get("durationMs"), model)
    elif kind == "system" and doc.get("subtype") == "init" and isinstance(doc.get("model"), str) and doc["model"]:
        report.notes["model"] = resolved(doc["model"], os.environ)  # the session's, -m or not
        report.say("life", {}, at)
    elif kind == "error" and doc.get("source") == "agent_loop":
        said = doc.get("message")
        report.say("warning", {"message": f"API error: {said if isinstance(said, str) else 'unknown'}"}, at)
    else:
        report.say("life", {}, at)


def model_of(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    given = option(argv[1:], "-m", "--model", joined=True)
    return resolved(given, env) if given else None


def resolved(given: str, env: Mapping[str, str]) -> str:
    """The model a model id of Droid's names (a custom one's own model)."""
    if not given.startswith("custom:"):
        return given
    home = Path(env.get("FACTORY_HOME_OVERRIDE") or env.get("HOME") or os.path.expanduser("~"))
    customs = custom_models(read_json(home / ".factory" / "settings.json"))
    by_model = given[len("custom:") :]
    for pick in (lambda c: c[0] == given, lambda c: c[1] == by_model):  # its id, else the model it names
        for found in filter(pick, customs):
            return found[1]
    return given


def custom_models(doc: Any) -> list[tuple[str, str]]:
    """(id, model) of each of a settings document's ``customModels`` as
    Droid numbers them (read from its 0.225.2 binary): entries without a
    string ``model`` and ``provider``, without a ``baseUrl`` or ``bedrock``,
    or with a placeholder ``apiKey`` are left out first; an entry's ``id``
    is its own ``id``, else ``custom:<display name, spaces as ->-<n>`` with
    ``n`` counting the entries of that display name (its ``model`` when it
    has none)."""
    listed = doc.get("customModels") if isinstance(doc, dict) else None
    seen: dict[str, int] = {}
    out: list[tuple[str, str]] = []
    for m in listed if isinstance(listed, list) else []:
        if not isinstance(m, dict) or not isinstance(m.get("model"), str) or not isinstance(m.get("provider"), str):
            continue
        if not isinstance(m.get("baseUrl"), str) and not isinstance(m.get("bedrock"), dict):
            continue
        if m.get("apiKey") in PLACEHOLDER_KEYS:
            continue
        shown = m["displayName"] if isinstance(m.get("displayName"), str) else m["model"]
        name = "-".join(shown.split())
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append((m["id"] if isinstance(m.get("id"), str) else f"custom:{name}-{n}", m["model"]))
    return out
