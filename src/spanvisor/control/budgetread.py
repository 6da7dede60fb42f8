"""A task's budget read from the control API, for agents whose pipeline is
elsewhere (``SPANVISOR_CONTROL_URL``)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from spanvisor.control.client import ENV_URL, HttpSource, token_from_env

# task id -> (monotonic expiry, the budget block): a task's budget read from
# the control API, at most once a second per task; bounded.
_BUDGETS: dict[str, tuple[float, Mapping[str, Any] | None]] = {}
BUDGET_TTL_S = 1.0


def remote_budget(task_id: str, env: Mapping[str, str] | None = None) -> Mapping[str, Any] | None:
    """The task's budget block from the control API (``SPANVISOR_CONTROL_URL``),
    for agents whose pipeline is elsewhere; None without a URL, an answer or
    a budget. Cached a second: an agent may ask before every call."""
    e = os.environ if env is None else env
    url = e.get(ENV_URL)
    if not url:
        return None
    now = time.monotonic()
    cached = _BUDGETS.get(task_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    status, doc = HttpSource(url, token_from_env(e), request_timeout_s=2.0).get_task(task_id)
    block = doc.get("budget") if status == 200 else None
    found = block if isinstance(block, Mapping) and (block.get("budget_usd") or block.get("budget_tokens")) else None
    if len(_BUDGETS) > 1_000:
        _BUDGETS.clear()
    _BUDGETS[task_id] = (now + BUDGET_TTL_S, found)
    return found


__all__ = ["BUDGET_TTL_S", "remote_budget"]
