"""Checking an approval where the action runs, and consuming it there.

An agent about to run an action asks whether the approval it read permits
exactly that action (:func:`permit`): the decision's source (this process's
pipeline, or the control API of ``spanvisor serve`` over HTTP for other
processes and languages) recomputes the action's digest against the request
as it was asked, checks it was approved, and marks the approval consumed in
the run's record, in one compare-and-set of the shared store: a second
check, from the same agent, its restarted self or another replica, is
refused. Nothing here raises: a source that cannot be reached permits
nothing.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from spanvisor.control.client import DecisionSource, HttpSource, InProcessSource, _run_on_pipeline
from spanvisor.control.runs import Permit

log = logging.getLogger("spanvisor.control")


def permit_url(base: str, task_id: str, approval_id: str) -> str:
    q = urllib.parse.quote
    return f"{base}/v1/control/tasks/{q(task_id, safe='')}/approvals/{q(approval_id, safe='')}/permit"


def permit_http(
    client: HttpSource,
    task_id: str,
    approval_id: str,
    action: Mapping[str, Any] | None,
    run_id: str | None = None,
    key: str | None = None,
) -> Permit:
    """``POST …/approvals/{approval}/permit`` with ``{"action", "run_id"?, "key"?}``."""
    body: dict[str, Any] = {"action": dict(action) if action is not None else None}
    if run_id:
        body["run_id"] = run_id
    if key:
        body["key"] = key
    status, doc = client._request("POST", permit_url(client.url, task_id, approval_id), body, client.request_timeout_s)
    reason = doc.get("reason") or doc.get("error")
    if status == 200 and isinstance(doc.get("permitted"), bool):
        code = doc.get("code")
        return Permit(doc["permitted"], str(reason or ""), code if isinstance(code, str) else None)  # type: ignore[arg-type]
    why = f"HTTP {status}: {reason}" if status else f"the control API did not answer: {reason}"
    return Permit(False, why, "denied")


def permit_in_process(
    source: InProcessSource,
    task_id: str,
    approval_id: str,
    action: Mapping[str, Any] | None,
    run_id: str | None = None,
    timeout_s: float = 30.0,
    key: str | None = None,
) -> Permit:
    control = source.control
    check = getattr(control, "permit", None)
    if control is None or check is None:
        return Permit(False, "no spanvisor pipeline that records decisions runs in this process", "denied")
    try:
        got = _run_on_pipeline(control, lambda: check(task_id, approval_id, action, run_id, key=key), timeout_s)
    except Exception as exc:
        return Permit(False, f"{type(exc).__name__}: {exc}", "denied")
    return got if isinstance(got, Permit) else Permit(False, "no answer", "denied")


def permit(
    source: DecisionSource | None,
    task_id: str,
    approval_id: str,
    action: Mapping[str, Any] | None,
    run_id: str | None = None,
    key: str | None = None,
) -> Permit:
    """Ask ``source`` (the one the decision was read from) to permit and
    consume; ``key``: the secret of a request asked with a permit key."""
    try:
        if isinstance(source, HttpSource):
            return permit_http(source, task_id, approval_id, action, run_id, key)
        if isinstance(source, InProcessSource):
            return permit_in_process(source, task_id, approval_id, action, run_id, key=key)
    except Exception as exc:  # never into the agent
        log.exception("checking approval %s of task %s failed", approval_id, task_id)
        return Permit(False, f"{type(exc).__name__}: {exc}", "denied")
    return Permit(False, "nothing can check this approval (no control API, no pipeline here)", "denied")


__all__ = ["permit", "permit_http", "permit_in_process", "permit_url"]
