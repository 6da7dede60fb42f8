# mypy: disable-error-code="no-untyped-call"
"""The parent's steps as Slack's native ``plan`` block, and the way back to text.

A ``plan`` holds one ``task_card`` per step: steps before the current one
are ``complete``, the current one ``in_progress`` (``error`` when the task
failed there), the rest ``pending``; a task that completed shows every step
``complete``. Slack documents no limit on a plan's cards, so at most
:data:`MAX_CARDS` are shown, a window around the current step, and the
plan's title says where it is (``Steps (12/40)``).

``SPANVISOR_SLACK_PLAN`` decides (:class:`PlanSwitch`): ``on`` always sends
the plan, ``off`` never (the steps stay a line of text), ``auto`` (the
default) sends it until Slack answers ``invalid_blocks`` to a post or an
edit of a message; then :class:`PlanFallback` turns plans off for the sink,
i.e. the workspace its token belongs to, once and for the life of the
process, and the same call is retried at once, rebuilt as text. Slack's
answer does not say which block it rejected, and the strategy sees the
error, not the payload: an ``invalid_blocks`` counts once a plan has been
built, so a workspace whose tasks have no steps never falls back (a
rejected reply after that is retried once more in vain, then dropped as
before).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

from slack_sdk.models.blocks import PlanBlock, TaskCardBlock

from spanvisor.chat.retry import Failure, RetryStrategy, RetryVerdict
from spanvisor.events import TaskView

from . import text as t

log = logging.getLogger("spanvisor.slack")

PlanMode = Literal["auto", "on", "off"]
CardStatus = Literal["pending", "in_progress", "complete", "error"]
MAX_CARDS = 20
# Cards shown before the current step when the window has to slide.
CARDS_BEFORE = 3
# Plain-text titles; Slack states no limit, so the header's 150 is used.
TITLE = 150
PLAN_METHODS = frozenset({"chat.postMessage", "chat.update"})


class PlanSwitch:
    """Whether the parent messages of one sink (one token: one workspace) use a plan."""

    def __init__(self, mode: str = "auto") -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"plan mode {mode!r}: auto, on or off")
        self.mode = cast(PlanMode, mode)
        self.fell_back = False
        self.plan_built = False  # a parent with a plan was built: Slack may reject it

    @property
    def active(self) -> bool:
        return self.mode == "on" or (self.mode == "auto" and not self.fell_back)

    def fall_back(self) -> bool:
        """In ``auto``, switch to text for good; True only the first time."""
        if self.mode != "auto" or self.fell_back:
            return False
        self.fell_back = True
        log.warning(
            "Slack answered invalid_blocks while parent messages carried a plan block: this workspace gets "
            "the steps as text from now on (SPANVISOR_SLACK_PLAN=off skips the attempt, =on keeps plans)"
        )
        return True


class PlanFallback(RetryStrategy):
    """``invalid_blocks`` on a post or an edit in ``auto``: turn plans off and
    retry at once; ``build()`` runs again for the retry, without the plan."""

    def __init__(self, switch: PlanSwitch) -> None:
        self.switch = switch

    def decide(self, failure: Failure) -> RetryVerdict | None:
        if (
            failure.error == "invalid_blocks"
            and failure.method in PLAN_METHODS
            and self.switch.plan_built
            and self.switch.fall_back()
        ):
            return RetryVerdict("retry", 0.0)
        return None


def card_statuses(view: TaskView) -> list[tuple[str, CardStatus]]:
    """Every step of the task with the status its card shows."""
    steps = list(view.steps) or ([view.step] if view.step else [])
    if not steps:
        return []
    current = view.step_index if view.steps else 0
    out: list[tuple[str, CardStatus]] = []
    for k, name in enumerate(steps):
        status: CardStatus
        if view.status == "complete":
            status = "complete"
        elif current is None or k > current:
            status = "pending"
        elif k < current:
            status = "complete"
        elif view.status in ("error", "lost"):  # lost: its agent died on this step
            status = "error"
        elif view.status in ("cancelled", "evicted"):
            status = "pending"  # stopped (or no longer followed), not failed
        else:
            status = "in_progress"
        out.append((name, status))
    return out


def _window(n: int, current: int | None) -> range:
    if n <= MAX_CARDS:
        return range(n)
    start = max(0, min((current or 0) - CARDS_BEFORE, n - MAX_CARDS))
    return range(start, start + MAX_CARDS)


def plan_block(view: TaskView, suffix: str, scale: float = 1.0) -> dict[str, Any] | None:
    """The task's steps as a ``plan`` block; None when it has none. Every
    ``block_id`` ends in ``suffix``, new for each version of the message."""
    cards = card_statuses(view)
    if not cards:
        return None
    current = view.step_index if view.steps else 0
    where = (
        f"{len(cards)}/{len(cards)}"
        if view.status == "complete"
        else (f"{current + 1}/{len(cards)}" if current is not None else f"{len(cards)}")
    )
    limit = max(20, int(TITLE * scale))
    tasks = [
        TaskCardBlock(
            task_id=f"step-{k}",
            title=t.safe(cards[k][0], limit) or "(a step without a name)",
            status=cards[k][1],
            block_id=f"sv-step-{k}{suffix}",
        )
        for k in _window(len(cards), current)
    ]
    block = PlanBlock(title=f"Steps ({where})", tasks=tasks, block_id=f"sv-plan{suffix}")
    return cast(dict[str, Any], block.to_dict())
