"""What a CLI of OpenCode's shape prints, as the launcher reports it
(OpenCode's OpenTelemetry is experimental, sends hundreds of spans of its
own internals a run and loses its last batch at exit): ``run --format
json`` lines, ``step_finish`` a model call's tokens and cost, ``tool_use``
a finished tool call, ``error``. The model is the command's
``-m``/``--model``, else the project's or the user's config file
(``provider/model``, without the provider)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanvisor.clis.adapter import option
from spanvisor.clis.output import as_dict
from spanvisor.clis.stream import Report, ns_of_ms, num, read_json, tool_input

if TYPE_CHECKING:
    from spanvisor.clis.opencode_shape import OpenCodeShape


def read(report: Report, doc: dict[str, Any]) -> None:
    sid = doc.get("sessionID")
    if isinstance(sid, str) and sid:
        report.session = sid
    at = ns_of_ms(doc.get("timestamp"))
    part = as_dict(doc.get("part"))
    kind = doc.get("type")
    if kind == "step_finish":
        tokens = as_dict(part.get("tokens"))
        cache = as_dict(tokens.get("cache"))
        cost = part.get("cost")
        out = num(tokens, "output") + num(tokens, "reasoning")
        usd = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
        report.call(at, num(tokens, "input"), num(cache, "read"), num(cache, "write"), out, usd, None)
    elif kind == "tool_use":
        report.tool_ran(at)
        state = as_dict(part.get("state"))
        times = as_dict(state.get("time"))
        start, end = times.get("start"), times.get("end")
        ms = end - start if isinstance(start, int) and isinstance(end, int) and end >= start else None
        failed = state.get("status") == "error"
        attrs = {
            "tool_name": part.get("tool"),
            "tool_input": tool_input(state.get("input")),
            "success": not failed,
            "error": state.get("error") if failed else None,
            "duration_ms": ms,
        }
        report.say("tool_call", attrs, ns_of_ms(end) if isinstance(end, int) else at)
    elif kind == "error":
        err = as_dict(doc.get("error"))
        data = as_dict(err.get("data"))
        status = data.get("statusCode")
        msg = data.get("message") or err.get("name") or "error"
        report.say("warning", {"message": "API error" + (f" (HTTP {status})" if status else "") + f": {msg}"}, at)
    else:
        report.say("life", {}, at)


def model_of(cli: OpenCodeShape, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
    given = option(argv[1:], "-m", "--model")
    if not given:
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        user = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / cli.config_folder
        names = [n for n in cli.config_files if n.endswith(".json")]  # JSON with comments: not read here
        for path in [Path(cwd) / n for n in names] + [user / n for n in names]:
            doc = read_json(path)
            if isinstance(doc, dict) and isinstance(doc.get("model"), str):
                given = doc["model"]
                break
    return given.split("/", 1)[1] if given and "/" in given else given or None
