"""A budget set to stop: the cancel that a task's own budget records once it
is reached (``agent.budget.stop`` on the root, else ``SPANVISOR_BUDGET_STOP``).

The tracker says the crossing once per run, as the ``BudgetWarning`` with
``stops`` set (:mod:`spanvisor.tracking.taskbudget`); the pipeline's control
turns it into this :class:`~spanvisor.events.Decision` and judges it as it
judges a person's cancel (:mod:`.judge`): recorded once in the run's shared
record, announced as a ``HumanIntervention`` to every sink, read back by the
launcher, the hook and in-process agents. Its id names only the run, so
every replica, path or replay that sees the crossing sends the same
decision: the first is applied, the others are ``duplicate``. A task that
already ended, or that someone cancelled first, is left alone: such a
refusal is not audited (no person was refused anything).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from spanvisor.control.hub import Verdict
from spanvisor.display.readable import usd
from spanvisor.events import BudgetWarning, Decision, Event
from spanvisor.ids import stable_id

logger = logging.getLogger("spanvisor.control")
# A store that does not answer: tried again after 0.5, 1, 2, 4, 8, 10... s (about a minute in all).
ATTEMPTS = 8
# Who a budget's cancel names, and where it came from (the Decision's source).
ACTOR_ID = "spanvisor:budget"
ACTOR_NAME = "budget"
SOURCE = "budget"


def reason(ev: BudgetWarning) -> str:
    """``budget reached: $2.03 of $2.00`` (or ``12,400 of 10,000 tokens``)."""
    if ev.unit == "usd":
        return f"budget reached: {usd(ev.used)} of {usd(ev.budget)}"
    return f"budget reached: {ev.used:,.0f} of {ev.budget:,.0f} tokens"


def decision(ev: BudgetWarning) -> Decision:
    v = ev.task
    return Decision(
        intervention_id=stable_id("budget_stop", v.task_id, v.run_id),
        task_id=v.task_id,
        action="cancel",
        actor_id=ACTOR_ID,
        time_ns=ev.time_ns,
        actor_name=ACTOR_NAME,
        comment=reason(ev),
        source=SOURCE,
        run_id=v.run_id,
    )


def cancels(events: Iterable[Event]) -> list[Decision]:
    """The budgets' cancels among ``events`` (O(1) per event; usually none)."""
    return [decision(ev) for ev in events if type(ev) is BudgetWarning and ev.stops and ev.scope == "task"]


def is_budgets(d: Decision) -> bool:
    return d.source == SOURCE and d.actor_id == ACTOR_ID


def follow(
    events: Iterable[Event], decide: Callable[[Decision], Awaitable[Verdict]], running: set[asyncio.Task[None]]
) -> None:
    """Judge each budget's cancel among ``events`` in the background (on the
    pipeline's loop: the events' dispatch never waits on the store)."""
    for d in cancels(events):
        task = asyncio.get_running_loop().create_task(_judge(d, decide))
        running.add(task)
        task.add_done_callback(running.discard)


async def _judge(d: Decision, decide: Callable[[Decision], Awaitable[Verdict]]) -> None:
    for attempt in range(ATTEMPTS):
        try:
            v = await decide(d)
        except asyncio.CancelledError:  # the pipeline stopped first: said, never silently lost
            logger.warning("the budget's cancel of task %s was not recorded before the pipeline stopped", d.task_id)
            raise
        except Exception as exc:  # the store is out: the same decision again (its id makes it once)
            if attempt == ATTEMPTS - 1:
                logger.warning("the budget's cancel of task %s was not recorded: %s", d.task_id, exc)
                return
            await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
            continue
        logger.info("budget stop of task %s (%s): %s %s", d.task_id, d.comment, v.outcome, v.reason or "")
        return


__all__ = ["ACTOR_ID", "ACTOR_NAME", "ATTEMPTS", "SOURCE", "cancels", "decision", "follow", "is_budgets", "reason"]
