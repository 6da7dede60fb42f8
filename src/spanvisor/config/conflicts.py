"""Settings that are each valid but do not work together.

A stall threshold no longer than the heartbeat interval makes a task that
only sends heartbeats (a long step, a task waiting on a person) flap between
stalled and active every interval; a lost threshold no longer than the stall
threshold says a quiet task stalled and lost in the same check (the stall is
always said first: tracking/stalls.py), so no task is ever shown stalled
while it can still come back. Each is one line
naming both settings and what to set; ``spanvisor check`` prints them, and
every pipeline (``serve``, the demo, an agent's processor) logs them once
at its start and runs on: the values stay as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _s(seconds: float) -> str:
    return f"{seconds:g}s"


def conflicts(config: Any) -> list[str]:
    """One line per pair of settings that do not work together."""
    out: list[str] = []
    heartbeat = float(config.get("heartbeat_s") or 0)
    stall = float(config.get("stall_after_s") or 0)
    lost = float(config.get("lost_after_s") or 0)
    stalls: dict[str, float] = {"SPANVISOR_STALL_AFTER": stall}
    by_agent = config.get("stall_after_by_agent")
    if isinstance(by_agent, Mapping):
        stalls.update({f"SPANVISOR_STALL_AFTER_BY_AGENT ({agent})": float(v) for agent, v in by_agent.items()})
    for name, value in stalls.items():
        if heartbeat > 0 and 0 < value <= heartbeat:
            out.append(
                f"{name} = {_s(value)} is not longer than SPANVISOR_HEARTBEAT = {_s(heartbeat)}: a task that only "
                f"sends heartbeats (a long step, a wait for a person) would flap between stalled and active; "
                f"set it to at least {_s(2 * heartbeat)}"
            )
    if stall > 0 and 0 < lost <= stall:
        out.append(
            f"SPANVISOR_LOST_AFTER = {_s(lost)} is not longer than SPANVISOR_STALL_AFTER = {_s(stall)}: a quiet "
            "task would be said stalled and lost in the same check, never shown stalled while it can still "
            "come back; make it longer"
        )
    return out


__all__ = ["conflicts"]
