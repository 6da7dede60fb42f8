"""What a person is shown of an approval request's action, in every place
that shows one (Slack, ``spanvisor approvals`` and ``approve``, the control
API, the audit).

The request keeps its action raw (canonical JSON of ``{"tool",
"arguments"}``): the digest binds it and the check where it runs compares
it. What a person sees is that action with every secret masked by
:mod:`spanvisor.redaction` (each string, and the value of every key that
names a secret), as indented JSON; a surface too small for it shows its
start and end with "… N characters …" between
(:func:`spanvisor.redaction.clip_middle`) and points at the whole.

A request's action can be up to a megabyte, and a Slack message is
rendered again at every change of its task: the redacted form of an action
is computed once per process (a small cache keyed by the raw text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from spanvisor.redaction import redact, redact_json


@dataclass(frozen=True, slots=True)
class ShownAction:
    """An action as a person is shown it: its tool, its arguments as
    indented JSON and as a JSON value, every secret masked."""

    tool: str
    arguments: str
    value: Any

    @property
    def chars(self) -> int:
        return len(self.arguments)


# Small: an action may be a megabyte, and the cache holds it and its masked form.
@lru_cache(maxsize=16)
def shown_action(action: str | None) -> ShownAction | None:
    """The redacted form of a request's raw action; None for none."""
    if not action:
        return None
    try:
        doc = json.loads(action)
    except ValueError:
        text = redact(action)
        return ShownAction("?", text, text)
    if not isinstance(doc, dict):
        text = redact(action)
        return ShownAction("?", text, text)
    args = redact_json(doc.get("arguments", {}))
    tool = redact(str(doc.get("tool")))
    return ShownAction(tool, json.dumps(args, ensure_ascii=False, sort_keys=True, indent=1), args)


def action_json(action: str | None) -> dict[str, Any] | None:
    """The action as JSON APIs give it (the control API): ``{"tool",
    "arguments"}`` with every secret masked."""
    shown = shown_action(action)
    if shown is None:
        return None
    return {"tool": shown.tool, "arguments": shown.value}


__all__ = ["ShownAction", "action_json", "shown_action"]
