"""What ``spanvisor run`` read of a CLI's own output, for the CLIs whose
telemetry cannot say it (those whose adapter reads what they print:
:mod:`spanvisor.clis.stream`, OpenCode's and Cline's). The launcher sends them as log records named ``spanvisor.run.<event>``, each
with the CLI's ``session.id``, on the task it started (its
``spanvisor.task.id`` in the resource, ``service.name`` the CLI's):
:mod:`spanvisor.launcher.stream` writes them.

Counts as the launcher writes them: input including cached input (read
and written), output including reasoning; a cost only when the CLI gave a
positive one (both print 0 for a model they have no price for: it is then
priced from the tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from spanvisor.clis import registry
from spanvisor.clis.records import LIFE, Reading, clean, command, integer, number, string, truth

CLI: Final = "the launcher"
SERVICES: Final = frozenset(s for a in registry.every() if a.stream is not None for s in a.services)
SESSION_KEYS: Final = ("session.id",)
# The launcher writes its resource itself: nothing percent-encoded to undo.
DECODES_RESOURCE: Final = True
PREFIX: Final = "spanvisor.run."


def _call(a: Mapping[str, Any]) -> Reading:
    cost = number(a, "cost_usd")
    return Reading(
        "call",
        model=string(a, "model"),
        provider=string(a, "provider"),
        input_tokens=integer(a, "input_tokens"),
        output_tokens=integer(a, "output_tokens"),
        cache_read=integer(a, "cache_read_tokens"),
        cache_write=integer(a, "cache_write_tokens"),
        cost_usd=cost if cost else None,
        duration_ms=number(a, "duration_ms"),
    )


def _tool(a: Mapping[str, Any]) -> Reading:
    ok = truth(a, "success")
    return Reading(
        "tool",
        tool=string(a, "tool_name"),
        text=command(a.get("tool_input")),
        duration_ms=number(a, "duration_ms"),
        failed=ok is False,
        error=(clean(a.get("error"), 300) or "the tool reported a failure") if ok is False else None,
    )


def _warning(a: Mapping[str, Any]) -> Reading:
    return Reading("warning", text=clean(a.get("message"), 300) or "warning")


EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any]], Reading]]] = {
    PREFIX + "model_call": _call,
    PREFIX + "tool_call": _tool,
    PREFIX + "warning": _warning,
    PREFIX + "life": lambda a: LIFE,
}
